//! JSON body extraction whose every rejection is our JSON error, with the documented status.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected `Content-Type: application/json`".into(),
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes, state.config.payload_limit).map(Self)
    }
}

/// The whole body, within `--payload-limit` and `--body-read-timeout`.
pub(super) async fn read_body(req: Request, state: &Arc<AppState>) -> Result<Bytes, ApiError> {
    let limit = state.config.payload_limit;
    // Bounds the whole body, not each read: a client trickling a byte a second is cut off.
    let deadline = state.config.body_read_timeout;
    match tokio::time::timeout(deadline, Bytes::from_request(req, state)).await {
        Err(_) => Err(ApiError::BodyTimeout(deadline)),
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(rejection)) => Err(ApiError::MalformedJson(rejection.body_text())),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// `bytes` as JSON of type `T`: invalid UTF-8 and syntax errors are 400, wrong shapes 422.
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, ApiError> {
    // serde_json skips members it ignores without checking their UTF-8: check it all.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::MalformedJson(format!(
            "the request body is not valid UTF-8: {e}"
        )));
    }
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(value),
        Err(rejection) => Err(map_rejection(rejection, limit)),
    }
}

/// `application/json` or `application/<anything>+json`, parameters (charset) ignored.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn map_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::Validation(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected `Content-Type: application/json`".into())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge { limit }
        }
        other => ApiError::MalformedJson(other.body_text()),
    }
}
