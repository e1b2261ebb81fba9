//! The HTTP API against a real server on 127.0.0.1:0: successful requests on every route.

use crate::common;

use common::{config_for, TestServer};
use serde_json::{json, Value};

async fn predict(server: &TestServer, body: Value) -> (u16, Value) {
    let r = server
        .client
        .post(server.url("/predict"))
        .json(&body)
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.json().await.expect("json body"))
}

fn pairs(list: &Value) -> Vec<(String, f32)> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|x| {
            (
                x["label"].as_str().unwrap().to_string(),
                x["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_one_text_returns_labels_sorted_and_matching_pytorch() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let refs = common::references(&common::minilm());
    for r in refs.iter().filter(|r| !r.text.trim().is_empty()).take(25) {
        let (status, body) = predict(&server, json!({ "inputs": r.text })).await;
        assert_eq!(status, 200, "{body}");
        let got = pairs(&body);
        assert_eq!(got.len(), 2);
        assert!(got[0].1 >= got[1].1, "sorted highest first: {got:?}");
        assert_eq!(got[0].0, r.label);
        for (label, score) in &got {
            let i = if label == "NEGATIVE" { 0 } else { 1 };
            assert!(
                (score - r.scores[i]).abs() < 1e-4,
                "{:?}: {got:?} vs {:?}",
                r.text,
                r.scores
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_batch_answers_each_text_in_order_with_raw_scores_and_top_k() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let refs: Vec<_> = common::references(&common::minilm())
        .into_iter()
        .filter(|r| !r.text.trim().is_empty())
        .take(32)
        .collect();
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();

    let (status, body) = predict(&server, json!({ "inputs": texts })).await;
    assert_eq!(status, 200, "{body}");
    let lists = body.as_array().unwrap();
    assert_eq!(lists.len(), refs.len());
    for (list, r) in lists.iter().zip(&refs) {
        assert_eq!(pairs(list)[0].0, r.label, "{:?}", r.text);
    }

    let (status, body) = predict(
        &server,
        json!({ "inputs": texts, "raw_scores": true, "top_k": 1 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (list, r) in body.as_array().unwrap().iter().zip(&refs) {
        let got = pairs(list);
        assert_eq!(got.len(), 1, "top_k=1");
        let best = r.logits.iter().copied().fold(f32::MIN, f32::max);
        assert!(
            (got[0].1 - best).abs() < 1e-4,
            "raw logit {got:?} vs {:?}",
            r.logits
        );
    }
}

/// `POST /` as the Hugging Face Inference API (and `huggingface_hub.InferenceClient`) speaks
/// it: one label list per text, also for one string, with `parameters`; `/predict` takes the
/// same `parameters`, over its top-level fields.
#[tokio::test(flavor = "multi_thread")]
async fn inference_api_route_and_parameters_answer_as_hugging_face_clients_expect() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let refs: Vec<_> = common::references(&common::minilm())
        .into_iter()
        .filter(|r| !r.text.trim().is_empty())
        .take(8)
        .collect();
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let post = |path: &'static str, body: Value| {
        let request = server.client.post(server.url(path)).json(&body);
        async move {
            let r = request.send().await.expect("send");
            (
                r.status().as_u16(),
                r.json::<Value>().await.expect("json body"),
            )
        }
    };

    // One string: a list holding one label list, the same as /predict's.
    let (status, body) = post("/", json!({ "inputs": texts[0] })).await;
    assert_eq!(status, 200, "{body}");
    let (_, plain) = predict(&server, json!({ "inputs": texts[0] })).await;
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(pairs(&body[0]), pairs(&plain));

    // A list, the best label only, logits.
    let parameters = json!({ "top_k": 1, "function_to_apply": "none" });
    let (status, body) = post("/", json!({ "inputs": texts, "parameters": parameters })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(refs.len()));
    for (list, r) in body.as_array().unwrap().iter().zip(&refs) {
        let got = pairs(list);
        let best = r.logits.iter().copied().fold(f32::MIN, f32::max);
        assert_eq!(got.len(), 1, "top_k=1: {got:?}");
        assert!((got[0].1 - best).abs() < 1e-4, "{got:?} vs {:?}", r.logits);
    }

    // /predict: a sigmoid per label on request, and parameters over the top-level fields.
    let body = json!({
        "inputs": texts,
        "top_k": 1,
        "raw_scores": true,
        "parameters": { "top_k": 2, "function_to_apply": "sigmoid" },
    });
    let (status, body) = predict(&server, body).await;
    assert_eq!(status, 200, "{body}");
    for (list, r) in body.as_array().unwrap().iter().zip(&refs) {
        let got = pairs(list);
        assert_eq!(got.len(), 2, "parameters.top_k wins: {got:?}");
        for (label, score) in got {
            let logit = r.logits[if label == "NEGATIVE" { 0 } else { 1 }];
            let want = 1.0 / (1.0 + (-logit).exp());
            assert!((score - want).abs() < 1e-4, "{label}: {score} vs {want}");
        }
    }

    // Refused, as /predict refuses: an unknown function, top_k 0, an unknown parameter, and a
    // text over the model's maximum with truncation off.
    let long = "great ".repeat(600);
    for body in [
        json!({ "inputs": "fine", "parameters": { "function_to_apply": "tanh" } }),
        json!({ "inputs": "fine", "parameters": { "top_k": 0 } }),
        json!({ "inputs": "fine", "parameters": { "temperature": 2 } }),
        json!({ "inputs": long, "parameters": { "truncation": false } }),
    ] {
        let (status, error) = post("/", body.clone()).await;
        assert_eq!(status, 422, "{body} -> {error}");
        assert_eq!(error["error_type"], "validation", "{error}");
    }
    let (status, body) = post(
        "/",
        json!({ "inputs": long, "parameters": { "truncation": true } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // GET / is still the playground page.
    let page = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_label_model_scores_each_label_with_a_sigmoid() {
    let dir = common::fixture("bert-tiny-multilabel");
    let server = TestServer::start(config_for(dir.clone())).await;
    let r = &common::references(&dir)[0];
    let (status, body) = predict(&server, json!({ "inputs": r.text })).await;
    assert_eq!(status, 200, "{body}");
    let got = pairs(&body);
    assert_eq!(got.len(), 5);
    let sum: f32 = got.iter().map(|(_, s)| s).sum();
    assert!(
        (sum - 1.0).abs() > 0.05,
        "sigmoid scores need not sum to 1: {sum}"
    );
    let mut want = r.scores.clone();
    want.sort_by(|a, b| b.total_cmp(a));
    for ((_, g), w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "{got:?}");
    }
}

/// ELECTRA, DeBERTa-v2 and ModernBERT load, `/info` names the architecture and the host
/// encoder at the fastest level (with `--cpu-kernels portable`, that level), and `/predict`
/// gives PyTorch's labels and scores, one text and a batch that mixes lengths past
/// ModernBERT's window and DeBERTa's position buckets.
#[tokio::test(flavor = "multi_thread")]
async fn electra_deberta_and_modernbert_serve_and_say_where() {
    let best = sentiment_server::model::cpu::Isa::best().level();
    let host = (
        best.name().to_string(),
        format!("host encoder, {best} kernels ({}), f32", best.features()),
    );
    for (name, model_type, class, (kernels, compute)) in [
        (
            "electra-tiny-2class",
            "electra",
            "ElectraForSequenceClassification",
            host.clone(),
        ),
        (
            "deberta-v2-tiny-3class",
            "deberta-v2",
            "DebertaV2ForSequenceClassification",
            host.clone(),
        ),
        (
            "modernbert-tiny-3class",
            "modernbert",
            "ModernBertForSequenceClassification",
            host,
        ),
    ] {
        let dir = common::more_fixture(name);
        let server = TestServer::start(config_for(dir.clone())).await;
        let info: Value = server.get_json("/info").await;
        assert_eq!(info["model_type"], model_type, "{info}");
        assert_eq!(info["architecture"], class, "{info}");
        assert_eq!(info["cpu_kernels"], kernels, "{info}");
        assert_eq!(info["compute"], compute, "{info}");
        assert_eq!(info["max_input_length"], 512, "{info}");

        let refs: Vec<_> = common::references(&dir)
            .into_iter()
            .filter(|r| !r.text.trim().is_empty())
            .collect();
        let longest = refs.iter().max_by_key(|r| r.input_ids.len()).unwrap();
        let (status, body) = predict(&server, json!({ "inputs": longest.text })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(pairs(&body)[0].0, longest.label, "{name}: {body}");

        let batch: Vec<_> = refs.iter().take(7).chain([longest]).collect();
        let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
        let (status, body) = predict(&server, json!({ "inputs": texts })).await;
        assert_eq!(status, 200, "{body}");
        for (list, r) in body.as_array().unwrap().iter().zip(&batch) {
            let got = pairs(list);
            assert_eq!(got[0].0, r.label, "{name} {:?}: {got:?}", r.text);
            let mut want = r.scores.clone();
            want.sort_by(|a, b| b.total_cmp(a));
            for ((_, g), w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-4, "{name} {:?}: {got:?}", r.text);
            }
        }
    }
    // A kernel level asked for is the level that runs.
    for name in [
        "electra-tiny-2class",
        "deberta-v2-tiny-3class",
        "modernbert-tiny-3class",
    ] {
        let mut config = config_for(common::more_fixture(name));
        config.cpu_kernels = sentiment_server::model::CpuKernels::Portable;
        let server = TestServer::start(config).await;
        let info: Value = server.get_json("/info").await;
        assert_eq!(info["cpu_kernels"], "portable", "{name}: {info}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_info_metrics_and_openapi_describe_the_server() {
    let server = TestServer::start(config_for(common::minilm())).await;
    for path in ["/health", "/ready", "/live"] {
        let r = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let info: Value = server.get_json("/info").await;
    assert_eq!(info["model_id"], "minilm-sst2");
    assert_eq!(info["model_type"], "bert");
    assert_eq!(info["architecture"], "BertForSequenceClassification");
    assert_eq!(info["labels"], json!(["NEGATIVE", "POSITIVE"]));
    assert_eq!(info["max_input_length"], 512);
    assert_eq!(info["device"], "cpu");
    assert_eq!(info["dtype"], "f32");
    // The host encoder at the fastest level this CPU runs, on every CPU.
    let best = sentiment_server::model::cpu::Isa::best().level();
    assert_eq!(info["cpu_kernels"], best.name());
    assert_eq!(
        info["compute"],
        format!("host encoder, {best} kernels ({}), f32", best.features())
    );
    assert_eq!(info["weights_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["batching"]["max_batch_size"], 32);
    assert_eq!(info["batching"]["max_client_batch_size"], 32);
    assert_eq!(info["batching"]["max_candidate_labels"], 64);

    predict(&server, json!({ "inputs": "fine" })).await;
    let metrics = server.get_text("/metrics").await;
    for name in [
        "sentiment_http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"} 1",
        "sentiment_http_request_duration_seconds_bucket",
        "sentiment_queue_depth",
        "sentiment_batch_size_bucket",
        "sentiment_batch_tokens_bucket",
        "sentiment_tokenization_duration_seconds_count",
        "sentiment_inference_duration_seconds_count",
        "sentiment_http_requests_in_flight",
        "sentiment_model_load_duration_seconds",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }

    let spec: Value = server.get_json("/openapi.json").await;
    for path in [
        "/predict",
        "/zero-shot-classification",
        "/health",
        "/ready",
        "/live",
        "/info",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lacks {path}");
    }
    for schema in [
        "PredictRequest",
        "PredictResponse",
        "TextPair",
        "ZeroShotRequest",
        "ZeroShotResponse",
        "CandidateLabels",
        "ErrorBody",
        "Info",
        "LabelScore",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "openapi lacks {schema}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_generated_or_echoed() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let r = server
        .client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r = server
        .client
        .post(server.url("/predict"))
        .header("x-request-id", "client-chosen-42")
        .json(&json!({"inputs": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
}

#[tokio::test(flavor = "multi_thread")]
async fn sst2_validation_accuracy_over_http_equals_pytorch() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let data = common::sst2_dev();
    assert_eq!(data.len(), 872);
    let mut correct = 0;
    for chunk in data.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let (status, body) = predict(&server, json!({ "inputs": texts })).await;
        assert_eq!(status, 200, "{body}");
        for (list, (label, _)) in body.as_array().unwrap().iter().zip(chunk) {
            let predicted = if list[0]["label"] == "POSITIVE" { 1 } else { 0 };
            correct += usize::from(predicted == *label);
        }
    }
    let accuracy = correct as f64 / data.len() as f64;
    assert_eq!(
        format!("{accuracy:.4}"),
        "0.8968",
        "{correct}/{}",
        data.len()
    );
}
