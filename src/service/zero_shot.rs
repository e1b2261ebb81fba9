//! Zero-shot classification with an NLI model: each input is paired with one hypothesis per
//! candidate label, every pair of the request goes to the engine in one call (so the batcher
//! runs them together, like the texts of a batch), and the logits become label scores as
//! transformers' zero-shot pipeline computes them ([`crate::postprocess::zero_shot`]).

use super::{run, validate_inputs, Call};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::postprocess::zero_shot::{ranked, NliLabels, Scoring, Template, ZeroShotOutput};
use crate::predlog::Task;
use crate::state::AppState;
use crate::types::{TextInput, Truncation};
use std::collections::HashSet;

/// transformers' default template.
pub(crate) const DEFAULT_TEMPLATE: &str = "This example is {}.";
/// Longest hypothesis template, in characters: a sentence around the label, with room to spare.
pub(crate) const MAX_TEMPLATE_CHARS: usize = 500;

/// What a zero-shot request asks, beside its inputs.
#[derive(Debug, Clone)]
pub(crate) struct ZeroShotTask {
    pub candidate_labels: Vec<String>,
    /// `{}` marks where the label goes; [`DEFAULT_TEMPLATE`] when the request has none.
    pub hypothesis_template: String,
    /// Labels scored each on its own (several may be true), not against each other.
    pub multi_label: bool,
}

/// Validates the request (422s), classifies every (input, hypothesis) pair in one engine call
/// within the call's deadline, and answers each input's labels best first. The prediction log
/// gets one row per input with its candidate labels' scores (task `zero-shot-classification`).
pub(crate) async fn classify(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    sequences: Vec<String>,
    task: ZeroShotTask,
) -> Result<Vec<ZeroShotOutput>, ApiError> {
    super::require_task(engine, crate::types::ModelTask::TextClassification)?;
    let nli = NliLabels::of(&engine.info.labels).map_err(ApiError::Validation)?;
    let labels = task.candidate_labels;
    check_labels(&labels, state.config.max_candidate_labels as usize)?;
    let template = check_template(&task.hypothesis_template)?;
    let scoring = Scoring::of(nli, task.multi_label, labels.len()).map_err(ApiError::Validation)?;
    let max_inputs = state.config.max_client_batch_size as usize;
    let inputs: Vec<TextInput> = sequences.iter().map(|s| s.as_str().into()).collect();
    validate_inputs(&inputs, "inputs", max_inputs)?;
    let pairs = sequences.len() * labels.len();
    if pairs > max_inputs {
        return Err(ApiError::Validation(format!(
            "{} inputs x {} candidate labels make {pairs} hypothesis pairs, over the limit of \
             {max_inputs} per request (--max-client-batch-size)",
            sequences.len(),
            labels.len()
        )));
    }
    let hypotheses: Vec<String> = labels.iter().map(|l| template.fill(l)).collect();
    // Input-major, so that each premise's pairs are consecutive: the tokenizer then tokenizes
    // it once.
    let inputs = sequences
        .iter()
        .flat_map(|s| {
            hypotheses
                .iter()
                .map(|h| TextInput::pair(s.as_str(), h.as_str()))
        })
        .collect();
    let kept = state.prediction_log.as_ref().map(|log| {
        let texts = sequences.iter().map(|s| (s.as_str(), None));
        log.keep(Task::ZeroShotClassification, texts)
    });
    let logits = run(engine, call, inputs, Truncation::OnlyFirst).await?;
    let task = Task::ZeroShotClassification.as_str();
    state.metrics.task_answered(task, sequences.len());
    let scores = logits
        .chunks(labels.len())
        .map(|rows| scoring.scores(rows))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::Internal)?;
    if let (Some(log), Some(kept)) = (&state.prediction_log, kept) {
        let predictions: Vec<Vec<(String, f32)>> = scores
            .iter()
            .map(|s| labels.iter().cloned().zip(s.iter().copied()).collect())
            .collect();
        super::record(log, engine, call, kept, &predictions);
    }
    Ok(sequences
        .into_iter()
        .zip(scores)
        .map(|(sequence, scores)| {
            let (labels, scores) = ranked(&labels, &scores);
            ZeroShotOutput {
                sequence,
                labels,
                scores,
            }
        })
        .collect())
}

/// Candidate labels: at least one, at most `max`, none empty or repeated.
fn check_labels(labels: &[String], max: usize) -> Result<(), ApiError> {
    if labels.is_empty() {
        return Err(ApiError::Validation(
            "`candidate_labels` is empty: give at least one label".into(),
        ));
    }
    if labels.len() > max {
        return Err(ApiError::Validation(format!(
            "{} candidate labels exceed the limit of {max} per request (--max-candidate-labels)",
            labels.len()
        )));
    }
    let mut seen = HashSet::with_capacity(labels.len());
    for (i, label) in labels.iter().enumerate() {
        if label.trim().is_empty() {
            return Err(ApiError::Validation(format!(
                "candidate_labels[{i}] is empty or only whitespace"
            )));
        }
        // The same label twice would be scored twice and, single-label, split its share.
        if !seen.insert(label.as_str()) {
            return Err(ApiError::Validation(format!(
                "candidate_labels[{i}] {label:?} is given twice"
            )));
        }
    }
    Ok(())
}

fn check_template(template: &str) -> Result<Template, ApiError> {
    let chars = template.chars().count();
    if chars > MAX_TEMPLATE_CHARS {
        return Err(ApiError::Validation(format!(
            "`hypothesis_template` has {chars} characters; the limit is {MAX_TEMPLATE_CHARS}"
        )));
    }
    Template::parse(template).map_err(ApiError::Validation)
}
