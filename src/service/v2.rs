//! The Open Inference Protocol's view of the model, shared by its HTTP (`http::v2`) and gRPC
//! (`grpc`) forms: every served model version has the input `text` (BYTES, one text
//! per element), the optional input `text_pair` (BYTES, the second text of each pair, one per
//! text) and the outputs `label` (BYTES, the best label), `score` (FP32, its
//! probability) and `scores` (FP32 `[n, labels]`, every label's probability in id order; with
//! the classification extension, BYTES `[n, k]` strings `score:index:label`). A token
//! classifier has the input `text` and the one output `entities` (BYTES, one JSON list of
//! entities per text, as `/token-classification` answers; its parameters as the output's).
//!
//! Each form parses its request into texts (and second texts; [`inputs`]) and [`Wanted`]
//! outputs, [`infer`] runs them, and each form renders the [`OutputTensor`]s (JSON, binary, or
//! protobuf raw contents; [`raw`]).

mod inputs;
mod outputs;
mod raw;
pub(crate) mod rerank;

pub(crate) use inputs::{check_shape, text_inputs};
use outputs::{entity_parameters, named_outputs, Named};
pub use raw::{decode_strings, encode_strings};
pub(crate) use raw::{encode_floats, utf8};

use super::token_classification::Aggregation;
use super::{classify, validate_inputs, Call};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::postprocess::{ranked, scores};
use crate::state::AppState;
use crate::types::{ModelTask, TextInput, Truncation};
use serde::Serialize;
use serde_json::{Map, Value};

/// What metadata and configuration report as the model's platform.
pub(crate) const PLATFORM: &str = "candle";
/// Protocol extensions this server implements.
pub(crate) const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "classification"];

/// The model's input tensor: the texts.
pub(crate) const INPUT: &str = "text";
/// The optional second input: each text's second text, making text pairs.
pub(crate) const PAIR_INPUT: &str = "text_pair";

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MetadataTensor {
    pub name: &'static str,
    pub datatype: &'static str,
    /// -1 for a dimension of any size.
    pub shape: Vec<i64>,
}

fn tensor(name: &'static str, datatype: &'static str, shape: Vec<i64>) -> MetadataTensor {
    MetadataTensor {
        name,
        datatype,
        shape,
    }
}

/// The model's input and output tensors, for metadata and configuration alike. `text_pair`
/// is optional (the protocol's metadata cannot say so; Triton's configuration can).
/// A cross-encoder (one label) also has the rerank tensors ([`rerank`]): `query` and `texts`
/// in, `logit` and `ranking` out; a token classifier has `text` in and `entities` out only.
pub(crate) fn model_tensors(
    task: ModelTask,
    labels: usize,
) -> (Vec<MetadataTensor>, Vec<MetadataTensor>) {
    if task == ModelTask::TokenClassification {
        return (
            vec![tensor(INPUT, "BYTES", vec![-1])],
            vec![tensor(Output::Entities.name(), "BYTES", vec![-1])],
        );
    }
    let mut inputs = vec![
        tensor(INPUT, "BYTES", vec![-1]),
        tensor(PAIR_INPUT, "BYTES", vec![-1]),
    ];
    let mut outputs = vec![
        tensor("label", "BYTES", vec![-1]),
        tensor("score", "FP32", vec![-1]),
        tensor("scores", "FP32", vec![-1, labels as i64]),
    ];
    if labels == 1 {
        inputs.push(tensor(rerank::QUERY_INPUT, "BYTES", vec![1]));
        inputs.push(tensor(rerank::TEXTS_INPUT, "BYTES", vec![-1]));
        outputs.push(tensor("logit", "FP32", vec![-1]));
        outputs.push(tensor("ranking", "INT64", vec![-1]));
    }
    (inputs, outputs)
}

/// The model's outputs, in the default order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Output {
    Label,
    Score,
    Scores,
    /// A token classifier's one output.
    Entities,
}

impl Output {
    pub(crate) const ALL: [Output; 3] = [Output::Label, Output::Score, Output::Scores];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Output::Label => "label",
            Output::Score => "score",
            Output::Scores => "scores",
            Output::Entities => "entities",
        }
    }

    /// The outputs of a model of `task`, in the default order.
    fn of(task: ModelTask) -> &'static [Output] {
        match task {
            ModelTask::TextClassification => &Output::ALL,
            ModelTask::TokenClassification => &[Output::Entities],
        }
    }
}

/// One requested output: which, in binary form or not (HTTP only; gRPC answers in raw form
/// always), and the classification extension's `k` when asked for.
#[derive(Debug)]
pub(crate) struct Wanted {
    pub output: Output,
    pub binary: bool,
    pub classification: Option<usize>,
    /// `entities`' parameters (`aggregation_strategy`, `ignore_labels`, `stride`), where given.
    pub aggregation: Option<Aggregation>,
}

/// A boolean parameter (`binary_data_output`, `binary_data`); absent is false.
pub(crate) fn flag(parameters: Option<&Map<String, Value>>, name: &str) -> Result<bool, ApiError> {
    match parameters.and_then(|p| p.get(name)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::BadRequest(format!(
            "parameter `{name}` must be a boolean, found {other}"
        ))),
    }
}

