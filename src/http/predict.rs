//! `POST /predict` and `POST /`: texts and text pairs (shapes in [`super::inputs`]) through
//! validation, the engine and post-processing. TEI-compatible; `POST /` hands zero-shot requests
//! to [`zero_shot`].

use super::extract::ApiJson;
use super::inputs::{CandidateLabels, Inputs, Sequences};
use super::request_id;
use super::token_classification::{self, TokenClassificationResponse};
use super::zero_shot::{self, ZeroShotParameters};
use crate::engine::Engine;
use crate::error::{ApiError, ErrorBody};
use crate::postprocess::token_classification::Strategy;
use crate::postprocess::zero_shot::ZeroShotOutput;
use crate::postprocess::{ranked, transformed, FunctionToApply, LabelScore};
use crate::service::token_classification::Aggregation;
use crate::service::{self, validate_inputs, Call};
use crate::state::AppState;
use crate::types::{ModelTask, ScoreFunction, TextInput, Truncation};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PredictRequest {
    pub inputs: Inputs,
    /// Return the logits instead of softmax/sigmoid scores.
    #[serde(default)]
    pub raw_scores: bool,
    /// Cut inputs longer than the model's maximum length (a pair loses tokens from its longer
    /// text first, transformers' `longest_first`); if false they are refused with 422.
    #[serde(default = "default_true")]
    pub truncate: bool,
    /// Return only the k best labels.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
    /// The Hugging Face Inference API's parameters; where given, they take precedence over the
    /// top-level fields above.
    #[serde(default)]
    pub parameters: Option<Parameters>,
}

/// The parameters of the Hugging Face Inference API (and TEI's `POST /`): text
/// classification's, and on `POST /` zero-shot classification's: with `candidate_labels` the
/// request is answered as `/zero-shot-classification` answers it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Parameters {
    /// Return only the k best labels.
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
    /// `softmax`, `sigmoid` or `none` (the logits); by default the model's own function
    /// (softmax, or a sigmoid per label for multi-label and single-output models).
    pub function_to_apply: Option<FunctionToApply>,
    /// Cut inputs longer than the model's maximum length (default); if false they are refused.
    pub truncation: Option<bool>,
    /// Zero-shot, `POST /` only: the labels to choose from (see `/zero-shot-classification`).
    pub candidate_labels: Option<CandidateLabels>,
    /// Zero-shot, `POST /` only: `{}` marks where the label goes.
    pub hypothesis_template: Option<String>,
    /// Zero-shot, `POST /` only: score each label on its own.
    pub multi_label: Option<bool>,
    /// Token classification, `POST /` only (see `/token-classification`): `none`, `simple`,
    /// `first`, `average` or `max`.
    pub aggregation_strategy: Option<Strategy>,
    /// Token classification, `POST /` only: labels left out (default `["O"]`).
    pub ignore_labels: Option<Vec<String>>,
    /// Token classification, `POST /` only: not supported (422).
    pub stride: Option<u64>,
}

impl Parameters {
    fn token_classification(&self) -> bool {
        self.aggregation_strategy.is_some() || self.ignore_labels.is_some() || self.stride.is_some()
    }

    fn zero_shot(&self) -> bool {
        self.candidate_labels.is_some()
            || self.hypothesis_template.is_some()
            || self.multi_label.is_some()
    }
}

/// What a request asks for, the `parameters` object over the top-level fields.
struct Options {
    function: FunctionToApply,
    truncation: Truncation,
    top_k: Option<usize>,
}

impl Options {
    fn of(request: &PredictRequest, model_function: ScoreFunction) -> Result<Self, ApiError> {
        let parameters = request.parameters.as_ref();
        if parameters.is_some_and(Parameters::zero_shot) {
            return Err(ApiError::Validation(
                "`candidate_labels`, `hypothesis_template` and `multi_label` are zero-shot \
                 parameters: POST them to /zero-shot-classification (or /)"
                    .into(),
            ));
        }
        if parameters.is_some_and(Parameters::token_classification) {
            return Err(ApiError::Validation(
                "`aggregation_strategy`, `ignore_labels` and `stride` are token-classification \
                 parameters, for a token classifier (this model is a text classifier)"
                    .into(),
            ));
        }
        let top_k = parameters.and_then(|p| p.top_k).or(request.top_k);
        if top_k == Some(0) {
            return Err(ApiError::Validation("`top_k` must be at least 1".into()));
        }
        let function = match parameters.and_then(|p| p.function_to_apply) {
            Some(function) => function,
            None if request.raw_scores => FunctionToApply::None,
            None => model_function.into(),
        };
        let truncate = parameters
            .and_then(|p| p.truncation)
            .unwrap_or(request.truncate);
        Ok(Self {
            function,
            truncation: if truncate {
                Truncation::LongestFirst
            } else {
                Truncation::Refuse
            },
            top_k,
        })
    }
}

