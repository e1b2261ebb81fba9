//! The protocol-independent inference call every API shares (`/predict`, `POST /`, the Open
//! Inference Protocol over HTTP and gRPC), zero-shot classification ([`zero_shot`]) and
//! reranking ([`rerank`]):
//! validation of the inputs, the engine call within a deadline, and the prediction log. Each
//! protocol parses its own request into texts or text pairs, calls [`classify`], and renders
//! the logits and errors its own way.

pub(crate) mod rerank;
pub(crate) mod token_classification;
pub mod v2;
pub(crate) mod zero_shot;

use crate::engine::Engine;
use crate::error::ApiError;
use crate::postprocess::scores;
use crate::predlog::Task;
use crate::state::AppState;
use crate::types::{ModelTask, TextInput, Truncation};
use std::time::{Duration, Instant};

/// What a protocol knows about one request beyond its texts.
pub(crate) struct Call<'a> {
    /// Logged with the request's predictions (`x-request-id`, or `-`).
    pub request_id: &'a str,
    /// When the request arrived: the prediction log's latency counts from here.
    pub started: Instant,
    /// The longest the engine may take: `--request-timeout`, or less when the client's own
    /// deadline (gRPC's `grpc-timeout`) is sooner.
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    /// A call that started now, with `--request-timeout` as its deadline.
    pub(crate) fn new(state: &AppState, request_id: &'a str) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            timeout: state.config.request_timeout,
        }
    }

    /// The same call with a client deadline, where it is sooner than the server's.
    pub(crate) fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        if let Some(deadline) = deadline {
            self.timeout = self.timeout.min(deadline);
        }
        self
    }
}

/// Refuses an empty list, more than `max_inputs` inputs, and empty or whitespace-only texts or
/// pair members (422, `validation`); `field` names the inputs in the messages.
pub(crate) fn validate_inputs(
    inputs: &[TextInput],
    field: &str,
    max_inputs: usize,
) -> Result<(), ApiError> {
    if inputs.is_empty() {
        return Err(ApiError::Validation(format!("`{field}` is an empty list")));
    }
    if inputs.len() > max_inputs {
        return Err(ApiError::Validation(format!(
            "{} inputs exceed the limit of {max_inputs} per request (--max-client-batch-size)",
            inputs.len()
        )));
    }
    for (i, input) in inputs.iter().enumerate() {
        if input.text.trim().is_empty() {
            return Err(ApiError::Validation(format!(
                "{field}[{i}] is empty or only whitespace"
            )));
        }
        if input
            .text_pair
            .as_ref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(ApiError::Validation(format!(
                "the text_pair of {field}[{i}] is empty or only whitespace"
            )));
        }
    }
    Ok(())
}

/// Logits for validated inputs within the call's deadline, and one prediction-log row per
/// input (probabilities, whatever the client asked for), its latency counted from the call's
/// start.
pub(crate) async fn classify(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    inputs: Vec<TextInput>,
    truncation: Truncation,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let kept = state.prediction_log.as_ref().map(|log| {
        let texts = inputs.iter().map(|i| (&*i.text, i.text_pair.as_deref()));
        log.keep(Task::TextClassification, texts)
    });
    let count = inputs.len();
    let logits = run(engine, call, inputs, truncation).await?;
    let task = Task::TextClassification.as_str();
    state.metrics.task_answered(task, count);
    if let (Some(log), Some(kept)) = (&state.prediction_log, kept) {
        let info = &engine.info;
        let predictions: Vec<Vec<(String, f32)>> = logits
            .iter()
            .map(|row| {
                let probabilities = scores(row, info.score_function, false);
                info.labels.iter().cloned().zip(probabilities).collect()
            })
            .collect();
        record(log, engine, call, kept, &predictions);
    }
    Ok(logits)
}

/// One prediction-log row per kept input: the call's request id, the model's weights and
/// the latency counted from the call's start.
fn record(
    log: &crate::predlog::PredictionLog,
    engine: &Engine,
    call: &Call<'_>,
    kept: crate::predlog::PendingTexts,
    predictions: &[Vec<(String, f32)>],
) {
    let info = &engine.info;
    let model = crate::predlog::ModelKey {
        name: &info.model_id,
        version: &info.model_version,
        sha256: &info.weights_sha256,
    };
    log.record(
        call.request_id,
        model,
        kept,
        predictions,
        call.started.elapsed(),
    );
}

/// Refuses (422) a model whose task is not `task`, naming the model's task and its route.
pub(crate) fn require_task(engine: &Engine, task: ModelTask) -> Result<(), ApiError> {
    let info = &engine.info;
    if info.task == task {
        return Ok(());
    }
    let route = match info.task {
        ModelTask::TextClassification => "/predict (or /zero-shot-classification for an NLI model)",
        ModelTask::TokenClassification => "/token-classification",
    };
    Err(ApiError::Validation(format!(
        "model `{}` is a {} model ({}), not {}: use {route}, or POST /",
        crate::logging::bounded(&info.model_id, crate::logging::MAX_LOGGED_TEXT),
        info.task.as_str(),
        info.architecture,
        task.as_str()
    )))
}

/// The engine call within the call's deadline.
async fn run(
    engine: &Engine,
    call: &Call<'_>,
    inputs: Vec<TextInput>,
    truncation: Truncation,
) -> Result<Vec<Vec<f32>>, ApiError> {
    require_task(engine, ModelTask::TextClassification)?;
    Ok(
        tokio::time::timeout(call.timeout, engine.classify(inputs, truncation))
            .await
            .map_err(|_| ApiError::Timeout(call.timeout))??,
    )
}
