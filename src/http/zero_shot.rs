//! `POST /zero-shot-classification`, and `POST /` when its parameters hold `candidate_labels`
//! (how `huggingface_hub.InferenceClient.zero_shot_classification` asks): the Hugging Face
//! Inference API's zero-shot shape, answered as transformers' zero-shot pipeline answers it.

use super::extract::ApiJson;
use super::inputs::{CandidateLabels, Sequences};
use super::request_id;
use crate::error::{ApiError, ErrorBody};
use crate::postprocess::zero_shot::ZeroShotOutput;
use crate::service::zero_shot::{self, ZeroShotTask, DEFAULT_TEMPLATE};
use crate::service::Call;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ZeroShotRequest {
    pub inputs: Sequences,
    pub parameters: ZeroShotParameters,
}

/// The zero-shot parameters of the Hugging Face Inference API.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ZeroShotParameters {
    pub candidate_labels: CandidateLabels,
    /// The hypothesis each label is put into, `{}` where the label goes (`{{` and `}}` for
    /// literal braces); at most 500 characters.
    #[schema(example = "This example is {}.")]
    pub hypothesis_template: Option<String>,
    /// Score each label on its own, as if several could be true (a softmax of entailment
    /// against contradiction per label); by default the scores of the labels sum to 1.
    pub multi_label: Option<bool>,
}

impl ZeroShotParameters {
    fn task(self) -> ZeroShotTask {
        ZeroShotTask {
            candidate_labels: self.candidate_labels.into_list(),
            hypothesis_template: self
                .hypothesis_template
                .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string()),
            multi_label: self.multi_label.unwrap_or(false),
        }
    }
}

/// One answer for a single text, a list for a list of texts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum ZeroShotResponse {
    One(ZeroShotOutput),
    Batch(Vec<ZeroShotOutput>),
}

#[utoipa::path(
    post,
    path = "/zero-shot-classification",
    request_body = ZeroShotRequest,
    responses(
        (status = 200, description = "Each text's candidate labels, best first, with their scores", body = ZeroShotResponse),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 422, description = "Invalid request: empty text or label, too many labels or pairs, a template without `{}` or over 500 characters, repeated labels, wrong types; or a model that is not an NLI model (no entailment label)", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "inference"
)]
pub(crate) async fn zero_shot(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ZeroShotRequest>,
) -> Result<Json<ZeroShotResponse>, ApiError> {
    let (mut outputs, single) =
        answer(&state, &headers, request.inputs, request.parameters).await?;
    Ok(Json(if single {
        ZeroShotResponse::One(
            outputs
                .pop()
                .ok_or_else(|| ApiError::Internal("no answer for the one input".into()))?,
        )
    } else {
        ZeroShotResponse::Batch(outputs)
    }))
}

/// Validation, the engine and scoring of a zero-shot request, shared with `POST /`: one answer
/// per input, and whether the request held a single text.
pub(super) async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    inputs: Sequences,
    parameters: ZeroShotParameters,
) -> Result<(Vec<ZeroShotOutput>, bool), ApiError> {
    let call = Call::new(state, request_id(headers));
    let engine = state.ready_engine()?;
    let (sequences, single) = match inputs {
        Sequences::One(text) => (vec![text], true),
        Sequences::Batch(texts) => (texts, false),
    };
    let outputs = zero_shot::classify(state, &engine, &call, sequences, parameters.task()).await?;
    Ok((outputs, single))
}