pub(super) fn default_true() -> bool {
    true
}

/// Labels with scores, highest first: one list for a single input, one list per input for a
/// list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum PredictResponse {
    One(Vec<LabelScore>),
    Batch(Vec<Vec<LabelScore>>),
}

#[utoipa::path(
    post,
    path = "/predict",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Label scores, highest first", body = PredictResponse),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 422, description = "Invalid request: empty text or pair member, too many inputs, wrong types, zero-shot parameters, too long with truncate=false", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "inference"
)]
pub(crate) async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PredictRequest>,
) -> Result<Json<PredictResponse>, ApiError> {
    let engine = state.ready_engine()?;
    predict_with(&state, &engine, &headers, request).await
}

/// `/predict` on one model of the repository: the same request and answers.
#[utoipa::path(
    post,
    path = "/models/{name}/predict",
    params(("name" = String, Path, description = "the model's name in the repository")),
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Label scores, highest first", body = PredictResponse),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 422, description = "Invalid request, as for /predict", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "inference"
)]
pub(crate) async fn predict_model(
    State(state): State<Arc<AppState>>,
    path: super::v2::ModelPath,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PredictRequest>,
) -> Result<Json<PredictResponse>, ApiError> {
    let (_, engine) = state.ready_model(&path.name, None)?;
    predict_with(&state, &engine, &headers, request).await
}

async fn predict_with(
    state: &AppState,
    engine: &Engine,
    headers: &HeaderMap,
    request: PredictRequest,
) -> Result<Json<PredictResponse>, ApiError> {
    let (mut results, single) = classify_request(state, engine, headers, request).await?;
    Ok(Json(if single {
        PredictResponse::One(results.pop().unwrap_or_default())
    } else {
        PredictResponse::Batch(results)
    }))
}

/// What `POST /` answers. The two shapes are disjoint (so the OpenAPI `oneOf` holds): text
/// classification and zero-shot on a list answer one list per input; zero-shot on a single
/// string answers one flat list, as `InferenceClient.zero_shot_classification` reads it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum InferenceApiResponse {
    /// A token classifier's entities: one list for a single text, one per text for a list
    /// (see `/token-classification`).
    Entities(TokenClassificationResponse),
    /// One list of label scores per input, best first: text classification (also for a
    /// single input), and zero-shot on a list of texts.
    PerInput(Vec<Vec<LabelScore>>),
    /// Zero-shot on a single text: the candidate labels with their scores, best first.
    One(Vec<LabelScore>),
}

/// `POST /`: the Hugging Face Inference API's route, answered as TEI answers it and
/// `huggingface_hub.InferenceClient` reads it. Text classification (`text_classification`): a
/// list of label lists, one per input, also for a single string. With
/// `parameters.candidate_labels`, zero-shot classification (`zero_shot_classification`),
/// computed as `/zero-shot-classification` computes it, answered as the Inference API answers
/// it today: `{label, score}` objects, best first.
#[utoipa::path(
    post,
    path = "/",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Label scores, highest first, one list per input; with candidate_labels, the candidate labels' scores, best first", body = InferenceApiResponse),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 422, description = "Invalid request: empty text or pair member, too many inputs, wrong types or parameters, too long with truncation=false; zero-shot's as /zero-shot-classification's", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "inference"
)]
pub(crate) async fn inference_api(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PredictRequest>,
) -> Result<Json<InferenceApiResponse>, ApiError> {
    if state
        .ready_engine()
        .is_ok_and(|e| e.info.task == ModelTask::TokenClassification)
    {
        let (inputs, aggregation) = token_request(request)?;
        let Json(answer) =
            token_classification::inference_api(&state, &headers, inputs, aggregation).await?;
        return Ok(Json(InferenceApiResponse::Entities(answer)));
    }
    if request
        .parameters
        .as_ref()
        .is_some_and(Parameters::zero_shot)
    {
        let (inputs, parameters) = zero_shot_request(request)?;
        let (outputs, single) = zero_shot::answer(&state, &headers, inputs, parameters).await?;
        let mut lists: Vec<Vec<LabelScore>> = outputs.into_iter().map(label_scores).collect();
        return Ok(Json(if single {
            InferenceApiResponse::One(lists.pop().unwrap_or_default())
        } else {
            InferenceApiResponse::PerInput(lists)
        }));
    }
    let engine = state.ready_engine()?;
    let (results, _) = classify_request(&state, &engine, &headers, request).await?;
    Ok(Json(InferenceApiResponse::PerInput(results)))
}

