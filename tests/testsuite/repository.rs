//! `--model-repository`: a real server over a temporary repository of the shared models
//! (their files linked, not copied), flat and versioned, with an invalid name and a broken
//! version. Each model must answer by every route with its own reference outputs.

use crate::common;

use common::TestServer;
use sentiment_server::config::Config;
use sentiment_server::config::ReadyWhen;
use sentiment_server::config::VersionPolicy;
use sentiment_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use sentiment_server::grpc::proto::model_infer_request::InferInputTensor;
use sentiment_server::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ModelReadyRequest,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Links every file of the shared model `from` into `to` (created), except `truncate`, which
/// is written as its first 4 KiB: a version that cannot load.
fn link_model(from: &Path, to: &Path, truncate: Option<&str>) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if truncate.is_some_and(|t| name == t) {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(to.join(name), &bytes[..4096]).unwrap();
        } else {
            std::os::unix::fs::symlink(&path, to.join(name)).unwrap();
        }
    }
}

/// `sst2` (flat, the real model), `multi` (flat), `three` (versions 1: BERT, 2: RoBERTa, 3: a
/// truncated BERT), and entries that are not models: `bad..name` and a hidden directory.
fn repository() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    link_model(&common::minilm(), &r.join("sst2"), None);
    link_model(
        &common::fixture("bert-tiny-multilabel"),
        &r.join("multi"),
        None,
    );
    let bert = common::fixture("bert-tiny-3class");
    link_model(&bert, &r.join("three/1"), None);
    link_model(
        &common::fixture("roberta-tiny-3class"),
        &r.join("three/2"),
        None,
    );
    link_model(&bert, &r.join("three/3"), Some("model.safetensors"));
    link_model(&bert, &r.join("bad..name"), None);
    link_model(&bert, &r.join(".three.partial-1"), None);
    repo
}

fn repository_config(root: &Path) -> Config {
    let mut config = common::config_for(PathBuf::new());
    config.model_dir = None;
    config.model_repository = Some(root.to_path_buf());
    // These tests drive the admin routes without a key; their guard is tested in hostile.rs.
    config.allow_unauthenticated_admin = true;
    config
}

/// The reference's probability of each label for `model`'s first reference text.
fn reference(model: &Path) -> (String, HashMap<String, f32>) {
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let first = common::references(model).remove(0);
    let scores = first
        .scores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let label = config["id2label"][i.to_string()]
                .as_str()
                .unwrap()
                .to_owned();
            (label, *s)
        })
        .collect();
    (first.text, scores)
}

/// `[{label, score}, ...]` as a map.
fn by_label(answer: &Value) -> HashMap<String, f32> {
    answer
        .as_array()
        .unwrap_or_else(|| panic!("not a label list: {answer}"))
        .iter()
        .map(|p| {
            let label = p["label"].as_str().unwrap().to_owned();
            (label, p["score"].as_f64().unwrap() as f32)
        })
        .collect()
}

fn assert_close(got: &HashMap<String, f32>, want: &HashMap<String, f32>, what: &str) {
    assert_eq!(
        got.keys().collect::<std::collections::BTreeSet<_>>(),
        want.keys().collect(),
        "{what}: labels"
    );
    for (label, score) in want {
        assert!(
            (got[label] - score).abs() < 1e-3,
            "{what}: {label} {} vs reference {score}",
            got[label]
        );
    }
}

