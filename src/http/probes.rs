//! Health, liveness, readiness and `/info`.

use crate::engine::ModelInfo;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` (ready or alive).
    pub status: &'static str,
}

/// 200 once the model is loaded and work is accepted; 503 while loading or draining.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Status>, ApiError> {
    state.readiness()?;
    Ok(Json(Status { status: "ok" }))
}

/// Readiness: the same as /health.
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub async fn ready(state: State<Arc<AppState>>) -> Result<Json<Status>, ApiError> {
    health(state).await
}

/// Liveness: 200 while the process serves HTTP at all, loading and draining included.
#[utoipa::path(get, path = "/live", tag = "probes", responses((status = 200, body = Status)))]
pub async fn live() -> Json<Status> {
    Json(Status { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchingInfo {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_batch_delay_ms: f64,
    pub max_queue_size: usize,
    pub max_queue_wait_ms: f64,
    pub max_client_batch_size: usize,
    /// Most candidate labels in one zero-shot request.
    pub max_candidate_labels: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Info {
    #[serde(flatten)]
    pub model: ModelInfo,
    pub batching: BatchingInfo,
    /// The inference routes (`/predict`, `POST /`, `/zero-shot-classification`, `/v2/.../infer`)
    /// need `Authorization: Bearer <key>` (never the key itself).
    pub api_key_required: bool,
    /// Server version.
    pub version: &'static str,
}

/// The served model, device, precision, weights hash and batching limits.
#[utoipa::path(get, path = "/info", tag = "probes",
    responses((status = 200, body = Info), (status = 503, body = ErrorBody)))]
pub async fn info(State(state): State<Arc<AppState>>) -> Result<Json<Info>, ApiError> {
    let engine = state.loaded_engine()?;
    let limits = engine.limits();
    Ok(Json(Info {
        model: engine.info.clone(),
        batching: BatchingInfo {
            max_batch_size: limits.max_batch_size,
            max_batch_tokens: limits.max_batch_tokens,
            max_batch_delay_ms: limits.max_batch_delay.as_secs_f64() * 1000.0,
            max_queue_size: limits.max_queue_size,
            max_queue_wait_ms: limits.max_queue_wait.as_secs_f64() * 1000.0,
            max_client_batch_size: state.config.max_client_batch_size as usize,
            max_candidate_labels: state.config.max_candidate_labels as usize,
        },
        api_key_required: state.api_keys.enabled(),
        version: env!("CARGO_PKG_VERSION"),
    }))
}
