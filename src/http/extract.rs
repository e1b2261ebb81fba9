//! JSON body extraction whose every rejection is our JSON error, with the documented status.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        // Bounds the whole body, not each read: a client trickling a byte a second is cut off.
        let deadline = state.config.body_read_timeout;
        match tokio::time::timeout(deadline, axum::Json::<T>::from_request(req, state)).await {
            Ok(Ok(axum::Json(value))) => Ok(Self(value)),
            Ok(Err(rejection)) => Err(map_rejection(rejection, state.config.payload_limit)),
            Err(_) => Err(ApiError::BodyTimeout(deadline)),
        }
    }
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

/// [`ApiJson`] for the Open Inference Protocol: schema violations are 400 `bad_request`
/// rather than 422 `validation`; every other rejection is the same.
pub struct V2Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for V2Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(value)| Self(value))
            .map_err(ApiError::validation_as_bad_request)
    }
}
