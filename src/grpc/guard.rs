//! What every gRPC call passes before its message is read: the API key for `ModelInfer`,
//! checked on the metadata, so that a client without one cannot make the server read and
//! decode a message of up to --payload-limit; and --body-read-timeout for the whole message,
//! so that a message that never completes does not hold its stream (and its connection).

use crate::error::ApiError;
use crate::metrics::GrpcMethodCode;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The one call that needs the API key (health and metadata stay open, as over HTTP).
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

pub(super) async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == MODEL_INFER {
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(error) = state.api_keys.check(authorization) {
            state
                .metrics
                .grpc_requests
                .get_or_create(&GrpcMethodCode {
                    method: "ModelInfer".into(),
                    code: super::code_name(error.grpc_code()).into(),
                })
                .inc();
            return tonic::Status::from(error).into_http();
        }
    }
    let limit = state.config.body_read_timeout;
    next.run(request.map(|body| Body::new(Deadline::new(body, limit))))
        .await
}

/// A request body that fails once `limit` has passed before its end, with the gRPC status
/// tonic then answers (DEADLINE_EXCEEDED).
struct Deadline {
    body: Body,
    limit: Duration,
    expiry: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(body: Body, limit: Duration) -> Self {
        Self {
            body,
            limit,
            expiry: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.expiry.as_mut().poll(cx).is_ready() {
            let message = ApiError::BodyTimeout(this.limit).to_string();
            let status = tonic::Status::deadline_exceeded(message);
            return Poll::Ready(Some(Err(axum::Error::new(status))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
