//! Token classification, shared by `/token-classification`, `POST /` and the Open Inference
//! Protocol: validation, the engine within the call's deadline, the pipeline's aggregation
//! (src/postprocess/token_classification.rs) and one prediction-log row per text.

use super::{require_task, validate_inputs, Call};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::postprocess::token_classification::{entities, merge_windows, Entity, Strategy};
use crate::predlog::{Stored, Task};
use crate::state::AppState;
use crate::types::{ModelTask, TextInput};

/// The most labels `ignore_labels` may name, and the longest one in bytes.
pub(crate) const MAX_IGNORE_LABELS: usize = 1024;
const MAX_IGNORE_LABEL_BYTES: usize = 256;

/// How to aggregate the tokens, which labels to leave out, and how to read long texts (the
/// pipeline's parameters).
#[derive(Debug, Clone)]
pub(crate) struct Aggregation {
    pub strategy: Strategy,
    /// `None`: the pipeline's default, `["O"]`.
    pub ignore_labels: Option<Vec<String>>,
    /// Overlapping windows over texts longer than the model takes, `stride` tokens shared by
    /// neighbours; `None`: such texts are cut, as the pipeline cuts them without it.
    pub stride: Option<usize>,
}

impl Aggregation {
    /// The pipeline's parameters, refused where the pipeline refuses them: `stride` needs a
    /// strategy that groups (the windows' tokens are merged as entities); a `stride` too long
    /// for the model is refused once its special tokens are known.
    pub(crate) fn new(
        strategy: Option<Strategy>,
        ignore_labels: Option<Vec<String>>,
        stride: Option<u64>,
    ) -> Result<Self, ApiError> {
        let strategy = strategy.unwrap_or_default();
        if stride.is_some() && strategy == Strategy::None {
            return Err(ApiError::Validation(
                "`stride` reads a long text in overlapping windows whose entities are then \
                 merged: it needs `aggregation_strategy` simple, first, average or max, not none"
                    .into(),
            ));
        }
        // Past usize (32-bit targets): longer than any model's input, refused as such later.
        let stride = stride.map(|s| usize::try_from(s).unwrap_or(usize::MAX));
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
            strategy,
            ignore_labels,
            stride,
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
    // Windows are model inputs: a request takes at most as many as texts.
    let max_windows = state.config.max_client_batch_size as usize;
    let classified = engine.classify_tokens(texts, aggregation.stride, max_windows);
    let texts_windows = tokio::time::timeout(call.timeout, classified)
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
    let answers: Vec<Vec<Entity>> = texts_windows
        .iter()
        .map(|windows| {
            let found = windows.iter().flat_map(|window| {
                entities(
                    &window.logits,
                    labels,
                    &window.pieces,
                    aggregation.strategy,
                    ignore,
                    |tokens| engine.tokens_to_string(tokens),
                )
            });
            match windows.len() {
                1 => found.collect(),
                _ => merge_windows(found.collect()),
            }
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
