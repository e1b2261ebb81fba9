//! `GET /openapi.json`: the OpenAPI 3 description of every route and schema.

use super::{
    observe, playground, predict, probes, rerank, rerank_v1, token_classification, v2, zero_shot,
};
use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "sentiment-server", description = "Text and text-pair classification over HTTP (TEI-compatible /predict, Open Inference Protocol /v2), zero-shot classification with NLI models, reranking with cross-encoders (TEI's /rerank, Cohere's and Jina's /v1/rerank) and token classification (NER)"),
    paths(
        predict::predict,
        predict::predict_model,
        predict::inference_api,
        zero_shot::zero_shot,
        rerank::rerank,
        rerank_v1::rerank_v1,
        token_classification::token_classification,
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
        v2::repository::load_model,
        v2::repository::unload_model,
        v2::repository::statistics,
        v2::repository::model_statistics,
        v2::repository::model_version_statistics,
        v2::infer::infer_version,
    ),
    tags((name = "inference"), (name = "probes"),
        (name = "v2", description = "Open Inference Protocol (KServe v2 REST)"))
)]
pub(crate) struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
