//! The Open Inference Protocol over gRPC (`--grpc-port`): KServe's and Triton's
//! `inference.GRPCInferenceService` ([`inference`]) and the standard `grpc.health.v1.Health`
//! ([`health`]) for Kubernetes gRPC probes. Requests go through the same validation, queue,
//! deadlines, API keys, prediction log and metrics as HTTP, and drain with it at shutdown.

mod guard;
mod health;
mod inference;

use crate::error::ApiError;
use crate::logging::REQUEST_ID_KEY;
use crate::metrics::{GrpcMethod, GrpcMethodCode};
use crate::state::AppState;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Response, Status};
use tracing::Instrument;

/// The generated protocol types, server and client (`proto/grpc_predict_v2.proto`).
pub mod proto {
    tonic::include_proto!("inference");

    /// The encoded descriptors of the protocol, served by gRPC reflection.
    pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/inference_descriptor.bin"));
}

/// The health-checking protocol's types and client, for probes and tests.
pub use tonic_health::pb as health_proto;

/// The protocol's service name, as clients and health checks name it.
pub const SERVICE: &str = "inference.GRPCInferenceService";

/// Both services as one router, for the accept loop the HTTP side uses too.
pub fn build_service(state: Arc<AppState>) -> axum::Router {
    let limit = state.config.payload_limit;
    let inference = proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(
        inference::Inference::new(state.clone()),
    )
    .max_decoding_message_size(limit)
    .max_encoding_message_size(usize::MAX);
    let health = health_proto::health_server::HealthServer::new(health::Health::new(state.clone()));
    let mut routes = tonic::service::Routes::new(inference).add_service(health);
    // gRPC server reflection, so that grpcurl and other tools need no .proto files:
    // grpc.reflection.v1, and v1alpha for older clients. Both descriptor sets are built in, so
    // building it fails only on a bug.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(health_proto::FILE_DESCRIPTOR_SET)
    };
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => routes = routes.add_service(v1).add_service(v1alpha),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "gRPC reflection is unavailable")
        }
    }
    routes
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(state, guard::guard))
}

/// The request's `x-request-id` metadata, or a new id when it has none or one that is too
/// long or has other characters than [`crate::logging::is_safe_request_id`] allows (said once
/// in the log, with its length only).
fn request_id(metadata: &MetadataMap) -> String {
    let Some(id) = metadata.get(REQUEST_ID_KEY) else {
        return crate::logging::new_request_id();
    };
    match id.to_str() {
        Ok(text) if crate::logging::is_safe_request_id(text) => text.to_owned(),
        _ => {
            let new = crate::logging::new_request_id();
            tracing::info!(
                request_id = %new,
                client_id_bytes = id.as_bytes().len(),
                "{}", crate::logging::REQUEST_ID_REPLACED
            );
            new
        }
    }
}

/// The client's deadline from `grpc-timeout` (e.g. `500m`, `2S`), when it sent one.
fn deadline(metadata: &MetadataMap) -> Result<Option<Duration>, ApiError> {
    let Some(value) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let invalid = || ApiError::BadRequest("`grpc-timeout` is not a gRPC timeout".into());
    let value = value.to_str().map_err(|_| invalid())?;
    if value.len() < 2 || value.len() > 9 {
        return Err(invalid());
    }
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().map_err(|_| invalid())?;
    let duration = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(invalid()),
    };
    Ok(Some(duration))
}

/// Runs one RPC: a span with its method and request id, per-method
/// counts by status code and latency, one log line per answer, and the request id echoed in
/// the response metadata.
async fn observed<T>(
    state: &AppState,
    method: &'static str,
    request_id: &str,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!("grpc", method, request_id);
    let metrics = &state.metrics;
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(error) => error.grpc_code(),
    };
    metrics
        .grpc_request_duration
        .get_or_create(&GrpcMethod {
            method: method.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
    metrics
        .grpc_requests
        .get_or_create(&GrpcMethodCode {
            method: method.to_owned(),
            code: code_name(code).to_owned(),
        })
        .inc();
    span.in_scope(|| {
        tracing::info!(
            code = code_name(code),
            latency_ms = format!("{:.2}", elapsed.as_secs_f64() * 1e3),
            "finished processing rpc"
        )
    });
    let id = MetadataValue::try_from(request_id).ok();
    let tag = |metadata: &mut MetadataMap| {
        if let Some(id) = id.clone() {
            metadata.insert(REQUEST_ID_KEY, id);
        }
    };
    result
        .map(|body| {
            let mut response = Response::new(body);
            tag(response.metadata_mut());
            response
        })
        .map_err(|error| {
            let mut status = Status::from(error);
            tag(status.metadata_mut());
            status
        })
}

/// The canonical name of a status code, as gRPC's own metrics label it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        let parse = |v: &'static str| {
            let mut metadata = MetadataMap::new();
            metadata.insert("grpc-timeout", MetadataValue::from_static(v));
            deadline(&metadata)
        };
        assert_eq!(parse("500m").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(parse("2S").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse("99999999n").unwrap(),
            Some(Duration::from_nanos(99_999_999))
        );
        assert!(parse("5").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("123456789S").is_err());
        assert_eq!(deadline(&MetadataMap::new()).unwrap(), None);
    }
}
