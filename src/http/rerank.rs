//! `POST /rerank`: TEI's rerank route. The query is paired with each text, a cross-encoder
//! scores the pairs ([`crate::service::rerank`]), and the texts come back best first with the
//! sigmoid of their logit (or the logit itself with `raw_scores`).

use super::extract::ApiJson;
use super::request_id;
use crate::error::{ApiError, ErrorBody};
use crate::service::rerank::rerank as rerank_documents;
use crate::service::Call;
use crate::state::AppState;
use crate::types::Truncation;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RerankRequest {
    /// What the texts are ranked against; paired with each text as its first text.
    #[schema(example = "what is a good family movie?")]
    pub query: String,
    /// The documents to rank: at most `--max-rerank-documents`; an empty text is scored too.
    pub texts: Vec<String>,
    /// Answer each text's logit instead of its sigmoid.
    #[serde(default)]
    pub raw_scores: bool,
    /// Answer each text beside its index.
    #[serde(default)]
    pub return_text: bool,
    /// Cut pairs longer than the model's maximum length (the longer of query and text loses
    /// tokens first, transformers' `longest_first`); if false they are refused with 422.
    #[serde(default = "super::predict::default_true")]
    pub truncate: bool,
}

/// One text's place in the ranking.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rank {
    /// The text's position in the request's `texts`.
    pub index: usize,
    /// The sigmoid of the model's logit for (query, text), or the logit with `raw_scores`.
    pub score: f32,
    /// The text itself, with `return_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[utoipa::path(
    post,
    path = "/rerank",
    request_body = RerankRequest,
    responses(
        (status = 200, description = "Every text, best first", body = Vec<Rank>),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 422, description = "Invalid request: empty query, no texts, more than --max-rerank-documents, too long with truncate=false, wrong types; or a model that is not a cross-encoder (a sequence classifier with one output)", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "inference"
)]
pub(crate) async fn rerank(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RerankRequest>,
) -> Result<Json<Vec<Rank>>, ApiError> {
    let call = Call::new(&state, request_id(&headers));
    let engine = state.ready_engine()?;
    let truncation = if request.truncate {
        Truncation::LongestFirst
    } else {
        Truncation::Refuse
    };
    let reranked = rerank_documents(
        &state,
        &engine,
        &call,
        &request.query,
        &request.texts,
        "texts",
        truncation,
    )
    .await?;
    let mut texts: Vec<Option<String>> = if request.return_text {
        request.texts.into_iter().map(Some).collect()
    } else {
        Vec::new()
    };
    let ranks = reranked
        .ranked
        .into_iter()
        .map(|r| Rank {
            index: r.index,
            score: if request.raw_scores { r.logit } else { r.score },
            text: texts.get_mut(r.index).and_then(Option::take),
        })
        .collect();
    Ok(Json(ranks))
}
