//! The one error type of the request path, and its mapping to HTTP statuses and gRPC codes in
//! one place; and the error that stops start-up.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Body is not JSON, or not UTF-8.
    #[error("{0}")]
    MalformedJson(String),
    /// Well-formed JSON that breaks the request schema or a limit.
    #[error("{0}")]
    Validation(String),
    /// The same for the Open Inference Protocol (`/v2`), whose clients expect 400.
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the {limit} byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `--api-key` is set and the request has no valid `Authorization: Bearer` key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A route this server's settings close (the repository's admin routes without a key).
    #[error("{0}")]
    Forbidden(String),
    #[error("no route for {0}")]
    NotFound(String),
    /// A `/v2/models/...` path naming a model or version this server does not serve.
    #[error("{0}")]
    ModelNotFound(String),
    /// The queue holds as much work as `--max-queue-size` or `--max-queue-wait` allow.
    #[error("{0}; retry later")]
    QueueFull(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("request took longer than the {0:?} timeout")]
    Timeout(std::time::Duration),
    /// The client did not send the whole body within `--body-read-timeout`.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("{0}")]
    Inference(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// Stable machine-readable kind: validation, bad_request, malformed_json, payload_too_large,
    /// unsupported_media_type, method_not_allowed, unauthorized, forbidden, not_found, model_not_found, overloaded,
    /// unavailable, timeout, body_timeout, backend, internal.
    pub error_type: String,
}

/// The error answers shared by every HTTP inference route (`/predict`, `POST /`, both v2 infer
/// routes), listed once for their OpenAPI descriptions; each route adds its own 400/404/422.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // described in the document, never built: ApiError makes the answers
pub(crate) enum InferenceErrors {
    #[response(
        status = 401,
        description = "API key required (--api-key) and missing or wrong"
    )]
    Unauthorized(ErrorBody),
    #[response(
        status = 408,
        description = "Body not received within --body-read-timeout"
    )]
    BodyTimeout(ErrorBody),
    #[response(status = 413, description = "Body over the payload limit")]
    PayloadTooLarge(ErrorBody),
    #[response(status = 415, description = "Content-Type is not application/json")]
    UnsupportedMediaType(ErrorBody),
    #[response(
        status = 429,
        description = "Queue full; retry after the Retry-After header"
    )]
    QueueFull(ErrorBody),
    #[response(status = 503, description = "Model loading or server shutting down")]
    Unavailable(ErrorBody),
    #[response(status = 504, description = "Request timed out")]
    Timeout(ErrorBody),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::ModelNotFound(_) => StatusCode::NOT_FOUND,
            Self::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Inference(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::Validation(_) => "validation",
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::ModelNotFound(_) => "model_not_found",
            Self::QueueFull(_) => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::BodyTimeout(_) => "body_timeout",
            Self::Inference(_) => "backend",
            Self::Internal(_) => "internal",
        }
    }

    /// The gRPC status code of the same error (the Open Inference Protocol over gRPC): 429 is
    /// `RESOURCE_EXHAUSTED`, 503 `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED`, 4xx mostly
    /// `INVALID_ARGUMENT`.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::MalformedJson(_)
            | Self::Validation(_)
            | Self::BadRequest(_)
            | Self::UnsupportedMediaType(_) => Code::InvalidArgument,
            Self::PayloadTooLarge { .. } | Self::QueueFull(_) => Code::ResourceExhausted,
            Self::MethodNotAllowed => Code::Unimplemented,
            Self::Unauthorized(_) => Code::Unauthenticated,
            Self::Forbidden(_) => Code::PermissionDenied,
            Self::NotFound(_) | Self::ModelNotFound(_) => Code::NotFound,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Timeout(_) | Self::BodyTimeout(_) => Code::DeadlineExceeded,
            Self::Inference(_) | Self::Internal(_) => Code::Internal,
        }
    }

    /// Logs what deserves it: 503 (loading, draining) and 504 are the server working as
    /// designed; 500s are bugs.
    fn log(&self) {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => tracing::debug!(error = %self, "request refused"),
            StatusCode::GATEWAY_TIMEOUT => tracing::warn!(error = %self, "request timed out"),
            s if s.is_server_error() => tracing::error!(error = %self, "request failed"),
            _ => {}
        }
    }

    /// A validation error as the Open Inference Protocol reports it (400, `bad_request`);
    /// every other error unchanged.
    pub fn validation_as_bad_request(self) -> Self {
        match self {
            Self::Validation(message) => Self::BadRequest(message),
            other => other,
        }
    }
}

/// What a client reads of a 500: the details (a panic's message, a kernel's error) may show
/// the server's internals, so they go to the log, under the request's id, and not to the
/// client.
const INTERNAL_MESSAGE: &str =
    "the server could not answer this request; its log has the details under this request's id";

impl ApiError {
    /// The message a client reads: the error itself, except for 500s.
    fn public_message(&self) -> String {
        match self {
            Self::Inference(_) | Self::Internal(_) => INTERNAL_MESSAGE.to_string(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.log();
        let body = ErrorBody {
            error: self.public_message(),
            error_type: self.error_type().to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        // Both clear up by themselves: tell well-behaved clients when to come back.
        if matches!(self, Self::QueueFull(_) | Self::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::BodyTimeout(_)) {
            // The rest of the body may still be trickling in: do not wait for it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Self::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The pipeline's errors in the protocols' terms: a bad text is a validation error (422, or
/// 400 on the Open Inference Protocol), a full queue 429, a stopping queue 503, a failed forward
/// pass or a bug 500.
impl From<crate::types::InferenceError> for ApiError {
    fn from(error: crate::types::InferenceError) -> Self {
        use crate::types::InferenceError as E;
        match error {
            E::Input(m) => Self::Validation(m),
            E::Overloaded(m) => Self::QueueFull(m),
            E::Stopped(m) => Self::Unavailable(m),
            E::Backend(m) => Self::Inference(m),
            E::Internal(m) => Self::Internal(m),
        }
    }
}

/// The gRPC form: the code of [`ApiError::grpc_code`], the message, and the `error_type` in
/// the `error-type` trailer.
impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        error.log();
        let mut status = tonic::Status::new(error.grpc_code(), error.public_message());
        status.metadata_mut().insert(
            "error-type",
            tonic::metadata::MetadataValue::from_static(error.error_type()),
        );
        status
    }
}

/// Why the server could not start, naming the flag (or file) at fault: a setting that cannot be
/// used (an address that cannot be bound, an unreadable key file, an origin that is not one, a
/// database URL that does not parse), or a model that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{flag}: {problem}")]
    Setting { flag: &'static str, problem: String },
    #[error("{0}")]
    Model(#[from] crate::checkpoint::LoadError),
}

impl StartupError {
    pub fn setting(flag: &'static str, problem: impl Into<String>) -> Self {
        Self::Setting {
            flag,
            problem: problem.into(),
        }
    }
}
