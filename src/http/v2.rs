//! The Open Inference Protocol (KServe v2 REST) beside `/predict`: health, metadata and
//! [`infer`]. Every served model by its name (`--model-dir`: the directory's name, as `/info`'s
//! `model_id`; a repository: its directory names), each served version under
//! `/versions/<v>`, the highest ready one without.
//!
//! Tensors: the input `text` (BYTES, shape `[-1]`; one text per element) and the optional
//! input `text_pair` (BYTES, the same shape; each text's second text); outputs `label`
//! (BYTES, `[-1]`, the best label), `score` (FP32, `[-1]`, its probability) and `scores`
//! (FP32, `[-1, labels]`, every label's probability in id order). Errors are our
//! `{"error", "error_type"}`, whose `error` is the protocol's error object.

pub(crate) mod binary;
pub(crate) mod infer;
pub(crate) mod repository;
pub(crate) mod request;

use crate::engine::Engine;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::service::v2::MetadataTensor;
use crate::service::v2::{model_tensors, EXTENSIONS, PLATFORM};

/// `{name}` and, on `/versions/{version}/...` routes, `{version}` of a model path; an
/// undecodable path is a JSON 400 like every other error.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelPath {
    pub name: String,
    pub version: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ModelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<ModelPath>::from_request_parts(parts, state).await {
            Ok(Path(path)) => Ok(path),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

impl ModelPath {
    /// The engine the path reaches, also while draining: 404 for an unknown model or
    /// version, 503 while it loads or when it failed to.
    pub(crate) fn loaded(&self, state: &AppState) -> Result<Arc<Engine>, ApiError> {
        Ok(state.model(&self.name, self.version.as_deref())?.1)
    }

    /// As [`ModelPath::loaded`], and 503 while draining.
    pub(crate) fn ready(&self, state: &AppState) -> Result<Arc<Engine>, ApiError> {
        Ok(state.ready_model(&self.name, self.version.as_deref())?.1)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    /// Protocol extensions supported: Triton's binary tensor data and classification.
    pub extensions: Vec<String>,
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, body = ServerMetadata)))]
pub(crate) async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ServerLive {
    pub live: bool,
}

/// Server liveness: 200 while the process serves HTTP, loading and draining included.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2",
    responses((status = 200, body = ServerLive)))]
pub(crate) async fn server_live() -> Json<ServerLive> {
    Json(ServerLive { live: true })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ServerReady {
    pub ready: bool,
}

/// Server readiness, as `/ready`: 200 when work is accepted, 503 while loading or draining.
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2",
    responses((status = 200, body = ServerReady), (status = 503, body = ErrorBody)))]
pub(crate) async fn server_ready(
    State(state): State<Arc<AppState>>,
) -> Result<Json<ServerReady>, ApiError> {
    state.check_ready()?;
    Ok(Json(ServerReady { ready: true }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ModelList {
    pub models: Vec<String>,
}

/// The served models' names (ready or not; `/v2/repository/index` has their states). An
/// extension: the protocol itself has no model listing.
#[utoipa::path(get, path = "/v2/models", tag = "v2",
    responses((status = 200, body = ModelList), (status = 503, body = ErrorBody)))]
pub(crate) async fn models(
    State(state): State<Arc<AppState>>,
) -> Result<Json<ModelList>, ApiError> {
    let served = state.served();
    if served.models.is_empty() {
        return Err(crate::repository::still_loading());
    }
    Ok(Json(ModelList {
        models: served.models.iter().map(|m| m.name.clone()).collect(),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ModelParameters {
    /// Label names in id order: the columns of `scores`.
    pub labels: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ModelMetadata {
    pub name: String,
    /// The model's loaded versions, ascending.
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<MetadataTensor>,
    pub outputs: Vec<MetadataTensor>,
    pub parameters: ModelParameters,
}

/// Model metadata: the input and output tensors, and the label names.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "the model id, as /info reports it")),
    responses((status = 200, body = ModelMetadata),
        (status = 400, description = "Model name or version not valid UTF-8", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_metadata(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelMetadata>, ApiError> {
    let engine = path.loaded(&state)?;
    let labels = engine.info.labels.clone();
    let (inputs, outputs) = model_tensors(engine.info.task, labels.len());
    let versions = state
        .served()
        .model(&path.name)
        .map_or_else(Vec::new, |model| {
            let ready = model.versions.iter().filter(|v| v.state.name() == "READY");
            ready.map(|v| v.version.to_string()).collect()
        });
    Ok(Json(ModelMetadata {
        name: engine.info.model_id.clone(),
        versions,
        platform: PLATFORM,
        inputs,
        outputs,
        parameters: ModelParameters { labels },
    }))
}

/// Model metadata of one served version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelMetadata),
        (status = 400, description = "Model name or version not valid UTF-8", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_version_metadata(
    state: State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelMetadata>, ApiError> {
    model_metadata(state, path).await
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ModelReady {
    pub name: String,
    pub ready: bool,
}

/// Model readiness: 200 when it takes requests, 503 while loading or draining, 404 if unknown.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path)),
    responses((status = 200, body = ModelReady),
        (status = 400, description = "Model name or version not valid UTF-8", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_ready(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelReady>, ApiError> {
    path.ready(&state)?;
    state.check_withdrawn()?;
    Ok(Json(ModelReady {
        name: path.name,
        ready: true,
    }))
}

/// Readiness of one served version of a model.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelReady),
        (status = 400, description = "Model name or version not valid UTF-8", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_version_ready(
    state: State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelReady>, ApiError> {
    model_ready(state, path).await
}
