//! Every documented failure over a real socket: status code and JSON `{error, error_type}`.

use crate::common;

use axum::body::Body;
use axum::http::Request;
use common::{config_for, TestServer};
use sentiment_server::{build_app, AppState};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

/// Sends a raw body and checks the status and the JSON error shape.
async fn expect_error(
    server: &TestServer,
    content_type: &str,
    body: Vec<u8>,
    status: u16,
    kind: &str,
) -> Value {
    let r = server
        .client
        .post(server.url("/predict"))
        .header("content-type", content_type)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status().as_u16(),
        status,
        "body {:?}",
        String::from_utf8_lossy(&body[..body.len().min(80)])
    );
    let json: Value = r.json().await.expect("error body is JSON");
    assert_eq!(json["error_type"], kind, "{json}");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{json}"
    );
    json
}

async fn expect_json_error(server: &TestServer, body: Value, status: u16, kind: &str) -> Value {
    expect_error(
        server,
        "application/json",
        body.to_string().into_bytes(),
        status,
        kind,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400_and_schema_violations_422() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let json_ct = "application/json";
    expect_error(
        &server,
        json_ct,
        b"{\"inputs\": ".to_vec(),
        400,
        "malformed_json",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        b"not json".to_vec(),
        400,
        "malformed_json",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        b"{\"inputs\": \"\xff\xfe bad\"}".to_vec(),
        400,
        "malformed_json",
    )
    .await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    // 10,000 levels of nesting: a nested list where texts belong is a schema error, and an
    // unknown field is skipped without recursion (no stack overflow either way).
    let r = server
        .client
        .post(server.url("/predict"))
        .header("content-type", json_ct)
        .body(format!("{{\"x\": {deep}, \"inputs\": \"a\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    expect_error(
        &server,
        json_ct,
        format!("{{\"inputs\": {deep}}}").into_bytes(),
        422,
        "validation",
    )
    .await;

    expect_json_error(&server, json!({}), 422, "validation").await;
    expect_json_error(&server, json!({"inputs": null}), 422, "validation").await;
    expect_json_error(&server, json!({"inputs": 5}), 422, "validation").await;
    expect_json_error(&server, json!({"inputs": [["a", "b"]]}), 422, "validation").await;
    expect_json_error(
        &server,
        json!({"inputs": "x", "raw_scores": "yes"}),
        422,
        "validation",
    )
    .await;
    expect_json_error(
        &server,
        json!({"inputs": "x", "truncate": null}),
        422,
        "validation",
    )
    .await;
    expect_json_error(
        &server,
        json!({"inputs": "x", "top_k": 0}),
        422,
        "validation",
    )
    .await;
    expect_json_error(
        &server,
        json!({"inputs": "x", "top_k": -1}),
        422,
        "validation",
    )
    .await;
    expect_json_error(&server, json!([1, 2]), 422, "validation").await;
    expect_error(
        &server,
        json_ct,
        br#"{"inputs": "a", "inputs": "b"}"#.to_vec(),
        422,
        "validation",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_texts_lists_and_oversized_requests_are_refused() {
    let mut config = config_for(common::minilm());
    config.payload_limit = 10_000;
    let server = TestServer::start(config).await;
    let e = expect_json_error(&server, json!({"inputs": ""}), 422, "validation").await;
    assert!(e["error"].as_str().unwrap().contains("empty"), "{e}");
    expect_json_error(&server, json!({"inputs": " \n\t "}), 422, "validation").await;
    expect_json_error(&server, json!({"inputs": []}), 422, "validation").await;
    expect_json_error(
        &server,
        json!({"inputs": ["fine", "  "]}),
        422,
        "validation",
    )
    .await;
    let too_many: Vec<&str> = vec!["ok"; 33];
    let e = expect_json_error(&server, json!({"inputs": too_many}), 422, "validation").await;
    assert!(e["error"].as_str().unwrap().contains("32"), "{e}");
    let long = "word ".repeat(1000);
    let e = expect_json_error(
        &server,
        json!({"inputs": long, "truncate": false}),
        422,
        "validation",
    )
    .await;
    assert!(e["error"].as_str().unwrap().contains("512"), "{e}");
    // The same text is fine when truncation is allowed (the default).
    let r = server
        .client
        .post(server.url("/predict"))
        .json(&json!({"inputs": long}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let huge = "x".repeat(20_000);
    expect_json_error(&server, json!({"inputs": huge}), 413, "payload_too_large").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_content_type_method_and_route_are_json_errors() {
    let server = TestServer::start(config_for(common::minilm())).await;
    expect_error(
        &server,
        "text/plain",
        br#"{"inputs":"x"}"#.to_vec(),
        415,
        "unsupported_media_type",
    )
    .await;
    let r = server
        .client
        .get(server.url("/predict"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_type"],
        "method_not_allowed"
    );
    let r = server
        .client
        .delete(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = server.client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error_type"], "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_is_429_with_retry_after() {
    let mut config = config_for(common::minilm());
    config.max_queue_size = 2;
    let server = TestServer::start(config).await;
    let r = server
        .client
        .post(server.url("/predict"))
        .json(&json!({"inputs": ["one", "two", "three"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["error_type"], "overloaded");
    // Within capacity it works, so the queue was not left holding places.
    let r = server
        .client
        .post(server.url("/predict"))
        .json(&json!({"inputs": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_timeout_is_504_and_the_server_stays_healthy() {
    let mut config = config_for(common::minilm());
    config.request_timeout = std::time::Duration::from_millis(1);
    let server = TestServer::start(config).await;
    let texts: Vec<String> = (0..32)
        .map(|i| format!("{i} {}", "long text ".repeat(300)))
        .collect();
    let r = server
        .client
        .post(server.url("/predict"))
        .json(&json!({"inputs": texts}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.json::<Value>().await.unwrap()["error_type"], "timeout");
    let r = server
        .client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn before_the_model_is_loaded_probes_and_predict_are_503_but_live_is_200() {
    let config = config_for(common::minilm());
    let state = Arc::new(AppState::new(config, Default::default()).unwrap());
    let app = build_app(state);
    for (method, path, status) in [
        ("GET", "/health", 503),
        ("GET", "/ready", 503),
        ("GET", "/live", 200),
        ("GET", "/info", 503),
        ("POST", "/predict", 503),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"inputs":"x"}"#))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        if status == 503 {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let json: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["error_type"], "unavailable");
        }
    }
}
