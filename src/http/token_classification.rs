//! `POST /token-classification`, and `POST /` for a token classifier (how
//! `huggingface_hub.InferenceClient.token_classification` asks): the Hugging Face Inference
//! API's token-classification shape, answered as transformers' `token-classification`
//! pipeline answers it.

use super::extract::ApiJson;
use super::inputs::Inputs;
use super::request_id;
use crate::error::{ApiError, ErrorBody};
use crate::postprocess::token_classification::{Entity, Strategy};
use crate::service::token_classification::{classify_tokens, Aggregation};
use crate::service::Call;
use crate::state::AppState;
use crate::types::TextInput;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One text, or a list of texts.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Texts {
    One(String),
    Batch(Vec<String>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenClassificationRequest {
    pub inputs: Texts,
    #[serde(default)]
    pub parameters: Option<TokenClassificationParameters>,
}

/// The token-classification parameters of the Hugging Face Inference API.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenClassificationParameters {
    /// How tokens become entities (default `none`, as the pipeline's): `none` every token;
    /// `simple` adjacent tokens of one entity grouped; `first`, `average`, `max` words
    /// labelled by their first token, their tokens' mean scores or their most confident
    /// token, then grouped.
    pub aggregation_strategy: Option<Strategy>,
    /// Labels left out of the answer (default `["O"]`); at most 1,024.
    pub ignore_labels: Option<Vec<String>>,
    /// Reads a text longer than the model takes in windows of the model's maximum length that
    /// overlap by `stride` tokens, and merges their entities as the pipeline does (needs a
    /// strategy other than `none`; less than the maximum less the special tokens). Each window
    /// counts as one input toward `--max-client-batch-size`. Without it long texts are cut.
    pub stride: Option<u64>,
}

impl TokenClassificationParameters {
    fn aggregation(self) -> Result<Aggregation, ApiError> {
        Aggregation::new(self.aggregation_strategy, self.ignore_labels, self.stride)
    }
}

/// One list of entities for a single text, a list of lists for a list of texts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum TokenClassificationResponse {
    One(Vec<Entity>),
    Batch(Vec<Vec<Entity>>),
}

#[utoipa::path(
    post,
    path = "/token-classification",
    request_body = TokenClassificationRequest,
    responses(
        (status = 200, description = "Each text's entities (tokens with `aggregation_strategy` none), in text order", body = TokenClassificationResponse),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 422, description = "Invalid request: empty text, too many texts, unknown strategy or parameter, `stride` with strategy none, too long or making more windows than a request may take; or a model that is not a token classifier (the message names its task and route)", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "inference"
)]
pub(crate) async fn token_classification(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<TokenClassificationRequest>,
) -> Result<Json<TokenClassificationResponse>, ApiError> {
    let (texts, single) = match request.inputs {
        Texts::One(text) => (vec![text], true),
        Texts::Batch(texts) => (texts, false),
    };
    let parameters = request.parameters.unwrap_or_default();
    answer(&state, &headers, texts, single, parameters.aggregation()?).await
}

/// `POST /` for a token classifier: `/predict`'s inputs (texts only) with the
/// token-classification parameters.
pub(super) async fn inference_api(
    state: &AppState,
    headers: &HeaderMap,
    inputs: Inputs,
    aggregation: Aggregation,
) -> Result<Json<TokenClassificationResponse>, ApiError> {
    let (inputs, single) = inputs.into_list();
    let texts = inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| match TextInput::from(input) {
            TextInput {
                text,
                text_pair: None,
            } => Ok(text),
            _ => Err(ApiError::Validation(format!(
                "inputs[{i}] is a text pair: token classification reads single texts"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    answer(state, headers, texts, single, aggregation).await
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    texts: Vec<String>,
    single: bool,
    aggregation: Aggregation,
) -> Result<Json<TokenClassificationResponse>, ApiError> {
    let call = Call::new(state, request_id(headers));
    let engine = state.ready_engine()?;
    let mut answers = classify_tokens(state, &engine, &call, texts, &aggregation).await?;
    Ok(Json(if single {
        TokenClassificationResponse::One(answers.pop().unwrap_or_default())
    } else {
        TokenClassificationResponse::Batch(answers)
    }))
}
