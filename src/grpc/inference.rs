//! `inference.GRPCInferenceService`: health, metadata and `ModelInfer`, answered from the same
//! state and through the same [`crate::service::v2`] as the HTTP form. Outputs always travel in
//! `raw_output_contents`, as Triton sends them and its clients read them.

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{infer_parameter::ParameterChoice, InferParameter};
use super::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::{deadline, observed, request_id};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::repository::Lookup;
use crate::service::v2::rerank::{self, QUERY_INPUT, TEXTS_INPUT};
use crate::service::v2::{
    self, check_shape, decode_strings, model_tensors, requested, text_inputs, utf8, EXTENSIONS,
    INPUT, PAIR_INPUT, PLATFORM,
};
use crate::service::Call;
use crate::state::AppState;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub(super) struct Inference {
    state: Arc<AppState>,
}

impl Inference {
    pub(super) fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// An empty version string means "the server's choice": the one version.
fn version(version: &str) -> Option<&str> {
    (!version.is_empty()).then_some(version)
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        let id = request_id(request.metadata());
        observed(&self.state, "ServerLive", &id, async {
            Ok(ServerLiveResponse { live: true })
        })
        .await
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let id = request_id(request.metadata());
        observed(&self.state, "ServerReady", &id, async {
            Ok(ServerReadyResponse {
                ready: self.state.check_ready().is_ok(),
            })
        })
        .await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let id = request_id(request.metadata());
        let request = request.into_inner();
        observed(&self.state, "ModelReady", &id, async {
            // A model still loading (or failed, or the server draining) is simply not ready;
            // only an unknown name or version is an error.
            let served = self.state.served();
            let ready = match served.lookup(&request.name, version(&request.version)) {
                Lookup::Ready(..) => !self.state.is_withdrawn(),
                Lookup::NotReady(_) => false,
                Lookup::Unknown(error) => return Err(error),
            };
            Ok(ModelReadyResponse { ready })
        })
        .await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let id = request_id(request.metadata());
        observed(&self.state, "ServerMetadata", &id, async {
            Ok(ServerMetadataResponse {
                name: env!("CARGO_PKG_NAME").into(),
                version: env!("CARGO_PKG_VERSION").into(),
                extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            })
        })
        .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let id = request_id(request.metadata());
        let request = request.into_inner();
        observed(&self.state, "ModelMetadata", &id, async {
            let (_, engine) = self.state.model(&request.name, version(&request.version))?;
            let served = self.state.served();
            let versions = served.model(&request.name).map_or_else(Vec::new, |model| {
                let ready = model.versions.iter().filter(|v| v.state.name() == "READY");
                ready.map(|v| v.version.to_string()).collect()
            });
            let metadata = |tensors: Vec<v2::MetadataTensor>| {
                tensors
                    .into_iter()
                    .map(|t| TensorMetadata {
                        name: t.name.into(),
                        datatype: t.datatype.into(),
                        shape: t.shape,
                    })
                    .collect()
            };
            let (inputs, outputs) = model_tensors(engine.info.task, engine.info.labels.len());
            Ok(ModelMetadataResponse {
                name: engine.info.model_id.clone(),
                versions,
                platform: PLATFORM.into(),
                inputs: metadata(inputs),
                outputs: metadata(outputs),
            })
        })
        .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let id = request_id(request.metadata());
        let state = &self.state;
        // The API key was checked before the message was read (guard.rs).
        let client_deadline = deadline(request.metadata());
        let request = request.into_inner();
        observed(state, "ModelInfer", &id, async {
            let call = Call::new(state, &id).with_deadline(client_deadline?);
            let (_, engine) =
                state.ready_model(&request.model_name, version(&request.model_version))?;
            infer(state, &engine, &call, request).await
        })
        .await
    }
}

