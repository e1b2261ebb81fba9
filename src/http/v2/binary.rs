//! The body of a v2 infer request as the protocol's clients send it: JSON with or without a
//! content type (Triton's clients send none), or the binary tensor data extension: a JSON
//! header of `Inference-Header-Content-Length` bytes, then each binary input's bytes in order.
//! Also the extension's response form.

use super::request::InferRequest;
use crate::error::ApiError;
use crate::http::extract::{is_json, parse_json, read_body};
use crate::service::v2::decode_strings;
use crate::state::AppState;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The header that gives the JSON part's length in both directions.
pub const HEADER_LENGTH: HeaderName = HeaderName::from_static("inference-header-content-length");

/// A v2 infer request, its binary inputs decoded into `data` like JSON ones.
pub struct V2Request(pub InferRequest);

impl FromRequest<Arc<AppState>> for V2Request {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let headers = req.headers();
        if headers.contains_key(CONTENT_TYPE) && !is_json(headers) && !is_octet_stream(headers) {
            return Err(ApiError::UnsupportedMediaType(
                "expected JSON (`Content-Type: application/json`, or none) or the binary tensor \
                 data extension (`application/octet-stream` with `Inference-Header-Content-Length`)"
                    .into(),
            ));
        }
        let header_length = json_length(headers)?;
        let limit = state.config.payload_limit;
        let bytes = read_body(req, state).await?;
        let (json, mut rest) = match header_length {
            Some(n) if n > bytes.len() => {
                return Err(ApiError::BadRequest(format!(
                    "Inference-Header-Content-Length is {n} but the body has {} bytes",
                    bytes.len()
                )))
            }
            Some(n) => bytes.split_at(n),
            None => (&bytes[..], &[][..]),
        };
        let mut request: InferRequest =
            parse_json(json, limit).map_err(ApiError::validation_as_bad_request)?;
        for input in &mut request.inputs {
            let Some(size) = binary_size(input.parameters.as_ref(), &input.name)? else {
                continue;
            };
            if size > rest.len() {
                return Err(ApiError::BadRequest(format!(
                    "input `{}` declares {size} bytes of binary data; {} are left in the body",
                    input.name,
                    rest.len()
                )));
            }
            if input.datatype != "BYTES" {
                return Err(ApiError::BadRequest(format!(
                    "input `{}` has datatype `{}`; it must be `BYTES` (strings)",
                    input.name, input.datatype
                )));
            }
            let (data, tail) = rest.split_at(size);
            rest = tail;
            input.data = Value::Array(
                decode_strings(data, &input.name)?
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            );
        }
        if !rest.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "{} bytes follow the binary inputs that no input declares (binary_data_size)",
                rest.len()
            )));
        }
        Ok(Self(request))
    }
}

fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
}

fn json_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest("Inference-Header-Content-Length must be a byte count".into())
        })
}

/// `parameters.binary_data_size` of an input, when it has one.
fn binary_size(
    parameters: Option<&Map<String, Value>>,
    name: &str,
) -> Result<Option<usize>, ApiError> {
    match parameters.and_then(|p| p.get("binary_data_size")) {
        None => Ok(None),
        Some(size) => size
            .as_u64()
            .and_then(|s| usize::try_from(s).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "input `{name}`: binary_data_size must be a byte count"
                ))
            }),
    }
}

/// The extension's response: the JSON header, then the binary outputs' bytes in order.
pub fn response(
    header: &impl serde::Serialize,
    binary: Vec<Vec<u8>>,
) -> Result<Response, ApiError> {
    let mut body = serde_json::to_vec(header)
        .map_err(|e| ApiError::Internal(format!("response header: {e}")))?;
    let length = HeaderValue::from(body.len());
    for part in binary {
        body.extend_from_slice(&part);
    }
    Ok((
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (HEADER_LENGTH, length),
        ],
        body,
    )
        .into_response())
}
