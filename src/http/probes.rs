//! Health, liveness, readiness and `/info`.

use crate::engine::ModelInfo;
use crate::error::{ApiError, ErrorBody};
use crate::repository::{ServedVersion, VersionState};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

/// What `/info` shows of a path when API keys are set and the request has none.
const HIDDEN: &str = "(hidden: send the API key)";

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Status {
    /// `ok` (ready or alive).
    pub status: &'static str,
}

/// 200 once the default model (with `--ready-when all`, every model version) is loaded and
/// work is accepted; 503 while loading or draining.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub(super) async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Status>, ApiError> {
    state.check_ready()?;
    Ok(Json(Status { status: "ok" }))
}

/// Readiness: the same as /health.
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub(super) async fn ready(state: State<Arc<AppState>>) -> Result<Json<Status>, ApiError> {
    health(state).await
}

/// Liveness: 200 while the process serves HTTP at all, loading and draining included.
#[utoipa::path(get, path = "/live", tag = "probes", responses((status = 200, body = Status)))]
pub(super) async fn live() -> Json<Status> {
    Json(Status { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct BatchingInfo {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_batch_delay_ms: f64,
    pub max_queue_size: usize,
    pub max_queue_wait_ms: f64,
    pub max_client_batch_size: usize,
    /// Most candidate labels in one zero-shot request.
    pub max_candidate_labels: usize,
    /// Most documents in one rerank request.
    pub max_rerank_documents: usize,
}

/// One model of the repository.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ModelStatus {
    pub name: String,
    /// The model `/predict` serves.
    pub default: bool,
    /// Its selected versions, ascending.
    pub versions: Vec<VersionStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct VersionStatus {
    pub version: u64,
    /// `LOADING`, `READY`, `FAILED` or `UNLOADED`.
    pub state: &'static str,
    /// Why it failed to load, or was unloaded; for a `READY` version, why its changed files
    /// failed to load (it serves the files it loaded before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub dir: String,
    /// What the loaded version reports (labels, weights digest and size, compute path, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Info {
    /// The default model's version that `/predict` reaches.
    #[serde(flatten)]
    pub model: ModelInfo,
    /// Every model of the repository with its versions (one for `--model-dir`).
    pub models: Vec<ModelStatus>,
    pub batching: BatchingInfo,
    /// The inference routes (`/predict`, `POST /`, `/zero-shot-classification`, `/v2/.../infer`)
    /// and the repository routes (`/v2/repository/...`) need `Authorization: Bearer <key>`
    /// (never the key itself).
    pub api_key_required: bool,
    /// Server version.
    pub version: &'static str,
}

/// The default model, device, precision, weights hash and batching limits, and every served
/// model with its versions and their states.
#[utoipa::path(get, path = "/info", tag = "probes",
    responses((status = 200, body = Info), (status = 503, body = ErrorBody)))]
pub(super) async fn info(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Info>, ApiError> {
    let engine = state.loaded_engine()?;
    // Paths and load failures tell about the host: for key holders only, when keys are set.
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let privileged = state.api_keys.check(authorization).is_ok();
    let limits = engine.limits();
    let served = state.served();
    let models = served
        .models
        .iter()
        .map(|model| ModelStatus {
            name: model.name.clone(),
            default: served.default.as_deref() == Some(model.name.as_str()),
            versions: model
                .versions
                .iter()
                .map(|v| version_status(v, privileged))
                .collect(),
        })
        .collect();
    Ok(Json(Info {
        model: shown(&engine.info, privileged),
        models,
        batching: BatchingInfo {
            max_batch_size: limits.max_batch_size,
            max_batch_tokens: limits.max_batch_tokens,
            max_batch_delay_ms: limits.max_batch_delay.as_secs_f64() * 1000.0,
            max_queue_size: limits.max_queue_size,
            max_queue_wait_ms: limits.max_queue_wait.as_secs_f64() * 1000.0,
            max_client_batch_size: state.config.max_client_batch_size as usize,
            max_candidate_labels: state.config.max_candidate_labels as usize,
            max_rerank_documents: state.config.max_rerank_documents as usize,
        },
        api_key_required: state.api_keys.enabled(),
        version: env!("CARGO_PKG_VERSION"),
    }))
}

/// A model's info as `/info` shows it: its directory only to `privileged` callers.
fn shown(info: &ModelInfo, privileged: bool) -> ModelInfo {
    let mut info = info.clone();
    if !privileged {
        info.model_dir = HIDDEN.into();
    }
    info
}

/// One version's state; where its files are and why it failed or was unloaded only to
/// `privileged` callers (paths and load errors tell about the host).
fn version_status(v: &ServedVersion, privileged: bool) -> VersionStatus {
    let reason = match &v.state {
        VersionState::Failed(why) => Some(why.clone()),
        VersionState::Unloaded => Some("unloaded".into()),
        _ => v
            .reload_error
            .as_ref()
            .map(|why| format!("its changed files failed to load: {why}")),
    };
    VersionStatus {
        version: v.version,
        state: v.state.name(),
        reason: reason.filter(|_| privileged),
        dir: if privileged {
            v.dir.display().to_string()
        } else {
            HIDDEN.into()
        },
        model: match &v.state {
            VersionState::Ready(engine) => Some(shown(&engine.info, privileged)),
            _ => None,
        },
    }
}
