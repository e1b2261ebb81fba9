//! `GET /openapi.json`: the OpenAPI 3 description of every route and schema.

use super::{observe, predict, probes};
use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "sentiment-server", description = "Text classification over HTTP (TEI-compatible /predict)"),
    paths(
        predict::predict,
        probes::health,
        probes::ready,
        probes::live,
        probes::info,
        observe::metrics,
        openapi_json,
    ),
    tags((name = "inference"), (name = "probes"))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
