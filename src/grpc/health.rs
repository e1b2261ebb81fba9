//! `grpc.health.v1.Health`, read from the server's state (nothing to keep in step): the
//! service `""` (or `live`) is SERVING while the process serves gRPC, loading and draining
//! included, like `/live`; `inference.GRPCInferenceService` (or `ready`) is SERVING only when
//! inference requests are accepted, like `/ready`. Kubernetes' gRPC probes name the service.

use super::health_proto::health_check_response::ServingStatus;
use super::health_proto::health_server;
use super::health_proto::{HealthCheckRequest, HealthCheckResponse};
use crate::state::AppState;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// How often `Watch` looks for a change of status.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

pub struct Health {
    state: Arc<AppState>,
}

impl Health {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

fn status(state: &AppState, service: &str) -> Result<ServingStatus, Status> {
    match service {
        "" | "live" => Ok(ServingStatus::Serving),
        super::SERVICE | "ready" => Ok(if state.check_ready().is_ok() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }),
        other => Err(Status::not_found(format!(
            "unknown service `{other}`; this server has `` (live), `ready` and `{}`",
            super::SERVICE
        ))),
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl health_server::Health for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let status = status(&self.state, &request.into_inner().service)?;
        Ok(Response::new(response(status)))
    }

    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    /// The current status at once, then each change, until the client goes away.
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let first = status(&self.state, &service)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(response(first))).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(WATCH_INTERVAL) => {}
                }
                let Ok(now) = status(&state, &service) else {
                    return;
                };
                if now != last {
                    last = now;
                    if tx.send(Ok(response(now))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