/// A `POST /` request for a token classifier: its inputs and token-classification
/// parameters; text classification's and zero-shot's have no meaning there and are refused.
fn token_request(request: PredictRequest) -> Result<(Inputs, Aggregation), ApiError> {
    let parameters = request.parameters.unwrap_or_default();
    let other = parameters.zero_shot()
        || parameters.top_k.is_some()
        || parameters.function_to_apply.is_some()
        || parameters.truncation.is_some()
        || request.top_k.is_some()
        || request.raw_scores
        || !request.truncate;
    if other {
        return Err(ApiError::Validation(
            "this model is a token classifier: its parameters are `aggregation_strategy`, \
             `ignore_labels` (and `stride`); text classification's and zero-shot's do not apply"
                .into(),
        ));
    }
    let aggregation = Aggregation::new(
        parameters.aggregation_strategy,
        parameters.ignore_labels,
        parameters.stride,
    )?;
    Ok((request.inputs, aggregation))
}

/// A zero-shot answer as `{label, score}` objects, best first.
fn label_scores(output: ZeroShotOutput) -> Vec<LabelScore> {
    output
        .labels
        .into_iter()
        .zip(output.scores)
        .map(|(label, score)| LabelScore { label, score })
        .collect()
}

/// A `POST /` request with zero-shot parameters as `/zero-shot-classification`'s; text
/// classification's own parameters have no meaning there and are refused.
fn zero_shot_request(request: PredictRequest) -> Result<(Sequences, ZeroShotParameters), ApiError> {
    let parameters = request.parameters.unwrap_or_default();
    let text_classification = parameters.top_k.is_some()
        || parameters.function_to_apply.is_some()
        || parameters.truncation.is_some()
        || request.top_k.is_some()
        || request.raw_scores
        || !request.truncate;
    if text_classification {
        return Err(ApiError::Validation(
            "zero-shot classification (`candidate_labels`) takes no `top_k`, \
             `function_to_apply`, `truncation`, `truncate` or `raw_scores`"
                .into(),
        ));
    }
    let Some(candidate_labels) = parameters.candidate_labels else {
        return Err(ApiError::Validation(
            "`hypothesis_template` and `multi_label` are zero-shot parameters: give \
             `candidate_labels` too"
                .into(),
        ));
    };
    let inputs = Sequences::try_from(request.inputs).map_err(ApiError::Validation)?;
    Ok((
        inputs,
        ZeroShotParameters {
            candidate_labels,
            hypothesis_template: parameters.hypothesis_template,
            multi_label: parameters.multi_label,
        },
    ))
}

/// Validation, inference and post-processing of a `/predict`-shaped request: one ranked label
/// list per input, and whether the request held a single input.
async fn classify_request(
    state: &AppState,
    engine: &Engine,
    headers: &HeaderMap,
    request: PredictRequest,
) -> Result<(Vec<Vec<LabelScore>>, bool), ApiError> {
    let call = Call::new(state, request_id(headers));
    let options = Options::of(&request, engine.info.score_function)?;
    let (inputs, single) = request.inputs.into_list();
    let inputs: Vec<TextInput> = inputs.into_iter().map(TextInput::from).collect();
    validate_inputs(
        &inputs,
        "inputs",
        state.config.max_client_batch_size as usize,
    )?;
    let logits = service::classify(state, engine, &call, inputs, options.truncation).await?;
    let labels = &engine.info.labels;
    let results = logits
        .iter()
        .map(|row| ranked(labels, &transformed(row, options.function), options.top_k))
        .collect();
    Ok((results, single))
}
