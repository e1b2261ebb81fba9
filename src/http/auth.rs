//! Optional bearer API keys for the inference routes (`/predict`, `POST /`,
//! `/zero-shot-classification`, `/v2/.../infer`), and the guard of the repository's admin
//! routes (`/v2/repository/...`, which change what is served). Health, probes, metrics and the
//! model description stay open: orchestrators and scrapers carry no key.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Refuses requests without a valid `Authorization: Bearer <key>` when keys are configured.
pub(crate) async fn require_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match state.api_keys.check(authorization(&request)) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// The request's `Authorization` header, when it is text.
pub(super) fn authorization(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The repository's admin routes, with `--model-repository` (without one nothing can change:
/// load and unload answer 400 and the index only reads): closed unless a key guards them or
/// `--allow-unauthenticated-admin` opens them, and JSON only, so that no simple cross-site
/// request (an HTML form, a `text/plain` fetch, which browsers send without asking) reaches
/// them.
pub(crate) async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = authorization(&request);
    if state.config.model_repository.is_none() {
        // Only the index answers there, reading what is served: behind the API keys as the
        // inference routes are.
        if let Err(error) = state.api_keys.check(authorization) {
            return error.into_response();
        }
    } else {
        if let Err(error) = state.admin.check(authorization) {
            return error.into_response();
        }
        if !super::extract::is_json(request.headers()) {
            return ApiError::UnsupportedMediaType(
                "the repository routes take `Content-Type: application/json` (the body may be empty)"
                    .into(),
            )
            .into_response();
        }
    }
    next.run(request).await
}