async fn infer(
    state: &AppState,
    engine: &Engine,
    call: &Call<'_>,
    mut request: ModelInferRequest,
) -> Result<ModelInferResponse, ApiError> {
    let outputs: Vec<_> = (std::mem::take(&mut request.outputs).into_iter())
        .map(|o| (o.name, Some(parameters(o.parameters))))
        .collect();
    let inputs = std::mem::take(&mut request.inputs);
    let raw = std::mem::take(&mut request.raw_input_contents);
    let computed = if rerank::is_rerank(inputs.iter().map(|i| i.name.as_str())) {
        let wanted = rerank::requested(outputs, false)?;
        let (query, texts) = rerank_texts(inputs, raw)?;
        rerank::infer(state, engine, call, query, texts, wanted).await?
    } else {
        let wanted = requested(engine.info.task, outputs, false)?;
        let (texts, pairs) = input_texts(inputs, raw)?;
        v2::infer(state, engine, call, texts, pairs, wanted).await?
    };
    let mut response = ModelInferResponse {
        model_name: engine.info.model_id.clone(),
        model_version: engine.info.model_version.clone(),
        id: request.id,
        ..Default::default()
    };
    for tensor in computed {
        response.raw_output_contents.push(tensor.data.raw());
        response.outputs.push(InferOutputTensor {
            name: tensor.name.into(),
            datatype: tensor.datatype.into(),
            shape: tensor.shape.iter().map(|&d| d as i64).collect(),
            ..Default::default()
        });
    }
    Ok(response)
}

/// The texts of the input `text` and, when given, the second texts of `text_pair`, each from
/// `contents.bytes_contents` or from its entry in `raw_input_contents` (one entry per input, in
/// the inputs' order, or none), after each input's name, datatype and shape are checked.
fn input_texts(
    inputs: Vec<InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> Result<(Vec<String>, Option<Vec<String>>), ApiError> {
    let inputs = with_raw(inputs, raw)?;
    let (text, pair) = text_inputs(inputs, |(i, _)| (i.name.as_str(), i.datatype.as_str()))?;
    let texts = strings(text, INPUT)?;
    let pairs = pair.map(|p| strings(p, PAIR_INPUT)).transpose()?;
    Ok((texts, pairs))
}

/// The query and the documents of a rerank request (inputs `query` and `texts`), typed or raw
/// as [`input_texts`] takes them.
fn rerank_texts(
    inputs: Vec<InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let inputs = with_raw(inputs, raw)?;
    let (query, texts) =
        rerank::rerank_inputs(inputs, |(i, _)| (i.name.as_str(), i.datatype.as_str()))?;
    Ok((strings(query, QUERY_INPUT)?, strings(texts, TEXTS_INPUT)?))
}

/// An input tensor and its entry of `raw_input_contents`, when the request has them.
type WithRaw = (InferInputTensor, Option<Vec<u8>>);

/// Each input with its entry of `raw_input_contents` (one per input, in order, or none).
fn with_raw(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> Result<Vec<WithRaw>, ApiError> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(ApiError::BadRequest(format!(
            "`raw_input_contents` has {} entries for {} inputs",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter().map(Some);
    Ok(inputs
        .into_iter()
        .map(|input| (input, raw.next().flatten()))
        .collect())
}

/// One BYTES input's strings, typed or raw (never both).
fn strings((input, raw): WithRaw, name: &str) -> Result<Vec<String>, ApiError> {
    let typed = input
        .contents
        .map(|c| c.bytes_contents)
        .filter(|b| !b.is_empty());
    let texts = match (typed, raw) {
        (Some(elements), None) => elements
            .iter()
            .enumerate()
            .map(|(i, element)| utf8(element, name, i))
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(raw)) => decode_strings(&raw, name)?,
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(format!(
                "input `{name}` has both `contents` and `raw_input_contents`; send one"
            )))
        }
        (None, None) => {
            return Err(ApiError::BadRequest(format!(
                "input `{name}` has no data: send it in `contents.bytes_contents` or `raw_input_contents`"
            )))
        }
    };
    check_shape(name, &input.shape, texts.len())?;
    Ok(texts)
}

/// Protobuf parameters in the JSON form the shared output checks read.
fn parameters(parameters: HashMap<String, InferParameter>) -> Map<String, Value> {
    parameters
        .into_iter()
        .filter_map(|(name, p)| {
            let value = match p.parameter_choice? {
                ParameterChoice::BoolParam(b) => Value::Bool(b),
                ParameterChoice::Int64Param(i) => Value::from(i),
                ParameterChoice::StringParam(s) => Value::String(s),
                ParameterChoice::DoubleParam(d) => Value::from(d),
                ParameterChoice::Uint64Param(u) => Value::from(u),
            };
            Some((name, value))
        })
        .collect()
}
