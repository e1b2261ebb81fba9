//! HTTP stage: routes, request ids, tracing, metrics, and JSON errors for everything.

pub(crate) mod auth;
mod extract;
pub(crate) mod inputs;
mod observe;
pub(crate) mod openapi;
mod playground;
pub(crate) mod predict;
mod probes;
pub(crate) mod rerank;
pub(crate) mod rerank_v1;
pub(crate) mod token_classification;
pub(crate) mod v2;
pub(crate) mod zero_shot;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::any::Any;
use std::sync::Arc;
use tower::util::option_layer;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::logging::REQUEST_ID;

/// The request's id for logs, `-` when it has none that is printable.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(REQUEST_ID)
        .and_then(|id| id.to_str().ok())
        .unwrap_or("-")
}

/// The whole application, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn build_app(state: Arc<AppState>) -> Router {
    let payload_limit = state.config.payload_limit;
    let cors = state.cors.clone();
    Router::new()
        .merge(inference_routes(&state))
        .merge(admin_routes(&state))
        .merge(open_routes())
        .merge(v2_read_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(payload_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::track,
        ))
        .layer(option_layer(cors))
        .layer(
            ServiceBuilder::new()
                .map_request(screen_request_id)
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(span_of)
                        // One line per answered request, with its status and latency; 5xx
                        // are logged by ApiError at the level they deserve, not again here.
                        .on_response(DefaultOnResponse::new().level(Level::INFO))
                        .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state)
}

/// The inference routes: behind the API key when one is configured.
fn inference_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/predict", post(predict::predict))
        .route("/models/{name}/predict", post(predict::predict_model))
        .route("/", post(predict::inference_api))
        .route("/zero-shot-classification", post(zero_shot::zero_shot))
        .route("/rerank", post(rerank::rerank))
        .route("/v1/rerank", post(rerank_v1::rerank_v1))
        .route(
            "/token-classification",
            post(token_classification::token_classification),
        )
        .route("/v2/models/{name}/infer", post(v2::infer::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer::infer_version),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
}

/// The repository routes, which change what is served (a rescan, a load, an unload).
fn admin_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v2/repository/index",
            post(v2::repository::repository_index),
        )
        .route(
            "/v2/repository/models/{name}/load",
            post(v2::repository::load_model),
        )
        .route(
            "/v2/repository/models/{name}/unload",
            post(v2::repository::unload_model),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
}

/// The page, the probes, the metrics and the API description: open to every caller.
fn open_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(playground::page))
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/live", get(probes::live))
        .route("/info", get(probes::info))
        .route("/metrics", get(observe::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
}

/// The Open Inference Protocol's reading routes: metadata, readiness, configuration, statistics.
fn v2_read_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::server_live))
        .route("/v2/health/ready", get(v2::server_ready))
        .route("/v2/models", get(v2::models))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{name}/config",
            get(v2::repository::model_config),
        )
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(v2::repository::model_version_config),
        )
        .route("/v2/models/stats", get(v2::repository::statistics))
        .route(
            "/v2/models/{name}/stats",
            get(v2::repository::model_statistics),
        )
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(v2::repository::model_version_statistics),
        )
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::model_version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::model_version_ready),
        )
}

/// The span of one request, with its id; says once in it when the client's id was replaced.
fn span_of(request: &Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let span = crate::logging::request_span(request, id);
    if let Some(ReplacedRequestId(bytes)) = request.extensions().get() {
        span.in_scope(|| {
            tracing::info!(
                client_id_bytes = bytes,
                "{}",
                crate::logging::REQUEST_ID_REPLACED
            )
        });
    }
    span
}

/// The length of a client's request id that was not kept.
#[derive(Clone, Copy)]
struct ReplacedRequestId(usize);

/// Drops a client's `x-request-id` that is too long or has other characters than
/// [`crate::logging::is_safe_request_id`] allows, so that a new one is made for the request.
fn screen_request_id(mut request: Request<axum::body::Body>) -> Request<axum::body::Body> {
    let Some(id) = request.headers().get(REQUEST_ID) else {
        return request;
    };
    if id.to_str().is_ok_and(crate::logging::is_safe_request_id) {
        return request;
    }
    let bytes = id.len();
    request.headers_mut().remove(REQUEST_ID);
    request.extensions_mut().insert(ReplacedRequestId(bytes));
    request
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(crate::logging::bounded(uri.path(), crate::logging::MAX_LOGGED_TEXT).into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}
