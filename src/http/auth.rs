//! Optional bearer API keys for the inference routes (`/predict`, `POST /`,
//! `/zero-shot-classification`, `/v2/.../infer`) and the repository routes
//! (`/v2/repository/...`, which change what is served). Health, probes, metrics and the model
//! description stay open: orchestrators and scrapers carry no key.

pub use crate::auth::ApiKeys;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Refuses requests without a valid `Authorization: Bearer <key>` when keys are configured.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.api_keys.check(authorization) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}
