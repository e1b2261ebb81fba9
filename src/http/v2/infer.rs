//! `POST /v2/models/{name}[/versions/{version}]/infer`: tensors in, tensors out, through the
//! same validation, engine call, timeout and prediction log as `/predict`.

use super::binary::{self, V2Request};
use super::ModelPath;
use crate::error::{ApiError, ErrorBody};
use crate::http::predict::{classify_logged, validate_texts};
use crate::postprocess::{ranked, scores};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// The model's one input tensor.
pub const INPUT: &str = "text";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    /// Echoed in the response.
    pub id: Option<String>,
    /// Accepted and ignored.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Exactly one tensor: `text`, BYTES, one text per element.
    pub inputs: Vec<RequestInput>,
    /// The outputs to return, in this order; all of them when absent or empty.
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestInput {
    pub name: String,
    /// Its element count must equal the number of texts.
    pub shape: Vec<u64>,
    pub datatype: String,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Strings in row-major order, flat or nested as `shape`; absent for binary data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestOutput {
    /// `label`, `score` or `scores`.
    pub name: String,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: &'static str,
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResponseOutput {
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TensorData {
    Bytes(Vec<String>),
    Fp32(Vec<f32>),
}

/// The model's outputs, in the default order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    Label,
    Score,
    Scores,
}

impl Output {
    const ALL: [Output; 3] = [Output::Label, Output::Score, Output::Scores];

    fn name(self) -> &'static str {
        match self {
            Output::Label => "label",
            Output::Score => "score",
            Output::Scores => "scores",
        }
    }
}

#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    params(("name" = String, Path, description = "the model id, as /info reports it")),
    request_body = InferRequest,
    responses(
        (status = 200, description = "The requested output tensors (application/octet-stream with Inference-Header-Content-Length when binary outputs were asked for)", body = InferResponse),
        (status = 400, description = "Malformed JSON, wrong tensor name, datatype or shape, empty text, too many texts", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        crate::http::openapi::InferenceErrors,
    ),
    tag = "v2"
)]
pub async fn infer(
    State(state): State<Arc<AppState>>,
    path: ModelPath,
    headers: HeaderMap,
    V2Request(request): V2Request,
) -> Result<Response, ApiError> {
    let (response, binary) = run(&state, &path, &headers, request)
        .await
        .map_err(ApiError::validation_as_bad_request)?;
    if binary.is_empty() {
        Ok(Json(response).into_response())
    } else {
        binary::response(&response, binary)
    }
}

/// Inference on a model version (only `1` exists).
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer",
    params(("name" = String, Path), ("version" = String, Path)),
    request_body = InferRequest,
    responses(
        (status = 200, description = "The requested output tensors (application/octet-stream with Inference-Header-Content-Length when binary outputs were asked for)", body = InferResponse),
        (status = 400, description = "Malformed JSON, wrong tensor name, datatype or shape, empty text, too many texts", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        crate::http::openapi::InferenceErrors,
    ),
    tag = "v2")]
pub async fn infer_version(
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
    let started = Instant::now();
    let engine = state.ready_engine()?.clone();
    path.check(&engine)?;
    let binary_default = flag(request.parameters.as_ref(), "binary_data_output")?;
    let outputs = requested(request.outputs.unwrap_or_default(), binary_default)?;
    let texts = input_texts(request.inputs)?;
    let max_inputs = state.config.max_client_batch_size as usize;
    validate_texts(&texts, "inputs[0].data", max_inputs)?;
    let logits = classify_logged(state, &engine, headers, texts, true, started).await?;

    let info = &engine.info;
    let probabilities: Vec<Vec<f32>> = logits
        .iter()
        .map(|row| scores(row, info.score_function, false))
        .collect();
    let best = probabilities
        .iter()
        .map(|p| ranked(&info.labels, p, Some(1)).pop())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::Internal("the model has no labels".into()))?;
    let n = probabilities.len();
    let mut binary = Vec::new();
    let outputs = outputs
        .into_iter()
        .map(|wanted| {
            let (datatype, shape, data) = match (wanted.output, wanted.classification) {
                (Output::Label, _) => (
                    "BYTES",
                    vec![n],
                    TensorData::Bytes(best.iter().map(|b| b.label.clone()).collect()),
                ),
                (Output::Score, _) => (
                    "FP32",
                    vec![n],
                    TensorData::Fp32(best.iter().map(|b| b.score).collect()),
                ),
                (Output::Scores, None) => (
                    "FP32",
                    vec![n, info.labels.len()],
                    TensorData::Fp32(probabilities.concat()),
                ),
                (Output::Scores, Some(k)) => {
                    let k = k.min(info.labels.len());
                    let classes = probabilities
                        .iter()
                        .flat_map(|p| top_classes(&info.labels, p, k));
                    ("BYTES", vec![n, k], TensorData::Bytes(classes.collect()))
                }
            };
            if !wanted.binary {
                return ResponseOutput {
                    name: wanted.output.name(),
                    shape,
                    datatype,
                    parameters: None,
                    data: Some(data),
                };
            }
            let bytes = match &data {
                TensorData::Bytes(strings) => {
                    binary::encode_strings(strings.iter().map(String::as_str))
                }
                TensorData::Fp32(values) => binary::encode_floats(values),
            };
            let parameters = serde_json::json!({ "binary_data_size": bytes.len() });
            binary.push(bytes);
            ResponseOutput {
                name: wanted.output.name(),
                shape,
                datatype,
                parameters: Some(parameters),
                data: None,
            }
        })
        .collect();
    let response = InferResponse {
        model_name: info.model_id.clone(),
        model_version: super::MODEL_VERSION,
        id: request.id,
        outputs,
    };
    Ok((response, binary))
}

