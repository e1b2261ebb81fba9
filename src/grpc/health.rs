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

/// Most `Watch` streams open at once; more are refused with RESOURCE_EXHAUSTED. Each holds a
/// stream, and so its connection, open: probes use `Check`, watchers are few.
const MAX_WATCHES: usize = 16;

/// Longest one `Watch` stream lasts; it then ends with OK, and the client watches again.
/// Bounds how long a watcher holds its connection's slot.
const MAX_WATCH: Duration = Duration::from_secs(300);

pub(super) struct Health {
    state: Arc<AppState>,
    watches: Arc<tokio::sync::Semaphore>,
}

impl Health {
    pub(super) fn new(state: Arc<AppState>) -> Self {
        Self {
            state,
            watches: Arc::new(tokio::sync::Semaphore::new(MAX_WATCHES)),
        }
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

    /// The current status at once, then each change, until the client goes away, the drain
    /// starts (after a last NOT_SERVING for the readiness service) or [`MAX_WATCH`] passes.
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let first = status(&self.state, &service)?;
        let permit = self.watches.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{MAX_WATCHES} health watches are open; use Check, or watch later"
            ))
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let state = self.state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut last = first;
            if tx.send(Ok(response(first))).await.is_err() {
                return;
            }
            let ends = tokio::time::Instant::now() + MAX_WATCH;
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep_until(ends) => return,
                    () = tokio::time::sleep(WATCH_INTERVAL) => {}
                }
                let Ok(now) = status(&state, &service) else {
                    return;
                };
                if state.is_draining() {
                    if now != last {
                        let _ = tx.try_send(Ok(response(now)));
                    }
                    return;
                }
                if now != last {
                    last = now;
                    // A client that stops reading does not keep the stream past its end.
                    let sent = tokio::time::timeout_at(ends, tx.send(Ok(response(now)))).await;
                    if !matches!(sent, Ok(Ok(()))) {
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
