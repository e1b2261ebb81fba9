//! Token classification, shared by `/token-classification`, `POST /` and the Open Inference
//! Protocol: validation, the engine within the call's deadline, the pipeline's aggregation
//! (src/postprocess/token_classification.rs) and one prediction-log row per text.

use super::{require_task, validate_inputs, Call};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::postprocess::token_classification::{entities, Entity, Strategy};
use crate::predlog::{Stored, Task};
use crate::state::AppState;
use crate::types::{ModelTask, TextInput};

/// The most labels `ignore_labels` may name, and the longest one in bytes.
pub(crate) const MAX_IGNORE_LABELS: usize = 1024;
const MAX_IGNORE_LABEL_BYTES: usize = 256;

/// How to aggregate the tokens and which labels to leave out (the pipeline's parameters).
#[derive(Debug, Clone)]
pub(crate) struct Aggregation {
    pub strategy: Strategy,
    /// `None`: the pipeline's default, `["O"]`.
    pub ignore_labels: Option<Vec<String>>,
}

impl Aggregation {
    /// The pipeline's parameters; `stride` (overlapping windows over long texts) is refused:
    /// texts longer than the model takes are cut, as the pipeline does without it.
    pub(crate) fn new(
        strategy: Option<Strategy>,
        ignore_labels: Option<Vec<String>>,
        stride: Option<u64>,
    ) -> Result<Self, ApiError> {
        if stride.is_some() {
            return Err(ApiError::Validation(
                "`stride` is not supported: texts longer than the model's maximum are cut, as \
                 the pipeline does without it"
                    .into(),
            ));
        }
        if let Some(labels) = &ignore_labels {
            if labels.len() > MAX_IGNORE_LABELS {
                return Err(ApiError::Validation(format!(
                    "`ignore_labels` has {} labels, over the limit of {MAX_IGNORE_LABELS}",
                    labels.len()
                )));
            }
            if labels.iter().any(|l| l.len() > MAX_IGNORE_LABEL_BYTES) {
                return Err(ApiError::Validation(format!(
                    "a label of `ignore_labels` is over {MAX_IGNORE_LABEL_BYTES} bytes"
                )));
            }
        }
        Ok(Self {
            strategy: strategy.unwrap_or_default(),
            ignore_labels,
        })
    }
}

/// Each text's entities, in order: refused (422) unless the model is a token classifier.
pub(crate) async fn classify_tokens(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    texts: Vec<String>,
    aggregation: &Aggregation,
) -> Result<Vec<Vec<Entity>>, ApiError> {
    require_task(engine, ModelTask::TokenClassification)?;
    let inputs: Vec<TextInput> = texts.iter().map(|t| t.as_str().into()).collect();
    validate_inputs(
        &inputs,
        "inputs",
        state.config.max_client_batch_size as usize,
    )?;
    let kept = state.prediction_log.as_ref().map(|log| {
        let texts = texts.iter().map(|t| (t.as_str(), None));
        log.keep(Task::TokenClassification, texts)
    });
    let count = texts.len();
    let rows = tokio::time::timeout(call.timeout, engine.classify_tokens(texts))
        .await
        .map_err(|_| ApiError::Timeout(call.timeout))??;
    state
        .metrics
        .task_answered(Task::TokenClassification.as_str(), count);
    let default_ignore = ["O".to_string()];
    let ignore = aggregation
        .ignore_labels
        .as_deref()
        .unwrap_or(&default_ignore);
    let labels = &engine.info.labels;
    let answers: Vec<Vec<Entity>> = rows
        .iter()
        .map(|row| {
            entities(
                &row.logits,
                labels,
                &row.pieces,
                aggregation.strategy,
                ignore,
                |tokens| engine.tokens_to_string(tokens),
            )
        })
        .collect();
    if let (Some(log), Some(kept)) = (&state.prediction_log, kept) {
        let info = &engine.info;
        let model = crate::predlog::ModelKey {
            name: &info.model_id,
            version: &info.model_version,
            sha256: &info.weights_sha256,
        };
        let stored = answers.iter().map(|found| Some(stored(found)));
        log.record_stored(call.request_id, model, kept, stored, call.started.elapsed());
    }
    Ok(answers)
}

/// A text's prediction-log row: its entities as answered, the most confident one's label.
fn stored(found: &[Entity]) -> Stored {
    let best = found.iter().max_by(|a, b| a.score.total_cmp(&b.score));
    let label = best.and_then(|e| e.entity.clone().or_else(|| e.entity_group.clone()));
    Stored {
        label: label.unwrap_or_default(),
        score: best.map_or(0.0, |e| e.score),
        // Words come from the text (and byte-level tokens may decode to NUL, which the
        // database refuses in JSON): stored with NUL replaced.
        scores: serde_json::Value::Array(
            found
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    e.word = e.word.replace('\0', "\u{FFFD}");
                    serde_json::to_value(e).unwrap_or(serde_json::Value::Null)
                })
                .collect(),
        ),
    }
}
