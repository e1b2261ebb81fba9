//! What Triton's clients ask for besides inference: the model configuration, the repository
//! index, and inference statistics, which this server does not keep per model (a documented
//! 400 that points to `/metrics`).

use super::ModelPath;
use crate::error::{ApiError, ErrorBody};
use crate::repository::VersionState;
use crate::service::v2::rerank::{QUERY_INPUT, TEXTS_INPUT};
use crate::service::v2::{model_tensors, MetadataTensor, PAIR_INPUT, PLATFORM};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

/// The model configuration in Triton's JSON form (`tritonclient`'s `get_model_config`).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ModelConfig {
    pub name: String,
    pub platform: &'static str,
    pub backend: &'static str,
    /// 0: the first dimension of every tensor is the number of texts, not a batch dimension
    /// the server adds (batching happens inside, across requests).
    pub max_batch_size: u32,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ConfigTensor {
    pub name: &'static str,
    pub data_type: &'static str,
    pub dims: Vec<i64>,
    /// An input a request may leave out (`text_pair`; `query` and `texts`, which a rerank
    /// request gives instead of `text`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl From<MetadataTensor> for ConfigTensor {
    /// A metadata tensor in the configuration's terms (`TYPE_STRING` for BYTES).
    fn from(t: MetadataTensor) -> Self {
        let data_type = match t.datatype {
            "BYTES" => "TYPE_STRING",
            "FP32" => "TYPE_FP32",
            "INT64" => "TYPE_INT64",
            other => other,
        };
        Self {
            name: t.name,
            data_type,
            dims: t.shape,
            optional: matches!(t.name, PAIR_INPUT | QUERY_INPUT | TEXTS_INPUT),
        }
    }
}