/// The requested outputs (name and parameters) in order, all when none are named, each binary
/// when it asks for `binary_data` or the request for `binary_data_output`; unknown or repeated
/// names and misplaced `classification` are 400.
pub(crate) fn requested(
    task: ModelTask,
    outputs: Vec<(String, Option<Map<String, Value>>)>,
    binary_default: bool,
) -> Result<Vec<Wanted>, ApiError> {
    let all = Output::of(task);
    if outputs.is_empty() {
        return Ok(all
            .iter()
            .map(|&output| Wanted {
                output,
                binary: binary_default,
                classification: None,
                aggregation: None,
            })
            .collect());
    }
    let names: Vec<String> = all.iter().map(|o| format!("`{}`", o.name())).collect();
    let there_are = format!("this model has {}", names.join(", "));
    let chosen = named_outputs(outputs, all, Output::name, &there_are, binary_default)?;
    let mut wanted = Vec::with_capacity(chosen.len());
    for Named {
        output,
        binary,
        parameters,
    } in chosen
    {
        let parameters = parameters.as_ref();
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
                        "`classification` applies to the `scores` output, not `{}`",
                        output.name()
                    )))
                }
            },
        };
        let aggregation = match output {
            Output::Entities => entity_parameters(parameters)?,
            _ => None,
        };
        wanted.push(Wanted {
            output,
            binary,
            classification,
            aggregation,
        });
    }
    Ok(wanted)
}

/// An output tensor's data, flat and row-major.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum TensorData {
    Bytes(Vec<String>),
    Fp32(Vec<f32>),
    Int64(Vec<i64>),
}

impl TensorData {
    /// The raw (binary) form: what the HTTP binary extension and gRPC's raw contents carry.
    pub(crate) fn raw(&self) -> Vec<u8> {
        match self {
            TensorData::Bytes(strings) => encode_strings(strings.iter().map(String::as_str)),
            TensorData::Fp32(values) => encode_floats(values),
            TensorData::Int64(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// One computed output.
#[derive(Debug)]
pub(crate) struct OutputTensor {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<usize>,
    pub data: TensorData,
    /// Asked for in binary form (HTTP's binary tensor data extension).
    pub binary: bool,
}

/// Validates `texts` and their second texts `pairs`, when given (every error 400, as the
/// protocol's clients expect), classifies them and computes the `wanted` outputs in order.
pub(crate) async fn infer(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    texts: Vec<String>,
    pairs: Option<Vec<String>>,
    wanted: Vec<Wanted>,
) -> Result<Vec<OutputTensor>, ApiError> {
    if engine.info.task == ModelTask::TokenClassification {
        return infer_entities(state, engine, call, texts, pairs, wanted).await;
    }
    let inputs: Vec<TextInput> = match pairs {
        None => texts.into_iter().map(TextInput::from).collect(),
        Some(pairs) if pairs.len() == texts.len() => texts
            .into_iter()
            .zip(pairs)
            .map(|(text, pair)| TextInput::pair(text, pair))
            .collect(),
        Some(pairs) => {
            return Err(ApiError::BadRequest(format!(
                "input `{PAIR_INPUT}` has {} elements and `{INPUT}` {}: give one second text \
                 per text",
                pairs.len(),
                texts.len()
            )))
        }
    };
    let max_inputs = state.config.max_client_batch_size as usize;
    validate_inputs(&inputs, INPUT, max_inputs).map_err(ApiError::validation_as_bad_request)?;
    let logits = classify(state, engine, call, inputs, Truncation::LongestFirst)
        .await
        .map_err(ApiError::validation_as_bad_request)?;
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
    let outputs = wanted
        .into_iter()
        .map(|wanted| {
            let (datatype, shape, data) = match (wanted.output, wanted.classification) {
                (Output::Entities, _) => ("BYTES", vec![n], TensorData::Bytes(Vec::new())),
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
            OutputTensor {
                name: wanted.output.name(),
                datatype,
                shape,
                data,
                binary: wanted.binary,
            }
        })
        .collect();
    Ok(outputs)
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

/// A token classifier's `entities` output: each text's entities as `/token-classification`
/// answers them, with the output's parameters or the pipeline's defaults, one JSON string per
/// text.
async fn infer_entities(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    texts: Vec<String>,
    pairs: Option<Vec<String>>,
    wanted: Vec<Wanted>,
) -> Result<Vec<OutputTensor>, ApiError> {
    if pairs.is_some() {
        return Err(ApiError::BadRequest(format!(
            "a token classifier reads single texts: input `{PAIR_INPUT}` has no place here"
        )));
    }
    let aggregation = match wanted.iter().find_map(|w| w.aggregation.clone()) {
        Some(aggregation) => aggregation,
        None => Aggregation::new(None, None, None)?,
    };
    let answers =
        super::token_classification::classify_tokens(state, engine, call, texts, &aggregation)
            .await
            .map_err(ApiError::validation_as_bad_request)?;
    let json = answers
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(format!("cannot write entities: {e}")))?;
    let n = json.len();
    let mut data = Some(json);
    Ok(wanted
        .into_iter()
        .map(|wanted| OutputTensor {
            name: wanted.output.name(),
            datatype: "BYTES",
            shape: vec![n],
            data: TensorData::Bytes(data.take().unwrap_or_default()),
            binary: wanted.binary,
        })
        .collect())
}
