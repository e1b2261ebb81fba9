//! What Triton's clients ask for besides inference: the model configuration, the repository
//! index, and inference statistics, which this server does not keep per model (a documented
//! 400 that points to `/metrics`).

use super::ModelPath;
use crate::error::{ApiError, ErrorBody};
use crate::repository::VersionState;
use crate::service::v2::{model_tensors, MetadataTensor, PAIR_INPUT, PLATFORM};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

/// The model configuration in Triton's JSON form (`tritonclient`'s `get_model_config`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelConfig {
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
pub struct ConfigTensor {
    pub name: &'static str,
    pub data_type: &'static str,
    pub dims: Vec<i64>,
    /// An input a request may leave out (`text_pair`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl From<MetadataTensor> for ConfigTensor {
    /// A metadata tensor in the configuration's terms (`TYPE_STRING` for BYTES).
    fn from(t: MetadataTensor) -> Self {
        let data_type = match t.datatype {
            "BYTES" => "TYPE_STRING",
            "FP32" => "TYPE_FP32",
            other => other,
        };
        Self {
            name: t.name,
            data_type,
            dims: t.shape,
            optional: t.name == PAIR_INPUT,
        }
    }
}

/// The model configuration, as Triton's clients read it.
#[utoipa::path(get, path = "/v2/models/{name}/config", tag = "v2",
    params(("name" = String, Path, description = "the model id, as /info reports it")),
    responses((status = 200, body = ModelConfig),
        (status = 400, description = "Model name or version not valid UTF-8", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn model_config(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelConfig>, ApiError> {
    let engine = path.loaded(&state)?;
    let (inputs, outputs) = model_tensors(engine.info.labels.len());
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
pub async fn model_version_config(
    state: State<Arc<AppState>>,
    path: ModelPath,
) -> Result<Json<ModelConfig>, ApiError> {
    model_config(state, path).await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RepositoryModel {
    pub name: String,
    pub version: String,
    /// `READY`; `LOADING`; `UNAVAILABLE` when it failed to load (see `reason`) or while
    /// draining.
    pub state: &'static str,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The model repository index (Triton's extension; `tritonclient`'s
/// `get_model_repository_index`): every served model version with its state, by name and
/// version. The request body is ignored.
#[utoipa::path(post, path = "/v2/repository/index", tag = "v2",
    responses((status = 200, body = Vec<RepositoryModel>), (status = 503, body = ErrorBody)))]
pub async fn repository_index(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<RepositoryModel>>, ApiError> {
    let served = state.served();
    if served.models.is_empty() {
        return Err(crate::repository::still_loading());
    }
    // From SIGTERM on (--shutdown-delay included), as the readiness routes answer.
    let draining = state.is_withdrawn();
    let index = served
        .models
        .iter()
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
            };
            RepositoryModel {
                name: model.name.clone(),
                version: version.version.to_string(),
                state,
                reason,
            }
        })
        .collect();
    Ok(Json(index))
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
pub async fn statistics() -> ApiError {
    no_statistics()
}

/// A model's inference statistics: 404 for an unknown model, else as `/v2/models/stats`.
#[utoipa::path(get, path = "/v2/models/{name}/stats", tag = "v2",
    params(("name" = String, Path)),
    responses((status = 400, description = "Statistics are not kept per model: see /metrics", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn model_statistics(State(state): State<Arc<AppState>>, path: ModelPath) -> ApiError {
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
pub async fn model_version_statistics(state: State<Arc<AppState>>, path: ModelPath) -> ApiError {
    model_statistics(state, path).await
}
