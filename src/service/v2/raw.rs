//! Tensor data in raw form, as the binary tensor data extension (HTTP) and gRPC's raw contents
//! carry it: BYTES as length-prefixed elements, FP32 as little-endian floats.

use crate::error::ApiError;

/// BYTES elements in raw form: each a 4-byte little-endian length, then its bytes (UTF-8
/// here); `name` names the input in errors.
pub fn decode_strings(mut data: &[u8], name: &str) -> Result<Vec<String>, ApiError> {
    let mut strings = Vec::new();
    while !data.is_empty() {
        let truncated = || {
            ApiError::BadRequest(format!(
                "input `{name}`: binary BYTES data ends inside an element"
            ))
        };
        let (length, rest) = data.split_first_chunk::<4>().ok_or_else(truncated)?;
        let length = u32::from_le_bytes(*length) as usize;
        if length > rest.len() {
            return Err(truncated());
        }
        let (element, rest) = rest.split_at(length);
        strings.push(utf8(element, name, strings.len())?);
        data = rest;
    }
    Ok(strings)
}

/// One BYTES element as text; 400 when it is not UTF-8.
pub(crate) fn utf8(element: &[u8], name: &str, index: usize) -> Result<String, ApiError> {
    std::str::from_utf8(element)
        .map(str::to_owned)
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "input `{name}`: element {index} is not valid UTF-8: {e}"
            ))
        })
}

/// BYTES elements in raw form (see [`decode_strings`]).
pub fn encode_strings<'a>(strings: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// FP32 elements in raw form: little-endian, row-major.
pub(crate) fn encode_floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_truncation_is_refused() {
        let encoded = encode_strings(["I love it", "", "naïve"]);
        assert_eq!(&encoded[..4], &9u32.to_le_bytes());
        let decoded = decode_strings(&encoded, "text").unwrap();
        assert_eq!(decoded, ["I love it", "", "naïve"]);
        assert!(decode_strings(&encoded[..encoded.len() - 1], "text").is_err());
        assert!(decode_strings(&[1, 0, 0], "text").is_err());
        assert!(decode_strings(&[1, 0, 0, 0, 0xff], "text").is_err());
    }
}
