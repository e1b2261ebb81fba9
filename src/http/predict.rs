//! `POST /predict`: validation, then the engine, then post-processing. TEI-compatible.

use super::extract::ApiJson;
use crate::engine::Engine;
use crate::error::{ApiError, ErrorBody};
use crate::model::ScoreFunction;
use crate::postprocess::{ranked, scores, transformed, FunctionToApply, LabelScore};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// One text, or a batch of texts (each classified on its own, never as a pair).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Batch(Vec<String>),
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputsVisitor;
        impl<'de> Visitor<'de> for InputsVisitor {
            type Value = Inputs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Inputs, E> {
                Ok(Inputs::One(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Inputs, E> {
                Ok(Inputs::One(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs, A::Error> {
                let mut texts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(text) = seq.next_element::<String>()? {
                    texts.push(text);
                }
                Ok(Inputs::Batch(texts))
            }
        }
        deserializer.deserialize_any(InputsVisitor)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PredictRequest {
    pub inputs: Inputs,
    /// Return the logits instead of softmax/sigmoid scores.
    #[serde(default)]
    pub raw_scores: bool,
    /// Cut inputs longer than the model's maximum length; if false they are refused with 422.
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

/// The text-classification parameters of the Hugging Face Inference API (and TEI's `POST /`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// Return only the k best labels.
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
    /// `softmax`, `sigmoid` or `none` (the logits); by default the model's own function
    /// (softmax, or a sigmoid per label for multi-label and single-output models).
    pub function_to_apply: Option<FunctionToApply>,
    /// Cut inputs longer than the model's maximum length (default); if false they are refused.
    pub truncation: Option<bool>,
}

/// What a request asks for, the `parameters` object over the top-level fields.
struct Options {
    function: FunctionToApply,
    truncate: bool,
    top_k: Option<usize>,
}

impl Options {
    fn of(request: &PredictRequest, model_function: ScoreFunction) -> Result<Self, ApiError> {
        let parameters = request.parameters.as_ref();
        let top_k = parameters.and_then(|p| p.top_k).or(request.top_k);
        if top_k == Some(0) {
            return Err(ApiError::Validation("`top_k` must be at least 1".into()));
        }
        let function = match parameters.and_then(|p| p.function_to_apply) {
            Some(function) => function,
            None if request.raw_scores => FunctionToApply::None,
            None => model_function.into(),
        };
        Ok(Self {
            function,
            truncate: parameters
                .and_then(|p| p.truncation)
                .unwrap_or(request.truncate),
            top_k,
        })
    }
}

fn default_true() -> bool {
    true
}

/// Labels with scores, highest first: one list for a string input, one list per text for a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
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
        (status = 422, description = "Invalid request: empty text, too many inputs, wrong types, too long with truncate=false", body = ErrorBody),
        crate::http::openapi::InferenceErrors,
    ),
    tag = "inference"
)]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PredictRequest>,
) -> Result<Json<PredictResponse>, ApiError> {
    let (mut results, single) = classify_request(&state, &headers, request).await?;
    Ok(Json(if single {
        PredictResponse::One(results.pop().unwrap_or_default())
    } else {
        PredictResponse::Batch(results)
    }))
}

/// `POST /`: the Hugging Face Inference API's text-classification route, as TEI answers it and
/// `huggingface_hub.InferenceClient.text_classification` reads it: a list of label lists, one
/// per text, also for a single string.
#[utoipa::path(
    post,
    path = "/",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Label scores, highest first, one list per text", body = Vec<Vec<LabelScore>>),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 422, description = "Invalid request: empty text, too many inputs, wrong types or parameters, too long with truncation=false", body = ErrorBody),
        crate::http::openapi::InferenceErrors,
    ),
    tag = "inference"
)]
pub async fn inference_api(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PredictRequest>,
) -> Result<Json<Vec<Vec<LabelScore>>>, ApiError> {
    let (results, _) = classify_request(&state, &headers, request).await?;
    Ok(Json(results))
}

/// Validation, inference and post-processing of a `/predict`-shaped request: one ranked label
/// list per text, and whether the input was a single string.
async fn classify_request(
    state: &AppState,
    headers: &HeaderMap,
    request: PredictRequest,
) -> Result<(Vec<Vec<LabelScore>>, bool), ApiError> {
    let started = Instant::now();
    let engine = state.ready_engine()?.clone();
    let options = Options::of(&request, engine.info.score_function)?;
    let (texts, single) = match request.inputs {
        Inputs::One(text) => (vec![text], true),
        Inputs::Batch(texts) => (texts, false),
    };
    validate_texts(
        &texts,
        "inputs",
        state.config.max_client_batch_size as usize,
    )?;
    let logits = classify_logged(state, &engine, headers, texts, options.truncate, started).await?;
    let labels = &engine.info.labels;
    let results = logits
        .iter()
        .map(|row| ranked(labels, &transformed(row, options.function), options.top_k))
        .collect();
    Ok((results, single))
}

/// Refuses an empty list, more than `max_inputs` texts, and empty or whitespace-only texts
/// (422, `validation`); `field` names the texts in the messages.
pub(super) fn validate_texts(
    texts: &[String],
    field: &str,
    max_inputs: usize,
) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::Validation(format!("`{field}` is an empty list")));
    }
    if texts.len() > max_inputs {
        return Err(ApiError::Validation(format!(
            "{} inputs exceed the limit of {max_inputs} per request (--max-client-batch-size)",
            texts.len()
        )));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::Validation(format!(
            "{field}[{i}] is empty or only whitespace"
        )));
    }
    Ok(())
}

/// The inference both APIs share: logits for validated `texts` within `--request-timeout`, and
/// one prediction-log row per text (probabilities, whatever the client asked for), its latency
/// counted from `started`.
pub(super) async fn classify_logged(
    state: &AppState,
    engine: &Engine,
    headers: &HeaderMap,
    texts: Vec<String>,
    truncate: bool,
    started: Instant,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let kept = state.prediction_log.as_ref().map(|log| log.keep(&texts));
    let timeout = state.config.request_timeout;
    let logits = tokio::time::timeout(timeout, engine.classify(texts, truncate))
        .await
        .map_err(|_| ApiError::Timeout(timeout))??;
    if let (Some(log), Some(kept)) = (&state.prediction_log, kept) {
        let predictions: Vec<Vec<(String, f32)>> = logits
            .iter()
            .map(|row| {
                let probabilities = scores(row, engine.info.score_function, false);
                engine
                    .info
                    .labels
                    .iter()
                    .cloned()
                    .zip(probabilities)
                    .collect()
            })
            .collect();
        let request_id = headers
            .get("x-request-id")
            .and_then(|id| id.to_str().ok())
            .unwrap_or("-");
        log.record(
            request_id,
            &engine.info.weights_sha256,
            kept,
            &predictions,
            started.elapsed(),
        );
    }
    Ok(logits)
}