/// The v2 `scores` output of `/v2/models/{path}/infer` for one text, by label, and the
/// answer's model name and version.
async fn v2_scores(
    server: &TestServer,
    path: &str,
    text: &str,
    labels: &[&str],
) -> (u16, Value, HashMap<String, f32>) {
    let body =
        json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]});
    let (status, answer) = server
        .post(&format!("/v2/models/{path}/infer"), &body)
        .await;
    if status != 200 {
        return (status, answer, HashMap::new());
    }
    let scores = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "scores")
        .expect("scores output")["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(labels)
        .map(|(s, l)| (l.to_string(), s.as_f64().unwrap() as f32))
        .collect();
    (status, answer, scores)
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let r = server.client.get(server.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// `/info` once no version is loading any more: `/ready` waits for the default model only.
async fn settled(server: &TestServer) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let info = server.get_json("/info").await;
        if !info["models"].to_string().contains("LOADING") {
            return info;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still loading: {info}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_model_and_version_answers_by_each_route_with_its_own_outputs() {
    let repo = repository();
    let mut config = repository_config(repo.path());
    config.version_policy = VersionPolicy::All;
    config.default_model = Some("sst2".into());
    config.grpc_port = Some(0);
    let server = TestServer::start(config).await;

    // /info: every model with its versions; the invalid and hidden entries are not models.
    let info = settled(&server).await;
    assert_eq!(info["model_id"], "sst2", "{info}");
    let models = info["models"].as_array().expect("models");
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["multi", "sst2", "three"], "{info}");
    assert_eq!(models[1]["default"], true);
    let three = &models[2]["versions"];
    let states: Vec<(u64, &str)> = three
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [(1, "READY"), (2, "READY"), (3, "FAILED")],
        "{info}"
    );
    assert!(
        three[2]["reason"]
            .as_str()
            .unwrap()
            .contains("model.safetensors"),
        "{info}"
    );
    for version in &three.as_array().unwrap()[..2] {
        let model = &version["model"];
        assert_eq!(model["labels"], json!(["negative", "neutral", "positive"]));
        assert_eq!(model["weights_sha256"].as_str().unwrap().len(), 64);
        assert!(model["weights_bytes"].as_u64().unwrap() > 0);
        assert!(!model["compute"].as_str().unwrap().is_empty());
        // No training.json: nothing said about training.
        assert!(model.get("training").is_none(), "{info}");
    }
    assert_ne!(
        three[0]["model"]["weights_sha256"],
        three[1]["model"]["weights_sha256"]
    );

    // /predict serves the default model; /models/<name>/predict each model.
    let (text, want) = reference(&common::minilm());
    let got = by_label(&server.predict_json(&json!({ "inputs": text })).await);
    assert_close(&got, &want, "/predict (sst2)");
    let (status, answer) = server
        .post("/models/sst2/predict", &json!({ "inputs": text }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_close(&by_label(&answer), &want, "/models/sst2/predict");
    let (text, want) = reference(&common::fixture("bert-tiny-multilabel"));
    let (status, answer) = server
        .post("/models/multi/predict", &json!({ "inputs": text }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_close(&by_label(&answer), &want, "/models/multi/predict");
    // Without a version: the highest ready one (2, RoBERTa; 3 failed).
    let (text, want) = reference(&common::fixture("roberta-tiny-3class"));
    let (status, answer) = server
        .post("/models/three/predict", &json!({ "inputs": text }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_close(&by_label(&answer), &want, "/models/three/predict");

    // The Open Inference Protocol, by version.
    let labels = ["negative", "neutral", "positive"];
    for (path, fixture, version) in [
        ("three/versions/1", "bert-tiny-3class", "1"),
        ("three/versions/2", "roberta-tiny-3class", "2"),
        ("three", "roberta-tiny-3class", "2"),
    ] {
        let (text, want) = reference(&common::fixture(fixture));
        let (status, answer, scores) = v2_scores(&server, path, &text, &labels).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(answer["model_name"], "three");
        assert_eq!(answer["model_version"], version, "{path}");
        assert_close(&scores, &want, path);
    }
    let (status, answer, _) = v2_scores(&server, "three/versions/3", "hello", &labels).await;
    assert_eq!(
        (status, &answer["error_type"]),
        (503, &json!("unavailable")),
        "{answer}"
    );
    assert!(answer["error"].as_str().unwrap().contains("failed to load"));
    assert_eq!(
        get(&server, "/v2/models/three/versions/1/ready").await.0,
        200
    );
    assert_eq!(
        get(&server, "/v2/models/three/versions/3/ready").await.0,
        503
    );
    assert_eq!(get(&server, "/v2/models/multi/ready").await.0, 200);
    let (_, metadata) = get(&server, "/v2/models/three").await;
    assert_eq!(metadata["versions"], json!(["1", "2"]), "{metadata}");
    let (status, config) = get(&server, "/v2/models/three/versions/1/config").await;
    assert_eq!((status, &config["name"]), (200, &json!("three")));

    // Unknown models and versions, and names that are not served, are 404 with our shape.
    for path in [
        "/v2/models/nope/ready",
        "/v2/models/three/versions/4/ready",
        "/v2/models/three/versions/01/ready",
        "/v2/models/bad..name/ready",
        "/v2/models/.three.partial-1/ready",
    ] {
        let (status, answer) = get(&server, path).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error_type"], "model_not_found", "{path}");
    }
    let (status, answer) = server
        .post("/models/nope/predict", &json!({ "inputs": "hi" }))
        .await;
    assert_eq!(
        (status, &answer["error_type"]),
        (404, &json!("model_not_found"))
    );

    // The repository index: every version with its state.
    let (status, index) = server.post("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200);
    let entries: Vec<(String, String, String)> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("name"), s("version"), s("state"))
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("multi", "1", "READY"),
        ("sst2", "1", "READY"),
        ("three", "1", "READY"),
        ("three", "2", "READY"),
        ("three", "3", "UNAVAILABLE"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(entries, want);

    // gRPC addresses models and versions the same way.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut grpc = GrpcInferenceServiceClient::new(channel);
    let (text, want) = reference(&common::fixture("bert-tiny-3class"));
    let request = ModelInferRequest {
        model_name: "three".into(),
        model_version: "1".into(),
        inputs: vec![InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![text.into_bytes()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = grpc.model_infer(request).await.unwrap().into_inner();
    assert_eq!(response.model_version, "1");
    let i = response
        .outputs
        .iter()
        .position(|o| o.name == "scores")
        .unwrap();
    let scores: HashMap<String, f32> = response.raw_output_contents[i]
        .chunks_exact(4)
        .zip(labels)
        .map(|(b, l)| (l.to_string(), f32::from_le_bytes(b.try_into().unwrap())))
        .collect();
    assert_close(&scores, &want, "gRPC three/1");
    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        grpc.model_ready(ready("multi", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !grpc
            .model_ready(ready("three", "3"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let missing = grpc.model_ready(ready("nope", "")).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let metadata = grpc
        .model_metadata(ModelMetadataRequest {
            name: "three".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.versions, ["1", "2"]);

    let spec = server.get_json("/openapi.json").await;
    assert!(spec["paths"]["/models/{name}/predict"]["post"].is_object());

    // Per-model series carry the model and version.
    let metrics = server.get_text("/metrics").await;
    for series in [
        "sentiment_batch_size_count{model=\"three\",version=\"1\"}",
        "sentiment_batch_size_count{model=\"three\",version=\"2\"}",
        "sentiment_batch_size_count{model=\"sst2\",version=\"1\"}",
        "sentiment_model_load_duration_seconds{model=\"multi\",version=\"1\"}",
        "sentiment_model_load_failures_total{model=\"three\",version=\"3\"} 1",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_latest_policy_serves_only_the_highest_version_and_the_only_model_is_the_default() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    link_model(
        &common::fixture("bert-tiny-3class"),
        &r.join("three/1"),
        None,
    );
    link_model(
        &common::fixture("roberta-tiny-3class"),
        &r.join("three/2"),
        None,
    );
    // What the trainer (training/) writes beside a version it made: its MLflow run, in /info.
    let run_id = "0f3c5e2a9b8d4c1e8f7a6b5c4d3e2f1a";
    std::fs::write(
        r.join("three/2/training.json"),
        json!({"format": 1, "version": 2, "mlflow_run_id": run_id, "mlflow_experiment_id": "3",
               "created_at": "2026-12-07T08:30:00+00:00", "validation_accuracy": 0.5})
        .to_string(),
    )
    .unwrap();
    let server = TestServer::start(repository_config(r)).await;

    let (text, want) = reference(&common::fixture("roberta-tiny-3class"));
    let got = by_label(&server.predict_json(&json!({ "inputs": text })).await);
    assert_close(&got, &want, "/predict (three, version 2)");
    assert_eq!(
        get(&server, "/v2/models/three/versions/2/ready").await.0,
        200
    );
    let (status, answer) = get(&server, "/v2/models/three/versions/1/ready").await;
    assert_eq!(
        (status, &answer["error_type"]),
        (404, &json!("model_not_found"))
    );
    let info = server.get_json("/info").await;
    assert_eq!(info["model_id"], "three");
    assert_eq!(info["model_version"], "2");
    assert_eq!(info["models"][0]["versions"].as_array().unwrap().len(), 1);
    let training = json!({"mlflow_run_id": run_id, "mlflow_experiment_id": "3",
                          "created_at": "2026-12-07T08:30:00+00:00"});
    assert_eq!(
        info["models"][0]["versions"][0]["model"]["training"], training,
        "{info}"
    );
    assert_eq!(info["training"], training, "{info}");
}

/// Readiness (issue 30): by default `/ready` waits for every version selected at start-up, so
/// that a replica joins its load balancer ready for every model; a version that fails does not
/// hold it (it is reported). `--ready-when default` is the opt-in for the default model alone.
#[tokio::test(flavor = "multi_thread")]
async fn ready_waits_for_every_version_selected_at_start_up() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    // The default model loads in milliseconds; `slow` (the real model: its weights hashed and
    // a first pass run) after it, for a second or so.
    link_model(&common::fixture("bert-tiny-3class"), &r.join("good"), None);
    link_model(&common::minilm(), &r.join("slow"), None);
    link_model(
        &common::fixture("bert-tiny-3class"),
        &r.join("broken"),
        Some("model.safetensors"),
    );
    let mut config = repository_config(r);
    config.default_model = Some("good".into());
    assert_eq!(config.ready_when, ReadyWhen::All, "the default");
    let server = TestServer::start_unready(config).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, answer) = get(&server, "/ready").await;
        if status == 200 {
            // Ready means every model answers: the slow one is loaded, the broken one settled.
            let (slow, _) = get(&server, "/v2/models/slow/ready").await;
            assert_eq!(slow, 200, "/ready said 200 while `slow` was not ready");
            let info = server.get_json("/info").await;
            assert_eq!(info["models"][0]["name"], "broken", "{info}");
            assert_eq!(
                info["models"][0]["versions"][0]["state"], "FAILED",
                "{info}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, answer) = server
        .post("/models/slow/predict", &json!({ "inputs": "fine" }))
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// The start-up error of a server on `config`.
async fn startup_error(config: Config) -> String {
    let mut server = TestServer::start_unready(config).await;
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        server.handle.take().unwrap(),
    )
    .await
    .expect("start-up ends")
    .expect("server task");
    outcome.expect_err("start-up must fail").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn repositories_that_cannot_serve_stop_start_up_with_a_clear_error() {
    let repo = repository();
    // --model-dir and --model-repository together.
    let mut both = repository_config(repo.path());
    both.model_dir = Some(common::minilm());
    let error = startup_error(both).await;
    assert!(
        error.contains("--model-repository") && error.contains("--model-dir"),
        "{error}"
    );
    // Several models and no default.
    let error = startup_error(repository_config(repo.path())).await;
    assert!(
        error.contains("--default-model") && error.contains("three"),
        "{error}"
    );
    // A default that is not in the repository (an invalid name is not either).
    let mut unknown = repository_config(repo.path());
    unknown.default_model = Some("bad..name".into());
    let error = startup_error(unknown).await;
    assert!(
        error.contains("`bad..name` is not in the repository"),
        "{error}"
    );
    // Nothing that looks like a model.
    let empty = tempfile::tempdir().unwrap();
    link_model(
        &common::fixture("bert-tiny-3class"),
        &empty.path().join("a b"),
        None,
    );
    let error = startup_error(repository_config(empty.path())).await;
    assert!(error.contains("no models in"), "{error}");
    // The default model cannot load: nothing would serve /predict.
    let broken = tempfile::tempdir().unwrap();
    let r = broken.path();
    link_model(&common::fixture("bert-tiny-3class"), &r.join("fine"), None);
    link_model(
        &common::fixture("bert-tiny-3class"),
        &r.join("broken/1"),
        Some("model.safetensors"),
    );
    let mut config = repository_config(r);
    config.default_model = Some("broken".into());
    let error = startup_error(config).await;
    assert!(error.contains("model.safetensors"), "{error}");
}

/// Two models on one machine: a burst that fills one model's queue neither delays the other
/// model behind it nor takes its queue places. Each model has its own queue, limits and worker;
/// the workers share the cores, so the quiet model answers while the busy one still drains.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_on_one_model_neither_starves_nor_fills_another() {
    // Compares two models' latencies on the process's one rayon pool, which the other tests'
    // servers in this binary would share: alone, in a process of its own.
    if !common::alone(concat!(
        module_path!(),
        "::a_burst_on_one_model_neither_starves_nor_fills_another"
    )) {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    link_model(&common::minilm(), &r.join("busy"), None);
    link_model(&common::minilm(), &r.join("quiet"), None);
    let mut config = repository_config(r);
    config.default_model = Some("quiet".into());
    config.ready_when = ReadyWhen::All;
    config.max_queue_size = 96;
    config.max_queue_wait = std::time::Duration::ZERO;
    let server = std::sync::Arc::new(TestServer::start(config).await);
    settled(&server).await;
    let texts: Vec<String> = common::sst2_dev()
        .into_iter()
        .take(16)
        .map(|(_, t)| t)
        .collect();
    let (status, _) = server
        .post("/models/quiet/predict", &json!({ "inputs": texts[0] }))
        .await;
    assert_eq!(status, 200);

    // 16 requests of 16 sentences at once: more than busy's queue of 96 holds.
    let started = std::time::Instant::now();
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let (server, texts) = (server.clone(), texts.clone());
            tokio::spawn(async move {
                let (status, _) = server
                    .post("/models/busy/predict", &json!({ "inputs": texts }))
                    .await;
                (status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let asked = started.elapsed();
    let (status, answer) = server
        .post("/models/quiet/predict", &json!({ "inputs": texts[1] }))
        .await;
    let quiet = started.elapsed() - asked;
    assert_eq!(
        status, 200,
        "quiet model refused during the burst: {answer}"
    );

    let mut accepted = 0;
    let mut refused = 0;
    let mut drained = std::time::Duration::ZERO;
    for task in burst {
        let (status, at) = task.await.unwrap();
        match status {
            200 => {
                accepted += 1;
                drained = drained.max(at);
            }
            429 => refused += 1,
            other => panic!("busy answered {other}"),
        }
    }
    assert!(
        refused > 0 && accepted > 0,
        "{accepted} accepted, {refused} refused"
    );
    // Behind busy's queue, quiet would have waited for all of it.
    let left = drained.saturating_sub(asked);
    assert!(
        quiet * 2 < left,
        "quiet answered in {quiet:?}, busy's accepted burst drained {left:?} after it was asked"
    );
}
