//! Which input tensors a request may have (`text`, and optionally `text_pair`) and whether
//! a tensor's shape holds its data: the checks both protocol forms share.

use super::{INPUT, PAIR_INPUT};
use crate::error::ApiError;

/// 400 unless the request has the input `text` and at most the input `text_pair` besides,
/// both of datatype BYTES; returns them in that order.
pub(crate) fn text_inputs<T>(
    inputs: Vec<T>,
    name_and_type: impl Fn(&T) -> (&str, &str),
) -> Result<(T, Option<T>), ApiError> {
    if inputs.is_empty() || inputs.len() > 2 {
        return Err(ApiError::BadRequest(format!(
            "expected the input `{INPUT}` and optionally `{PAIR_INPUT}`, got {} input tensors",
            inputs.len()
        )));
    }
    let (text, pair) = named_inputs(inputs, name_and_type, (INPUT, PAIR_INPUT), |name| {
        format!("unknown input `{name}`; this model takes `{INPUT}` and optionally `{PAIR_INPUT}`")
    })?;
    let text = text.ok_or_else(|| {
        ApiError::BadRequest(format!(
            "input `{INPUT}` is missing; `{PAIR_INPUT}` only adds a second text to each text"
        ))
    })?;
    Ok((text, pair))
}

/// 400 unless `shape` holds exactly `elements` elements; `name` names the input.
pub(crate) fn check_shape<D: Copy + TryInto<u64> + std::fmt::Debug>(
    name: &str,
    shape: &[D],
    elements: usize,
) -> Result<(), ApiError> {
    let count = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d.try_into().ok()?));
    if count != Some(elements as u64) {
        return Err(ApiError::BadRequest(format!(
            "input `{name}`: shape {shape:?} does not hold the {elements} elements of its data"
        )));
    }
    Ok(())
}

/// Sorts `inputs` into the two slots `names` name, each BYTES and at most once; an input of
/// another name is 400 with `unknown(its name, bounded)`.
pub(crate) fn named_inputs<T>(
    inputs: Vec<T>,
    name_and_type: impl Fn(&T) -> (&str, &str),
    (first_name, second_name): (&str, &str),
    unknown: impl Fn(&str) -> String,
) -> Result<(Option<T>, Option<T>), ApiError> {
    let (mut first, mut second) = (None, None);
    for input in inputs {
        let (name, datatype) = name_and_type(&input);
        let slot = if name == first_name {
            &mut first
        } else if name == second_name {
            &mut second
        } else {
            return Err(ApiError::BadRequest(unknown(&crate::logging::bounded(
                name,
                crate::logging::MAX_LOGGED_TEXT,
            ))));
        };
        if datatype != "BYTES" {
            return Err(ApiError::BadRequest(format!(
                "input `{name}` has datatype `{datatype}`; it must be `BYTES` (strings)"
            )));
        }
        if slot.is_some() {
            return Err(ApiError::BadRequest(format!(
                "input `{name}` is given twice"
            )));
        }
        *slot = Some(input);
    }
    Ok((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_must_hold_the_elements() {
        assert!(check_shape(INPUT, &[2i64], 2).is_ok());
        assert!(check_shape(INPUT, &[1u64, 3], 3).is_ok());
        assert!(check_shape(INPUT, &[3i64], 2).is_err());
        assert!(check_shape(INPUT, &[-1i64], 1).is_err());
        assert!(check_shape(INPUT, &[u64::MAX, 2], 2).is_err());
    }

    #[test]
    fn text_is_required_and_text_pair_optional() {
        fn named(names: &[&'static str]) -> Vec<(&'static str, &'static str)> {
            names.iter().map(|&n| (n, "BYTES")).collect()
        }
        fn get<'a>(t: &'a (&'static str, &'static str)) -> (&'a str, &'a str) {
            (t.0, t.1)
        }
        let (text, pair) = text_inputs(named(&[PAIR_INPUT, INPUT]), get).unwrap();
        assert_eq!((text.0, pair.map(|p| p.0)), (INPUT, Some(PAIR_INPUT)));
        assert!(text_inputs(named(&[INPUT]), get).unwrap().1.is_none());
        let bad: [&[&str]; 5] = [
            &[],
            &[PAIR_INPUT],
            &[INPUT, INPUT],
            &[INPUT, "sentence"],
            &[INPUT, PAIR_INPUT, PAIR_INPUT],
        ];
        for bad in bad {
            assert!(text_inputs(named(bad), get).is_err(), "{bad:?}");
        }
        assert!(text_inputs(vec![(INPUT, "FP32")], get).is_err());
    }
}
