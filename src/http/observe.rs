//! `/metrics` and the middleware that counts every request.

use crate::metrics::{Route, RouteStatus};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts requests by route and status and times them. Unmatched paths share one label so
/// that scanners cannot blow up the metric's cardinality.
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let metrics = &state.metrics;
    metrics.in_flight.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.in_flight.dec();
    metrics
        .request_duration
        .get_or_create(&Route {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RouteStatus {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
