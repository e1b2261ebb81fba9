//! `POST /v2/models/{name}[/versions/{version}]/infer`: tensors in, tensors out, through the
//! same validation, engine call, timeout and prediction log as `/predict`.

use super::binary::{self, V2Request};
use super::request::{InferRequest, RequestInput};
use super::ModelPath;
use crate::error::{ApiError, ErrorBody};
use crate::http::request_id;
use crate::service::v2::rerank::{self, QUERY_INPUT, TEXTS_INPUT};
use crate::service::v2::{
    self, check_shape, flag, requested, text_inputs, TensorData, INPUT, PAIR_INPUT,
};
use crate::service::Call;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ResponseOutput {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub datatype: &'static str,
    /// `binary_data_size` when the output's data follows the JSON in binary form.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Flat, row-major; absent for binary outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<TensorData>,
}

#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    params(("name" = String, Path, description = "the model id, as /info reports it")),
    request_body = InferRequest,
    responses(
        (status = 200, description = "The requested output tensors (application/octet-stream with Inference-Header-Content-Length when binary outputs were asked for)", body = InferResponse),
        (status = 400, description = "Malformed JSON, wrong tensor name, datatype or shape, `text_pair` not matching `text`, empty text or pair member, too many texts; a rerank request (`query` and `texts`) as /rerank's 422s, or on a model that is not a cross-encoder", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "v2"
)]
pub(crate) async fn infer(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
    headers: HeaderMap,
    V2Request(request): V2Request,
) -> Result<Response, ApiError> {
    // Validation errors are already the protocol's 400 (service::v2::infer).
    let (response, binary) = run(&state, &path, &headers, request).await?;
    if binary.is_empty() {
        Ok(Json(response).into_response())
    } else {
        binary::response(&response, binary)
    }
}

/// Inference on one served version of a model.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer",
    params(("name" = String, Path), ("version" = String, Path)),
    request_body = InferRequest,
    responses(
        (status = 200, description = "The requested output tensors (application/octet-stream with Inference-Header-Content-Length when binary outputs were asked for)", body = InferResponse),
        (status = 400, description = "Malformed JSON, wrong tensor name, datatype or shape, `text_pair` not matching `text`, empty text or pair member, too many texts; a rerank request (`query` and `texts`) as /rerank's 422s, or on a model that is not a cross-encoder", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        crate::error::InferenceErrors,
    ),
    tag = "v2")]
pub(crate) async fn infer_version(
    state: State<Arc<AppState>>,
    path: ModelPath,
    headers: HeaderMap,
    request: V2Request,
) -> Result<Response, ApiError> {
    infer(state, path, headers, request).await
}

/// The response, and the bytes of its binary outputs in order (none when all are JSON).
async fn run(
    state: &AppState,
    path: &ModelPath,
    headers: &HeaderMap,
    request: InferRequest,
) -> Result<(InferResponse, Vec<Vec<u8>>), ApiError> {
    let call = Call::new(state, request_id(headers));
    let engine = path.ready(state)?;
    let binary_default = flag(request.parameters.as_ref(), "binary_data_output")?;
    let outputs: Vec<_> = (request.outputs.unwrap_or_default().into_iter())
        .map(|o| (o.name, o.parameters))
        .collect();
    let computed = if rerank::is_rerank(request.inputs.iter().map(|i| i.name.as_str())) {
        let wanted = rerank::requested(outputs, binary_default)?;
        let (query, texts) =
            rerank::rerank_inputs(request.inputs, |i| (i.name.as_str(), i.datatype.as_str()))?;
        let (query, texts) = (strings(query, QUERY_INPUT)?, strings(texts, TEXTS_INPUT)?);
        rerank::infer(state, &engine, &call, query, texts, wanted).await?
    } else {
        let wanted = requested(engine.info.task, outputs, binary_default)?;
        let (texts, pairs) = input_texts(request.inputs)?;
        v2::infer(state, &engine, &call, texts, pairs, wanted).await?
    };
    let mut binary = Vec::new();
    let outputs = computed
        .into_iter()
        .map(|tensor| {
            if !tensor.binary {
                return ResponseOutput {
                    name: tensor.name,
                    shape: tensor.shape,
                    datatype: tensor.datatype,
                    parameters: None,
                    data: Some(tensor.data),
                };
            }
            let bytes = tensor.data.raw();
            let parameters = serde_json::json!({ "binary_data_size": bytes.len() });
            binary.push(bytes);
            ResponseOutput {
                name: tensor.name,
                shape: tensor.shape,
                datatype: tensor.datatype,
                parameters: Some(parameters),
                data: None,
            }
        })
        .collect();
    let response = InferResponse {
        model_name: engine.info.model_id.clone(),
        model_version: engine.info.model_version.clone(),
        id: request.id,
        outputs,
    };
    Ok((response, binary))
}

/// The texts of the input `text` and, when given, the second texts of `text_pair`, after each
/// input's name, datatype and shape are checked.
fn input_texts(inputs: Vec<RequestInput>) -> Result<(Vec<String>, Option<Vec<String>>), ApiError> {
    let (text, pair) = text_inputs(inputs, |i| (i.name.as_str(), i.datatype.as_str()))?;
    let texts = strings(text, INPUT)?;
    let pairs = pair.map(|p| strings(p, PAIR_INPUT)).transpose()?;
    Ok((texts, pairs))
}

/// The strings of one BYTES input, flat or nested as its shape says.
fn strings(input: RequestInput, name: &str) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = input.data else {
        return Err(ApiError::BadRequest(format!(
            "input `{name}`: `data` must be a list"
        )));
    };
    let shape = &input.shape;
    let mut texts = Vec::with_capacity(items.len());
    if items.iter().any(Value::is_array) {
        nested(items, shape, name, &mut texts).map_err(|e| {
            e.unwrap_or_else(|| {
                ApiError::BadRequest(format!(
                    "input `{name}`: nested `data` does not match shape {shape:?}"
                ))
            })
        })?;
    } else {
        for item in items {
            texts.push(string(item, name)?);
        }
        check_shape(name, shape, texts.len())?;
    }
    Ok(texts)
}

/// Collects nested row-major data whose every level has the length `shape` gives; `Err(None)`
/// for a structure that does not match.
fn nested(
    items: Vec<Value>,
    shape: &[u64],
    name: &str,
    out: &mut Vec<String>,
) -> Result<(), Option<ApiError>> {
    let Some((&dim, inner)) = shape.split_first() else {
        return Err(None);
    };
    if items.len() as u64 != dim {
        return Err(None);
    }
    for item in items {
        match item {
            Value::Array(items) if !inner.is_empty() => nested(items, inner, name, out)?,
            Value::Array(_) => return Err(None),
            _ if !inner.is_empty() => return Err(None),
            item => out.push(string(item, name).map_err(Some)?),
        }
    }
    Ok(())
}

fn string(item: Value, name: &str) -> Result<String, ApiError> {
    match item {
        Value::String(text) => Ok(text),
        other => {
            let found = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "an object",
            };
            Err(ApiError::BadRequest(format!(
                "input `{name}` is BYTES: every element must be a string, found {found}"
            )))
        }
    }
}