/// The model configuration, as Triton's clients read it.
#[utoipa::path(get, path = "/v2/models/{name}/config", tag = "v2",
    params(("name" = String, Path, description = "the model id, as /info reports it")),
    responses((status = 200, body = ModelConfig),
        (status = 400, description = "Model name or version not valid UTF-8", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_config(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelConfig>, ApiError> {
    let engine = path.loaded(&state)?;
    let (inputs, outputs) = model_tensors(engine.info.task, engine.info.labels.len());
    Ok(Json(ModelConfig {
        name: engine.info.model_id.clone(),
        platform: PLATFORM,
        backend: env!("CARGO_PKG_NAME"),
        max_batch_size: 0,
        input: inputs.into_iter().map(ConfigTensor::from).collect(),
        output: outputs.into_iter().map(ConfigTensor::from).collect(),
    }))
}

/// The configuration of one served version of a model.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/config", tag = "v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelConfig),
        (status = 400, description = "Model name or version not valid UTF-8", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_version_config(
    state: State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelConfig>, ApiError> {
    model_config(state, path).await
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RepositoryModel {
    pub name: String,
    pub version: String,
    /// `READY`; `LOADING`; `UNAVAILABLE` when it failed to load or was unloaded (see
    /// `reason`), or while draining.
    pub state: &'static str,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How long the repository index waits for the rescan it asks for; a scan waits for a
/// version loading at the time, and the index answers with what is published by then.
const INDEX_RESCAN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The model repository index (Triton's extension; `tritonclient`'s
/// `get_model_repository_index`): every served model version with its state, by name and
/// version. With `--model-repository`, the repository is rescanned first (hot reload): new
/// versions show as `LOADING`. The request body is ignored.
#[utoipa::path(post, path = "/v2/repository/index", tag = "v2",
    responses((status = 200, body = Vec<RepositoryModel>),
        (status = 401, description = "A key guards the route (--admin-key-file, --api-key) and is missing or wrong", body = ErrorBody),
        (status = 403, description = "With --model-repository: no key guards the route and --allow-unauthenticated-admin is off", body = ErrorBody),
        (status = 415, description = "With --model-repository: Content-Type is not application/json", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn repository_index(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<RepositoryModel>>, ApiError> {
    if let Some(reload) = state.reload_if_watching() {
        reload.rescan(INDEX_RESCAN_PATIENCE).await;
    }
    if state.served().models.is_empty() {
        return Err(crate::repository::still_loading());
    }
    Ok(Json(index(&state, None)))
}

/// The index entries of every model, or of `only`.
fn index(state: &AppState, only: Option<&str>) -> Vec<RepositoryModel> {
    let served = state.served();
    // From SIGTERM on (--shutdown-delay included), as the readiness routes answer.
    let draining = state.is_withdrawn();
    served
        .models
        .iter()
        .filter(|model| only.is_none_or(|name| model.name == name))
        .flat_map(|model| model.versions.iter().map(move |v| (model, v)))
        .map(|(model, version)| {
            let (state, reason) = match &version.state {
                VersionState::Ready(_) if draining => (
                    "UNAVAILABLE",
                    Some("the server is shutting down".to_string()),
                ),
                VersionState::Ready(_) => ("READY", None),
                VersionState::Loading => ("LOADING", None),
                VersionState::Failed(why) => ("UNAVAILABLE", Some(why.clone())),
                VersionState::Unloaded => ("UNAVAILABLE", Some("unloaded".to_string())),
            };
            RepositoryModel {
                name: model.name.clone(),
                version: version.version.to_string(),
                state,
                reason,
            }
        })
        .collect()
}

/// Loads (or loads again) every version of a repository model on disk, even unchanged ones,
/// and serves a model that was unloaded (Triton's repository extension). Answers once loading
/// ended, with the model's index entries; a version that fails is 400 with the reason, and the
/// version that served before keeps serving. The request body is ignored.
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", tag = "v2",
    params(("name" = String, Path, description = "the model's directory name in the repository")),
    responses((status = 200, body = Vec<RepositoryModel>),
        (status = 400, description = "A version failed to load, the server has no --model-repository, or the name is not valid UTF-8", body = ErrorBody),
        (status = 401, description = "A key guards the route (--admin-key-file, --api-key) and is missing or wrong", body = ErrorBody),
        (status = 403, description = "With --model-repository: no key guards the route and --allow-unauthenticated-admin is off", body = ErrorBody),
        (status = 415, description = "With --model-repository: Content-Type is not application/json", body = ErrorBody),
        (status = 404, description = "No such model in the repository", body = ErrorBody),
        (status = 503, description = "Start-up loading not over, or the server is shutting down", body = ErrorBody)))]
pub(crate) async fn load_model(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<Vec<RepositoryModel>>, ApiError> {
    let reload = state.reload()?;
    state.check_draining()?;
    reload.load(&path.name).await?;
    Ok(Json(index(&state, Some(path.name.as_str()))))
}

/// Takes every version of a model out of service until it is loaded again (Triton's
/// repository extension): its routes answer 503, and each version's memory is released once
/// its in-flight requests finish. The default model cannot be unloaded (400). The request
/// body is ignored.
#[utoipa::path(post, path = "/v2/repository/models/{name}/unload", tag = "v2",
    params(("name" = String, Path, description = "the model's directory name in the repository")),
    responses((status = 200, body = Vec<RepositoryModel>),
        (status = 400, description = "The default model, a server without --model-repository, or a name not valid UTF-8", body = ErrorBody),
        (status = 401, description = "A key guards the route (--admin-key-file, --api-key) and is missing or wrong", body = ErrorBody),
        (status = 403, description = "With --model-repository: no key guards the route and --allow-unauthenticated-admin is off", body = ErrorBody),
        (status = 415, description = "With --model-repository: Content-Type is not application/json", body = ErrorBody),
        (status = 404, description = "No such model served", body = ErrorBody),
        (status = 503, description = "Start-up loading not over, or the server is shutting down", body = ErrorBody)))]
pub(crate) async fn unload_model(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<Vec<RepositoryModel>>, ApiError> {
    let reload = state.reload()?;
    state.check_draining()?;
    reload.unload(&path.name).await?;
    Ok(Json(index(&state, Some(path.name.as_str()))))
}

fn no_statistics() -> ApiError {
    ApiError::BadRequest(
        "inference statistics are not kept per model; /metrics (Prometheus) has the request, \
         queue, batch and inference counts and times"
            .into(),
    )
}

/// Inference statistics (Triton's extension): not kept here, a 400 pointing to `/metrics`.
#[utoipa::path(get, path = "/v2/models/stats", tag = "v2",
    responses((status = 400, description = "Statistics are not kept per model: see /metrics", body = ErrorBody)))]
pub(crate) async fn statistics() -> ApiError {
    no_statistics()
}

/// A model's inference statistics: 404 for an unknown model, else as `/v2/models/stats`.
#[utoipa::path(get, path = "/v2/models/{name}/stats", tag = "v2",
    params(("name" = String, Path)),
    responses((status = 400, description = "Statistics are not kept per model: see /metrics", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_statistics(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
) -> ApiError {
    match path.loaded(&state) {
        Ok(_) => no_statistics(),
        Err(error) => error,
    }
}

/// A model version's inference statistics, as `/v2/models/{name}/stats`.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/stats", tag = "v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 400, description = "Statistics are not kept per model: see /metrics", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn model_version_statistics(
    state: State<Arc<AppState>>,
    path: ModelPath,
) -> ApiError {
    model_statistics(state, path).await
}
