//! `POST /v1/rerank`: reranking in Cohere's and Jina's shape, which most retrieval clients
//! speak (Cohere's SDK, LangChain's and LlamaIndex's rerankers, gateways). Computed as
//! `/rerank` computes it ([`crate::service::rerank`]); `relevance_score` is the sigmoid of the
//! model's logit.

use super::extract::ApiJson;
use super::request_id;
use crate::engine::Engine;
use crate::error::{ApiError, ErrorBody};
use crate::service::rerank::rerank;
use crate::service::Call;
use crate::state::AppState;
use crate::types::Truncation;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CohereRerankRequest {
    /// A served model's name (`/v2/models`) picks that model; any other name (clients send
    /// their provider's model names) is answered by the default model, which the answer names.
    #[serde(default)]
    pub model: Option<String>,
    #[schema(example = "what is a good family movie?")]
    pub query: String,
    /// Strings, or objects with a `text` (other keys are ignored): at most
    /// `--max-rerank-documents`.
    pub documents: Vec<Document>,
    /// Answer only the n best documents; all by default.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub top_n: Option<usize>,
    /// Answer each document's text beside its index (default false).
    #[serde(default)]
    pub return_documents: Option<bool>,
}

/// A document: a string, or an object whose `text` is ranked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Document {
    Text(String),
    Object(DocumentText),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DocumentText {
    pub text: String,
}

impl Document {
    fn into_text(self) -> String {
        match self {
            Document::Text(text) | Document::Object(DocumentText { text }) => text,
        }
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Document::Text(text)),
            Value::Object(mut object) => match object.remove("text") {
                Some(Value::String(text)) => Ok(Document::Object(DocumentText { text })),
                _ => Err(D::Error::custom("a document object needs a string `text`")),
            },
            _ => Err(D::Error::custom(
                "a document is a string or an object with a string `text`",
            )),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CohereRerankResponse {
    /// The request's id (`x-request-id`).
    pub id: String,
    /// The model that ranked the documents.
    pub model: String,
    /// The documents best first, cut to `top_n`.
    pub results: Vec<CohereResult>,
    pub usage: Usage,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CohereResult {
    /// The document's position in the request's `documents`.
    pub index: usize,
    /// The sigmoid of the model's logit for (query, document), between 0 and 1.
    pub relevance_score: f32,
    /// The document, with `return_documents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Usage {
    /// Tokens of every (query, document) pair as the model read them, special tokens included.
    pub total_tokens: usize,
}

#[utoipa::path(
    post,
    path = "/v1/rerank",
    request_body = CohereRerankRequest,
    responses(
        (status = 200, description = "The documents best first, cut to top_n", body = CohereRerankResponse),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 422, description = "Invalid request: empty query, no documents, more than --max-rerank-documents, top_n 0, a document neither a string nor an object with a string `text`; or a model that is not a cross-encoder (a sequence classifier with one output)", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "inference"
)]
pub(crate) async fn rerank_v1(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CohereRerankRequest>,
) -> Result<Json<CohereRerankResponse>, ApiError> {
    let id = request_id(&headers);
    let call = Call::new(&state, id);
    let engine = engine_for(&state, request.model.as_deref())?;
    if request.top_n == Some(0) {
        return Err(ApiError::Validation("`top_n` must be at least 1".into()));
    }
    let documents: Vec<String> = request
        .documents
        .into_iter()
        .map(Document::into_text)
        .collect();
    let reranked = rerank(
        &state,
        &engine,
        &call,
        &request.query,
        &documents,
        "documents",
        Truncation::LongestFirst,
    )
    .await?;
    let top_n = request.top_n.unwrap_or(documents.len());
    let mut texts: Vec<Option<String>> = if request.return_documents.unwrap_or(false) {
        documents.into_iter().map(Some).collect()
    } else {
        Vec::new()
    };
    let results = reranked
        .ranked
        .into_iter()
        .take(top_n)
        .map(|r| CohereResult {
            index: r.index,
            relevance_score: r.score,
            document: texts
                .get_mut(r.index)
                .and_then(Option::take)
                .map(|text| DocumentText { text }),
        })
        .collect();
    Ok(Json(CohereRerankResponse {
        id: id.to_owned(),
        model: engine.info.model_id.clone(),
        results,
        usage: Usage {
            total_tokens: reranked.tokens,
        },
    }))
}

/// The served model `model` names, else the default model.
fn engine_for(state: &AppState, model: Option<&str>) -> Result<Arc<Engine>, ApiError> {
    match model {
        Some(name) if state.served().model(name).is_some() => {
            state.ready_model(name, None).map(|(_, engine)| engine)
        }
        _ => state.ready_engine(),
    }
}
