//! The Open Inference Protocol (KServe v2 REST) against a real server on 127.0.0.1:0.

use crate::common;

use axum::body::Body;
use axum::http::Request;
use common::{config_for, Reference, TestServer};
use sentiment_server::{build_app, AppState};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const MODEL: &str = "minilm-sst2";

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let r = server.client.get(server.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.expect("json body"))
}

async fn infer(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let r = server
        .client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.expect("json body"))
}

/// Checks the status and that the body is both the protocol's `{"error"}` and ours.
fn assert_error(status: u16, body: &Value, want: u16, kind: &str) {
    assert_eq!(status, want, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(body["error_type"], kind, "{body}");
}

fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {body}"))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Non-empty reference texts (empty ones are refused, as by /predict).
fn references() -> Vec<Reference> {
    common::references(&common::minilm())
        .into_iter()
        .filter(|r| !r.text.trim().is_empty())
        .collect()
}

/// Every output agrees with the PyTorch references to 1e-4.
fn assert_matches(body: &Value, refs: &[&Reference]) {
    let n = refs.len();
    let labels = output(body, "label");
    assert_eq!(labels["datatype"], "BYTES");
    assert_eq!(labels["shape"], json!([n]));
    let score = output(body, "score");
    assert_eq!(score["datatype"], "FP32");
    assert_eq!(score["shape"], json!([n]));
    let scores = output(body, "scores");
    assert_eq!(scores["datatype"], "FP32");
    assert_eq!(scores["shape"], json!([n, 2]));
    let score = floats(&score["data"]);
    let scores = floats(&scores["data"]);
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(labels["data"][i], r.label.as_str(), "{:?}", r.text);
        let best = r.scores.iter().copied().fold(f32::MIN, f32::max);
        assert!((score[i] - best).abs() < 1e-4, "{:?}: {}", r.text, score[i]);
        for (got, want) in scores[i * 2..i * 2 + 2].iter().zip(&r.scores) {
            assert!((got - want).abs() < 1e-4, "{:?}: {scores:?}", r.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_and_model_metadata_health_and_readiness() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let (status, body) = get(&server, "/v2").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"name": "sentiment-server", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data", "classification"]})
    );
    let (status, body) = get(&server, "/v2/health/live").await;
    assert_eq!((status, &body), (200, &json!({"live": true})));
    let (status, body) = get(&server, "/v2/health/ready").await;
    assert_eq!((status, &body), (200, &json!({"ready": true})));
    let (status, body) = get(&server, "/v2/models").await;
    assert_eq!((status, &body), (200, &json!({"models": [MODEL]})));

    let want = json!({
        "name": MODEL,
        "versions": ["1"],
        "platform": "candle",
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
            {"name": "text_pair", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, 2]},
        ],
        "parameters": {"labels": ["NEGATIVE", "POSITIVE"]},
    });
    for path in [
        "/v2/models/minilm-sst2",
        "/v2/models/minilm-sst2/versions/1",
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!((status, &body), (200, &want), "{path}");
    }
    for path in [
        "/v2/models/minilm-sst2/ready",
        "/v2/models/minilm-sst2/versions/1/ready",
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, json!({"name": MODEL, "ready": true}));
    }
    for path in [
        "/v2/models/other",
        "/v2/models/other/ready",
        "/v2/models/minilm-sst2/versions/2",
        "/v2/models/minilm-sst2/versions/2/ready",
    ] {
        let (status, body) = get(&server, path).await;
        assert_error(status, &body, 404, "model_not_found");
    }
    // A name or version that is not UTF-8 is a bad request, answered in JSON like any other.
    for path in [
        "/v2/models/%FF",
        "/v2/models/%FF/ready",
        "/v2/models/minilm-sst2/versions/%FF",
    ] {
        let (status, body) = get(&server, path).await;
        assert_error(status, &body, 400, "bad_request");
    }

    let spec: Value = get(&server, "/openapi.json").await.1;
    for path in [
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lacks {path}");
    }
    for schema in [
        "InferRequest",
        "InferResponse",
        "ModelMetadata",
        "ServerMetadata",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "openapi lacks {schema}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn infer_matches_pytorch_in_every_accepted_form() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let refs = references();
    let (a, b) = (&refs[0], &refs[1]);
    assert_ne!(a.label, b.label, "one positive and one negative example");

    // The protocol's own example shape: a flat BYTES tensor of shape [2].
    let (status, body) = infer(
        &server,
        "/v2/models/minilm-sst2/infer",
        json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [a.text, b.text]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], MODEL);
    assert_eq!(body["model_version"], "1");
    assert!(body.get("id").is_none(), "no id when none was sent: {body}");
    let names: Vec<&str> = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["label", "score", "scores"]);
    assert_matches(&body, &[a, b]);

    // Nested row-major data of shape [2, 1], on the versioned route, with the id echoed.
    let (status, body) = infer(
        &server,
        "/v2/models/minilm-sst2/versions/1/infer",
        json!({"id": "req-7", "parameters": {"x": 1}, "inputs": [{"name": "text", "shape": [2, 1],
            "datatype": "BYTES", "data": [[a.text], [b.text]]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "req-7");
    assert_matches(&body, &[a, b]);

    // A subset of the outputs, in the order asked for.
    let batch: Vec<&Reference> = refs.iter().take(32).collect();
    let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
    let (status, body) = infer(
        &server,
        "/v2/models/minilm-sst2/infer",
        json!({"inputs": [{"name": "text", "shape": [texts.len()], "datatype": "BYTES", "data": texts}],
            "outputs": [{"name": "scores"}, {"name": "label", "parameters": {"binary_data": false}}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(
        (&outputs[0]["name"], &outputs[1]["name"]),
        (&json!("scores"), &json!("label"))
    );
    let scores = floats(&outputs[0]["data"]);
    assert_eq!(scores.len(), 2 * batch.len());
    for (i, r) in batch.iter().enumerate() {
        assert_eq!(outputs[1]["data"][i], r.label.as_str(), "{:?}", r.text);
        assert!(
            (scores[2 * i + 1] - r.scores[1]).abs() < 1e-4,
            "{:?}",
            r.text
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_infer_requests_are_json_errors_with_the_protocols_statuses() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let url = "/v2/models/minilm-sst2/infer";
    let tensor = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "text", "shape": shape, "datatype": datatype, "data": data}]});

    let ok = tensor(json!([1]), "BYTES", json!(["fine"]));
    let (status, body) = infer(&server, "/v2/models/other/infer", ok.clone()).await;
    assert_error(status, &body, 404, "model_not_found");
    let (status, body) = infer(&server, "/v2/models/minilm-sst2/versions/9/infer", ok).await;
    assert_error(status, &body, 404, "model_not_found");

    let too_many = vec!["ok"; 33];
    for (request, needle) in [
        (tensor(json!([1]), "FP32", json!([1.0])), "datatype"),
        (tensor(json!([3]), "BYTES", json!(["a", "b"])), "shape"),
        (
            tensor(json!([2, 2]), "BYTES", json!([["a"], ["b"]])),
            "shape",
        ),
        (tensor(json!([2]), "BYTES", json!([["a"], ["b"]])), "shape"),
        (tensor(json!([-1]), "BYTES", json!(["a"])), "shape"),
        (tensor(json!([2]), "BYTES", json!(["fine", ""])), "empty"),
        (tensor(json!([1]), "BYTES", json!(["  \n"])), "empty"),
        (tensor(json!([0]), "BYTES", json!([])), "empty"),
        (tensor(json!([2]), "BYTES", json!(["a", 5])), "string"),
        (tensor(json!([33]), "BYTES", json!(too_many)), "32"),
        (tensor(json!([1]), "BYTES", json!("a")), "list"),
        (
            json!({"inputs": [{"name": "sentence", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}),
            "text",
        ),
        (json!({"inputs": []}), "got 0 input tensors"),
        (
            json!({"inputs": [{"name": "text", "datatype": "BYTES", "data": ["a"]}]}),
            "shape",
        ),
        (json!({"text": "a"}), "inputs"),
        (
            json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
            "outputs": [{"name": "logits"}]}),
            "logits",
        ),
    ] {
        let (status, body) = infer(&server, url, request.clone()).await;
        assert_error(status, &body, 400, "bad_request");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{request} -> {body}"
        );
    }

    for raw in [&b"{\"inputs\": "[..], b"not json", b"{\"id\": \"\xff\"}"] {
        let r = server
            .client
            .post(server.url(url))
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_error(status, &r.json().await.unwrap(), 400, "malformed_json");
    }
    let r = server
        .client
        .post(server.url(url))
        .header("content-type", "text/plain")
        .body(tensor(json!([1]), "BYTES", json!(["a"])).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_error(
        status,
        &r.json().await.unwrap(),
        415,
        "unsupported_media_type",
    );

    // /predict keeps its own statuses.
    let (status, body) = infer(&server, "/predict", json!({"inputs": ""})).await;
    assert_error(status, &body, 422, "validation");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inference_over_the_request_timeout_is_504() {
    let mut config = config_for(common::minilm());
    config.request_timeout = std::time::Duration::from_millis(1);
    let server = TestServer::start(config).await;
    let texts: Vec<String> = (0..32)
        .map(|i| format!("{i} {}", "long text ".repeat(300)))
        .collect();
    let (status, body) = infer(
        &server,
        "/v2/models/minilm-sst2/infer",
        json!({"inputs": [{"name": "text", "shape": [32], "datatype": "BYTES", "data": texts}]}),
    )
    .await;
    assert_error(status, &body, 504, "timeout");
}

#[tokio::test]
async fn before_the_model_is_loaded_v2_readiness_and_inference_are_503() {
    let state = Arc::new(AppState::new(config_for(common::minilm()), Default::default()).unwrap());
    let app = build_app(state);
    for (method, path, status) in [
        ("GET", "/v2", 200),
        ("GET", "/v2/health/live", 200),
        ("GET", "/v2/health/ready", 503),
        ("GET", "/v2/models", 503),
        ("GET", "/v2/models/minilm-sst2", 503),
        ("GET", "/v2/models/minilm-sst2/ready", 503),
        ("POST", "/v2/models/minilm-sst2/infer", 503),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["x"]}]}"#,
            ))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        if status == 503 {
            assert_error(status, &json, 503, "unavailable");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_inferences_land_in_the_prediction_log_like_predict() {
    let pg = common::postgres::Postgres::start();
    let mut config = config_for(common::minilm());
    config.database_url = Some(pg.url());
    config.database_password_file = Some(pg.password_file());
    let server = TestServer::start(config).await;
    let r = server
        .client
        .post(server.url("/v2/models/minilm-sst2/infer"))
        .header("x-request-id", "v2-logged")
        .json(
            &json!({"id": "ignored-by-the-log", "inputs": [{"name": "text", "shape": [2],
            "datatype": "BYTES", "data": ["dull and lifeless", "a joy from start to finish"]}],
            "outputs": [{"name": "label"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows = pg
        .wait_rows(
            "SELECT request_id, input_index, label, score, scores FROM predictions \
             ORDER BY input_index",
            2,
        )
        .await;
    for (i, (row, label)) in rows.iter().zip(["NEGATIVE", "POSITIVE"]).enumerate() {
        assert_eq!(row.get::<_, String>(0), "v2-logged");
        assert_eq!(row.get::<_, i32>(1), i as i32);
        assert_eq!(row.get::<_, String>(2), label);
        let scores: Value = row.get(4);
        let score: f32 = row.get(3);
        assert!((scores[label].as_f64().unwrap() - score as f64).abs() < 1e-6);
    }
}

/// BYTES elements as the binary tensor data extension lays them out.
fn length_prefixed(texts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in texts {
        out.extend_from_slice(&(t.len() as u32).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out
}

/// Posts `header` + `binary` as Triton's clients do: no content type, the JSON's length in
/// `Inference-Header-Content-Length` (unless `length` overrides it).
async fn post_binary(
    server: &TestServer,
    header: &Value,
    binary: &[u8],
    length: Option<usize>,
) -> reqwest::Response {
    post_binary_to(
        server,
        "/v2/models/minilm-sst2/infer",
        header,
        binary,
        length,
    )
    .await
}

async fn post_binary_to(
    server: &TestServer,
    path: &str,
    header: &Value,
    binary: &[u8],
    length: Option<usize>,
) -> reqwest::Response {
    let json = header.to_string();
    let mut body = json.clone().into_bytes();
    body.extend_from_slice(binary);
    server
        .client
        .post(server.url(path))
        .header(
            "inference-header-content-length",
            length.unwrap_or(json.len()).to_string(),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The binary tensor data extension and the classification extension, in the forms
/// `tritonclient.http` sends (tests/e2e/clients.sh drives the client itself).
#[tokio::test(flavor = "multi_thread")]
async fn binary_tensors_json_without_content_type_and_classification_as_tritons_clients_send() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let refs = references();
    let (a, b) = (&refs[0], &refs[1]);
    let texts = [a.text.as_str(), b.text.as_str()];
    let data = length_prefixed(&texts);

    // Binary in, binary out (what the client asks when it names no outputs).
    let header = json!({
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                    "parameters": {"binary_data_size": data.len()}}],
        "parameters": {"binary_data_output": true},
    });
    let r = post_binary(&server, &header, &data, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let length: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&body[..length]).unwrap();
    let mut rest = &body[length..];
    let mut take = |name: &str| {
        let out = output(&head, name);
        assert!(out.get("data").is_none(), "{out}");
        let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        let (part, tail) = rest.split_at(size);
        rest = tail;
        part.to_vec()
    };
    let labels = take("label");
    let _score = take("score");
    let scores: Vec<f32> = take("scores")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(rest.is_empty(), "{} bytes left over", rest.len());
    assert_eq!(labels, length_prefixed(&[&a.label, &b.label]));
    for (r, got) in [a, b].iter().zip(scores.chunks_exact(2)) {
        for (g, want) in got.iter().zip(&r.scores) {
            assert!((g - want).abs() < 1e-4, "{got:?} vs {:?}", r.scores);
        }
    }

    // JSON with no content type, one output in binary, classification (top-1) in JSON.
    let header = json!({
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}],
        "outputs": [{"name": "label", "parameters": {"binary_data": false}},
                    {"name": "scores", "parameters": {"classification": 1}}],
    });
    let r = server
        .client
        .post(server.url("/v2/models/minilm-sst2/infer"))
        .body(header.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(output(&body, "label")["data"], json!([a.label, b.label]));
    let classes = output(&body, "scores");
    assert_eq!(classes["datatype"], "BYTES");
    assert_eq!(classes["shape"], json!([2, 1]));
    for (r, class) in [a, b].iter().zip(classes["data"].as_array().unwrap()) {
        let parts: Vec<&str> = class.as_str().unwrap().split(':').collect();
        assert_eq!(parts.len(), 3, "{class}");
        assert_eq!(parts[2], r.label);
        let score: f32 = parts[0].parse().unwrap();
        let index: usize = parts[1].parse().unwrap();
        assert!(
            (score - r.scores[index]).abs() < 1e-4,
            "{class} vs {:?}",
            r.scores
        );
    }

    // Broken framing is a 400, as a JSON error.
    let declaring = |size: usize| {
        json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                           "parameters": {"binary_data_size": size}}]})
    };
    let mut trailing = data.clone();
    trailing.push(0);
    let cut = &data[..data.len() - 1];
    let whole = declaring(data.len()).to_string().len() + data.len();
    let cases: [(&str, Value, &[u8], Option<usize>); 4] = [
        (
            "header longer than the body",
            declaring(data.len()),
            &data,
            Some(whole + 1),
        ),
        (
            "binary size past the body",
            declaring(data.len() + 1),
            &data,
            None,
        ),
        (
            "bytes no input declares",
            declaring(data.len()),
            &trailing,
            None,
        ),
        ("an element cut short", declaring(cut.len()), cut, None),
    ];
    for (what, header, binary, length) in cases {
        let r = post_binary(&server, &header, binary, length).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{what}: {body}");
        assert_error(status, &body, 400, "bad_request");
    }
    // Classification applies to the class scores only.
    let (status, body) = infer(
        &server,
        "/v2/models/minilm-sst2/infer",
        json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
               "outputs": [{"name": "label", "parameters": {"classification": 2}}]}),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
}

/// The routes Triton's clients call besides inference: configuration, repository index, and
/// statistics (a documented 400 that points to /metrics).
#[tokio::test(flavor = "multi_thread")]
async fn model_config_repository_index_and_statistics_answer_as_documented() {
    let server = TestServer::start(config_for(common::minilm())).await;
    for path in [
        "/v2/models/minilm-sst2/config",
        "/v2/models/minilm-sst2/versions/1/config",
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["name"], MODEL);
        assert_eq!(body["max_batch_size"], 0);
        assert_eq!(
            body["input"],
            json!([
                {"name": "text", "data_type": "TYPE_STRING", "dims": [-1]},
                {"name": "text_pair", "data_type": "TYPE_STRING", "dims": [-1], "optional": true},
            ])
        );
        assert_eq!(
            body["output"][2],
            json!({"name": "scores", "data_type": "TYPE_FP32", "dims": [-1, 2]})
        );
    }
    let (status, body) = get(&server, "/v2/models/other/config").await;
    assert_error(status, &body, 404, "model_not_found");

    let r = server
        .client
        .post(server.url("/v2/repository/index"))
        .body("{\"ready\": true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let index: Value = r.json().await.unwrap();
    assert_eq!(
        index,
        json!([{"name": MODEL, "version": "1", "state": "READY"}])
    );

    for path in [
        "/v2/models/stats",
        "/v2/models/minilm-sst2/stats",
        "/v2/models/minilm-sst2/versions/1/stats",
    ] {
        let (status, body) = get(&server, path).await;
        assert_error(status, &body, 400, "bad_request");
        assert!(
            body["error"].as_str().unwrap().contains("/metrics"),
            "{body}"
        );
    }
    let (status, body) = get(&server, "/v2/models/other/stats").await;
    assert_error(status, &body, 404, "model_not_found");
}

/// Text pairs through the optional `text_pair` input, in JSON and binary form, against
/// PyTorch; a `text_pair` that does not match `text` is a 400.
#[tokio::test(flavor = "multi_thread")]
async fn text_pairs_travel_as_the_optional_text_pair_input() {
    let server = TestServer::start(config_for(common::nli())).await;
    let url = "/v2/models/bert-tiny-nli/infer";
    let refs = common::pair_references();
    let refs = &refs[..8];
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let seconds: Vec<&str> = refs.iter().map(|r| r.text_pair.as_str()).collect();
    let n = refs.len();
    let check = |labels: Vec<String>, scores: Vec<f32>| {
        assert_eq!(scores.len(), n * 3);
        for ((r, label), got) in refs.iter().zip(&labels).zip(scores.chunks_exact(3)) {
            assert_eq!(label, &r.label);
            for (g, want) in got.iter().zip(&r.scores) {
                assert!(
                    (g - want).abs() < 1e-4,
                    "{:?}: {got:?} vs {:?}",
                    r.text,
                    r.scores
                );
            }
        }
    };
    // `text_pair` first: inputs are found by name.
    let body = json!({"inputs": [
        {"name": "text_pair", "shape": [n], "datatype": "BYTES", "data": seconds},
        {"name": "text", "shape": [n, 1], "datatype": "BYTES", "data": texts.iter().map(|t| [t]).collect::<Vec<_>>()},
    ]});
    let (status, answer) = infer(&server, url, body).await;
    assert_eq!(status, 200, "{answer}");
    let labels = output(&answer, "label")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    check(labels, floats(&output(&answer, "scores")["data"]));

    // Binary in, as tritonclient.http sends two BYTES inputs.
    let (a, b) = (length_prefixed(&texts), length_prefixed(&seconds));
    let header = json!({"inputs": [
        {"name": "text", "shape": [n], "datatype": "BYTES", "parameters": {"binary_data_size": a.len()}},
        {"name": "text_pair", "shape": [n], "datatype": "BYTES", "parameters": {"binary_data_size": b.len()}},
    ]});
    let r = post_binary_to(&server, url, &header, &[a, b].concat(), None).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let labels = output(&answer, "label")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    check(labels, floats(&output(&answer, "scores")["data"]));

    let tensor = |name: &str, data: Value| {
        let n = data.as_array().map_or(0, Vec::len);
        json!({"name": name, "shape": [n], "datatype": "BYTES", "data": data})
    };
    for (inputs, needle) in [
        (
            json!([
                tensor("text", json!(["a", "b"])),
                tensor("text_pair", json!(["c"]))
            ]),
            "one second text per text",
        ),
        (
            json!([tensor("text_pair", json!(["c"]))]),
            "input `text` is missing",
        ),
        (
            json!([tensor("text", json!(["a"])), tensor("text", json!(["b"]))]),
            "given twice",
        ),
        (
            json!([
                tensor("text", json!(["a"])),
                tensor("text_pair", json!(["b"])),
                tensor("x", json!(["c"]))
            ]),
            "got 3",
        ),
        (
            json!([
                tensor("text", json!(["a", "b"])),
                tensor("text_pair", json!(["c", " "]))
            ]),
            "text_pair of text[1]",
        ),
        (
            json!([
                tensor("text", json!(["a"])),
                tensor("text_pair", json!([1]))
            ]),
            "input `text_pair` is BYTES",
        ),
    ] {
        let (status, answer) = infer(&server, url, json!({ "inputs": inputs })).await;
        assert_error(status, &answer, 400, "bad_request");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{inputs} -> {answer}"
        );
    }
}
