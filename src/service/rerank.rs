//! Reranking with a cross-encoder (a sequence classifier with one output): the query is
//! paired with each document, every pair of the request goes to the engine in one call (the
//! batcher plans them by length like any inputs), and the one logit per pair ranks the
//! documents ([`crate::postprocess::rerank`]). Shared by `/rerank` (TEI's shape), `/v1/rerank`
//! (Cohere's and Jina's) and the Open Inference Protocol's `query`/`texts` inputs.

use super::{record, Call};
use crate::engine::{Engine, ModelInfo};
use crate::error::ApiError;
use crate::postprocess::rerank::{rank, Ranked};
use crate::predlog::{Task, RERANK_LOGGED_RESULTS};
use crate::state::AppState;
use crate::types::{ModelTask, TextInput, Truncation};

/// A rerank answer: the documents best first, and the tokens the pairs took.
#[derive(Debug)]
pub(crate) struct Reranked {
    pub ranked: Vec<Ranked>,
    /// Tokens of every (query, document) pair as the model read them, special tokens
    /// included: Cohere's and Jina's `usage.total_tokens`.
    pub tokens: usize,
}

/// 422 unless the model is a cross-encoder: a sequence classifier with exactly one output.
/// The message names what the model is and the route that fits it.
pub(crate) fn check_reranker(info: &ModelInfo) -> Result<(), ApiError> {
    let architecture = &info.architecture;
    let model = format!("model `{}` ({architecture})", info.model_id);
    let problem = if info.task == ModelTask::TokenClassification {
        format!("{model} is a token classifier: use /token-classification")
    } else if info.labels.len() != 1 {
        let nli = info
            .labels
            .iter()
            .any(|l| l.to_lowercase().starts_with("entail"));
        let route = if nli {
            "/predict for texts and text pairs, /zero-shot-classification for candidate labels"
        } else {
            "/predict for texts and text pairs"
        };
        format!(
            "{model} is a sequence classifier with {} labels ({}): use {route}",
            info.labels.len(),
            info.labels.join(", ")
        )
    } else {
        return Ok(());
    };
    Err(ApiError::Validation(format!(
        "reranking needs a cross-encoder (a sequence classifier with one output); {problem}"
    )))
}

/// Checks the model and the request (422s: an empty query, no documents, more than
/// `--max-rerank-documents`), scores every (query, document) pair in one engine call within
/// the call's deadline, and ranks the documents. `field` names the documents in messages
/// (`texts`, `documents`). Empty documents are scored as transformers scores them. The
/// prediction log gets one row (task `rerank`: the query, the best document, the best
/// results' scores by index).
pub(crate) async fn rerank(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    query: &str,
    documents: &[String],
    field: &str,
    truncation: Truncation,
) -> Result<Reranked, ApiError> {
    check_reranker(&engine.info)?;
    if query.trim().is_empty() {
        return Err(ApiError::Validation(
            "`query` is empty or only whitespace".into(),
        ));
    }
    if documents.is_empty() {
        return Err(ApiError::Validation(format!("`{field}` is an empty list")));
    }
    let max = state.config.max_rerank_documents as usize;
    if documents.len() > max {
        return Err(ApiError::Validation(format!(
            "{} documents exceed the limit of {max} per request (--max-rerank-documents)",
            documents.len()
        )));
    }
    // The query first in every pair: the tokenizer tokenizes it once.
    let inputs = documents
        .iter()
        .map(|document| TextInput::pair(query, document.as_str()))
        .collect();
    let (logits, tokens) =
        tokio::time::timeout(call.timeout, engine.classify_counted(inputs, truncation))
            .await
            .map_err(|_| ApiError::Timeout(call.timeout))??;
    let ranked = rank(&logits).map_err(ApiError::Internal)?;
    state
        .metrics
        .task_answered(Task::Rerank.as_str(), documents.len());
    if let (Some(log), Some(best)) = (&state.prediction_log, ranked.first()) {
        let best_document = documents.get(best.index).map(String::as_str);
        let kept = log.keep(Task::Rerank, [(query, best_document)]);
        let top: Vec<(String, f32)> = ranked
            .iter()
            .take(RERANK_LOGGED_RESULTS)
            .map(|r| (r.index.to_string(), r.score))
            .collect();
        record(log, engine, call, kept, &[top]);
    }
    Ok(Reranked { ranked, tokens })
}