/// The classification extension's strings for one text: its `k` best classes as
/// `score:index:label`, best first.
fn top_classes(labels: &[String], probabilities: &[f32], k: usize) -> Vec<String> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| {
            let label = labels.get(i).map_or("", String::as_str);
            format!("{:.6}:{i}:{label}", probabilities[i])
        })
        .collect()
}

/// One requested output: which, in binary form or not, and the classification extension's
/// `k` when asked for.
struct Wanted {
    output: Output,
    binary: bool,
    classification: Option<usize>,
}

/// A boolean parameter (`binary_data_output`, `binary_data`); absent is false.
fn flag(parameters: Option<&Map<String, Value>>, name: &str) -> Result<bool, ApiError> {
    match parameters.and_then(|p| p.get(name)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::BadRequest(format!(
            "parameter `{name}` must be a boolean, found {other}"
        ))),
    }
}

/// The requested outputs in order (all when none are named), each binary when it asks for
/// `binary_data` or the request for `binary_data_output`; unknown or repeated names are 400.
fn requested(outputs: Vec<RequestOutput>, binary_default: bool) -> Result<Vec<Wanted>, ApiError> {
    if outputs.is_empty() {
        return Ok(Output::ALL
            .into_iter()
            .map(|output| Wanted {
                output,
                binary: binary_default,
                classification: None,
            })
            .collect());
    }
    let mut chosen: Vec<Wanted> = Vec::with_capacity(outputs.len());
    for RequestOutput { name, parameters } in outputs {
        let output = Output::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown output `{name}`; this model has `label`, `score` and `scores`"
                ))
            })?;
        if chosen.iter().any(|w| w.output == output) {
            return Err(ApiError::BadRequest(format!(
                "output `{name}` is requested twice"
            )));
        }
        let parameters = parameters.as_ref();
        let binary = match parameters.and_then(|p| p.get("binary_data")) {
            None => binary_default,
            Some(_) => flag(parameters, "binary_data")?,
        };
        let classification = match parameters.and_then(|p| p.get("classification")) {
            None => None,
            Some(k) => match (output, k.as_u64()) {
                (Output::Scores, Some(k)) if k >= 1 => Some(k as usize),
                (Output::Scores, _) => {
                    return Err(ApiError::BadRequest(
                        "`classification` must be a count of classes, at least 1".into(),
                    ))
                }
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "`classification` applies to the `scores` output, not `{name}`"
                    )))
                }
            },
        };
        chosen.push(Wanted {
            output,
            binary,
            classification,
        });
    }
    Ok(chosen)
}

/// The texts of the one input tensor, after its name, datatype and shape are checked.
fn input_texts(inputs: Vec<RequestInput>) -> Result<Vec<String>, ApiError> {
    let [input] = <[RequestInput; 1]>::try_from(inputs).map_err(|inputs| {
        ApiError::BadRequest(format!(
            "expected exactly one input tensor (`{INPUT}`), got {}",
            inputs.len()
        ))
    })?;
    if input.name != INPUT {
        return Err(ApiError::BadRequest(format!(
            "unknown input `{}`; this model takes one input named `{INPUT}`",
            input.name
        )));
    }
    if input.datatype != "BYTES" {
        return Err(ApiError::BadRequest(format!(
            "input `{INPUT}` has datatype `{}`; it must be `BYTES` (strings)",
            input.datatype
        )));
    }
    let Value::Array(items) = input.data else {
        return Err(ApiError::BadRequest(format!(
            "input `{INPUT}`: `data` must be a list"
        )));
    };
    let shape = &input.shape;
    let mut texts = Vec::with_capacity(items.len());
    if items.iter().any(Value::is_array) {
        nested(items, shape, &mut texts).map_err(|e| {
            e.unwrap_or_else(|| {
                ApiError::BadRequest(format!(
                    "input `{INPUT}`: nested `data` does not match shape {shape:?}"
                ))
            })
        })?;
    } else {
        for item in items {
            texts.push(string(item)?);
        }
        let elements = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if elements != Some(texts.len() as u64) {
            return Err(ApiError::BadRequest(format!(
                "input `{INPUT}`: shape {shape:?} does not hold the {} elements of `data`",
                texts.len()
            )));
        }
    }
    Ok(texts)
}

/// Collects nested row-major data whose every level has the length `shape` gives; `Err(None)`
/// for a structure that does not match.
fn nested(items: Vec<Value>, shape: &[u64], out: &mut Vec<String>) -> Result<(), Option<ApiError>> {
    let Some((&dim, inner)) = shape.split_first() else {
        return Err(None);
    };
    if items.len() as u64 != dim {
        return Err(None);
    }
    for item in items {
        match item {
            Value::Array(items) if !inner.is_empty() => nested(items, inner, out)?,
            Value::Array(_) => return Err(None),
            _ if !inner.is_empty() => return Err(None),
            item => out.push(string(item).map_err(Some)?),
        }
    }
    Ok(())
}

fn string(item: Value) -> Result<String, ApiError> {
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
                "input `{INPUT}` is BYTES: every element must be a string, found {found}"
            )))
        }
    }
}
