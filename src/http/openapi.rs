//! `GET /openapi.json`: the OpenAPI 3 description of every route and schema.

use super::{observe, playground, predict, probes, v2};
use crate::error::ErrorBody;
use axum::Json;
use utoipa::OpenApi;

/// The error answers shared by every inference route (`/predict` and both v2 infer routes),
/// listed once for their OpenAPI descriptions; each route adds its own 400/404/422.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // described in the document, never built: ApiError makes the answers
pub enum InferenceErrors {
    #[response(
        status = 401,
        description = "API key required (--api-key) and missing or wrong"
    )]
    Unauthorized(ErrorBody),
    #[response(
        status = 408,
        description = "Body not received within --body-read-timeout"
    )]
    BodyTimeout(ErrorBody),
    #[response(status = 413, description = "Body over the payload limit")]
    PayloadTooLarge(ErrorBody),
    #[response(status = 415, description = "Content-Type is not application/json")]
    UnsupportedMediaType(ErrorBody),
    #[response(
        status = 429,
        description = "Queue full; retry after the Retry-After header"
    )]
    QueueFull(ErrorBody),
    #[response(status = 503, description = "Model loading or server shutting down")]
    Unavailable(ErrorBody),
    #[response(status = 504, description = "Request timed out")]
    Timeout(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(title = "sentiment-server", description = "Text classification over HTTP (TEI-compatible /predict, Open Inference Protocol /v2)"),
    paths(
        predict::predict,
        predict::inference_api,
        playground::page,
        probes::health,
        probes::ready,
        probes::live,
        probes::info,
        observe::metrics,
        openapi_json,
        v2::server_metadata,
        v2::server_live,
        v2::server_ready,
        v2::models,
        v2::model_metadata,
        v2::model_version_metadata,
        v2::model_ready,
        v2::model_version_ready,
        v2::infer::infer,
        v2::repository::model_config,
        v2::repository::model_version_config,
        v2::repository::repository_index,
        v2::repository::statistics,
        v2::repository::model_statistics,
        v2::repository::model_version_statistics,
        v2::infer::infer_version,
    ),
    tags((name = "inference"), (name = "probes"),
        (name = "v2", description = "Open Inference Protocol (KServe v2 REST)"))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
