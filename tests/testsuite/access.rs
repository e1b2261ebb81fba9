//! Access and integration around the API: bearer API keys, CORS, the playground page, and
//! OpenTelemetry trace export.

use crate::common;

use axum::body::Bytes;
use axum::routing::post;
use common::{config_for, TestServer};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-0123456789abcdef";
const ROTATED: &str = "rotated-key-fedcba9876543210";

#[tokio::test]
async fn an_api_key_guards_inference_but_not_probes_metrics_or_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    std::fs::write(&keys, format!("# current\n{KEY}\n\n{ROTATED}\n")).unwrap();
    let mut config = config_for(common::fixture("bert-tiny-3class"));
    config.api_key_file = Some(keys);
    let server = TestServer::start(config).await;
    let infer =
        json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["fine"]}]});
    let routes = [
        ("/predict", json!({"inputs": "fine"})),
        ("/", json!({"inputs": "fine"})),
        ("/v2/models/bert-tiny-3class/infer", infer.clone()),
        ("/v2/models/bert-tiny-3class/versions/1/infer", infer),
    ];
    for (path, body) in &routes {
        let post = |auth: Option<String>| {
            let mut request = server.client.post(server.url(path)).json(body);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            request.send()
        };
        for (auth, reason) in [
            (None, "no key"),
            (Some(format!("Bearer {KEY}x")), "wrong key"),
            (Some(format!("Basic {KEY}")), "wrong scheme"),
            (Some("Bearer ".into()), "empty key"),
        ] {
            let response = post(auth).await.unwrap();
            assert_eq!(response.status(), 401, "{path}: {reason}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error_type"], "unauthorized", "{path}: {error}");
            assert!(
                !error.to_string().contains(KEY),
                "the key must not be echoed"
            );
        }
        for key in [KEY, ROTATED] {
            let response = post(Some(format!("Bearer {key}"))).await.unwrap();
            assert_eq!(response.status(), 200, "{path} with a valid key");
        }
    }
    // Unauthenticated requests are refused before their bodies are read.
    let response = server
        .client
        .post(server.url("/predict"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    for open in [
        "/health",
        "/ready",
        "/live",
        "/metrics",
        "/info",
        "/",
        "/v2/health/ready",
        "/openapi.json",
    ] {
        let response = server.client.get(server.url(open)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{open} must stay open");
    }
    let info = server.get_json("/info").await;
    assert_eq!(info["api_key_required"], true);
    assert!(!info.to_string().contains(KEY) && !info.to_string().contains(ROTATED));
}

#[tokio::test]
async fn short_or_missing_key_files_stop_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    for (file, expected) in [
        (short, "at least 16"),
        (tmp.path().join("absent"), "cannot read"),
    ] {
        let mut config = config_for(common::fixture("bert-tiny-3class"));
        config.api_key_file = Some(file);
        let listener = sentiment_server::server::bind(&config).await.unwrap();
        let error = sentiment_server::server::run(config, listener, std::future::pending())
            .await
            .expect_err("must refuse to start")
            .to_string();
        assert!(
            error.contains("--api-key") && error.contains(expected),
            "{error}"
        );
    }
}

#[tokio::test]
async fn cors_answers_preflights_for_allowed_origins_only() {
    let mut config = config_for(common::fixture("bert-tiny-3class"));
    config.cors_allow_origin = vec![
        "https://app.example.com".into(),
        "http://localhost:3000".into(),
    ];
    let server = TestServer::start(config).await;
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url("/predict"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(methods.contains("post"), "{methods}");
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"));

    let foreign = preflight("https://evil.example.net").await.unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let response = server
        .client
        .post(server.url("/predict"))
        .header("origin", "http://localhost:3000")
        .json(&json!({"inputs": "fine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn without_cors_configured_no_cors_headers_and_bad_origins_stop_start_up() {
    let server = TestServer::start(config_for(common::fixture("bert-tiny-3class"))).await;
    let response = server
        .client
        .post(server.url("/predict"))
        .header("origin", "https://app.example.com")
        .json(&json!({"inputs": "fine"}))
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    drop(server);

    let mut config = config_for(common::fixture("bert-tiny-3class"));
    config.cors_allow_origin = vec!["app.example.com/path".into()];
    let listener = sentiment_server::server::bind(&config).await.unwrap();
    let error = sentiment_server::server::run(config, listener, std::future::pending())
        .await
        .expect_err("must refuse to start")
        .to_string();
    assert!(
        error.contains("--cors-allow-origin") && error.contains("app.example.com/path"),
        "{error}"
    );
}

#[tokio::test]
async fn the_playground_page_is_self_contained_html() {
    let server = TestServer::start(config_for(common::fixture("bert-tiny-3class"))).await;
    let response = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("/predict") && page.contains("/info"));
    // No network beyond this server: no external scripts, styles, fonts or images.
    for external in ["http://", "https://", "//cdn", "src=\"//"] {
        assert!(!page.contains(external), "the page references {external}");
    }
}

/// A stand-in OpenTelemetry collector: keeps every OTLP/HTTP body it receives.
async fn start_collector() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                // An empty ExportTraceServiceResponse.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_export_sends_request_spans_that_join_the_callers_trace() {
    let _exclusive = common::exclusive().await;
    let (collector, received) = start_collector().await;
    let (child, base) = common::spawn_binary(
        &common::fixture("bert-tiny-3class"),
        &[
            "--otlp-endpoint",
            &collector,
            "--otel-service-name",
            "sentiment-otlp-test",
        ],
    );
    let client = reqwest::Client::new();
    common::wait_healthy(&client, &base).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client
        .post(format!("{base}/predict"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"inputs": "a traced request"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Spans are sent in batches, at the latest when the server stops.
    assert!(common::terminate(child).await.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let contains = |needle: &[u8]| {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|body| body.windows(needle.len()).any(|w| w == needle))
    };
    let trace_bytes = hex::decode(trace_id).unwrap();
    while !contains(&trace_bytes) {
        assert!(
            Instant::now() < deadline,
            "no span of the caller's trace reached the collector"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        contains(b"sentiment-otlp-test"),
        "spans must carry the service name"
    );
    assert!(
        contains(b"POST /predict"),
        "the request span is named by method and path"
    );
}
