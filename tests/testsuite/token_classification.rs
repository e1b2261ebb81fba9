//! Token classification over HTTP against transformers' `token-classification` pipeline on the
//! NER fixture: every aggregation strategy, one text at a time and in lists, on
//! `/token-classification`, on `POST /` (how huggingface_hub's InferenceClient asks) and
//! through the Open Inference Protocol; on the host encoder and on candle's ops. Routes that do
//! not fit a model's task answer 422 naming it; heads the server does not run stop start-up by
//! name.

use crate::common;

use common::{config_for, TestServer};
use serde_json::{json, Value};

fn ner() -> std::path::PathBuf {
    common::more_fixture("bert-tiny-ner")
}

/// The fixture's pipeline calls: (text, strategy, entities).
fn references() -> Vec<(String, String, Value)> {
    let text = std::fs::read_to_string(ner().join("reference.jsonl")).expect("reference.jsonl");
    text.lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("reference row");
            (
                row["text"].as_str().unwrap().to_string(),
                row["aggregation_strategy"].as_str().unwrap().to_string(),
                row["entities"].clone(),
            )
        })
        .collect()
}

/// Labels, words, offsets and indices exactly, scores to 1e-4, the same keys.
fn assert_entities(got: &Value, want: &Value, what: &str) {
    let (got, want) = (got.as_array().expect("a list"), want.as_array().unwrap());
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.as_object().unwrap(), w.as_object().unwrap());
        let mut keys: Vec<&String> = g.keys().collect();
        let mut want_keys: Vec<&String> = w.keys().collect();
        keys.sort();
        want_keys.sort();
        assert_eq!(keys, want_keys, "{what}: {g:?} vs {w:?}");
        for (key, value) in w {
            if key == "score" {
                let d = (g[key].as_f64().unwrap() - value.as_f64().unwrap()).abs();
                assert!(d < 1e-4, "{what}: {g:?} vs {w:?}");
            } else {
                assert_eq!(&g[key], value, "{what}: {g:?} vs {w:?}");
            }
        }
    }
}

async fn check_every_reference(server: &TestServer, path: &str) {
    let refs = references();
    assert_eq!(refs.len(), 145);
    for (text, strategy, want) in &refs {
        let body = json!({"inputs": text, "parameters": {"aggregation_strategy": strategy}});
        let (status, got) = server.post("/token-classification", &body).await;
        assert_eq!(status, 200, "{got}");
        assert_entities(&got, want, &format!("{path}, {strategy}: {text:.60}"));
    }
    // A list of texts in one request answers one list per text, in order.
    for strategy in ["none", "simple", "first", "average", "max"] {
        let (texts, wants): (Vec<&String>, Vec<&Value>) = refs
            .iter()
            .filter(|(_, s, _)| s == strategy)
            .map(|(t, _, e)| (t, e))
            .unzip();
        let body = json!({"inputs": texts, "parameters": {"aggregation_strategy": strategy}});
        let (status, got) = server.post("/token-classification", &body).await;
        assert_eq!(status, 200, "{got}");
        let got = got.as_array().expect("one list per text");
        assert_eq!(got.len(), wants.len());
        for ((g, w), t) in got.iter().zip(wants).zip(&texts) {
            assert_entities(g, w, &format!("{path}, batched {strategy}: {t:.60}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entities_equal_the_pipeline_for_every_strategy_on_the_host_encoder_and_candle() {
    let server = TestServer::start(config_for(ner())).await;
    let info = server.get_json("/info").await;
    assert_eq!(info["task"], "token-classification", "{info}");
    assert_eq!(info["architecture"], "BertForTokenClassification");
    check_every_reference(&server, "host encoder").await;
    // The default strategy is the pipeline's, `none`; POST / answers the same.
    let refs = references();
    let (text, _, want) = refs.iter().find(|(_, s, _)| s == "none").unwrap();
    let (status, got) = server
        .post("/token-classification", &json!({"inputs": text}))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_entities(&got, want, "default strategy");
    let (text, _, want) = refs.iter().find(|(_, s, _)| s == "simple").unwrap();
    let body = json!({"inputs": text, "parameters": {"aggregation_strategy": "simple", "ignore_labels": ["O"]}});
    let (status, got) = server.post("/", &body).await;
    assert_eq!(status, 200, "{got}");
    assert_entities(&got, want, "POST /");
    // ignore_labels: [] keeps the O tokens too.
    let (status, all) = server
        .post(
            "/token-classification",
            &json!({"inputs": "a warm , funny film .", "parameters": {"ignore_labels": []}}),
        )
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all.as_array().unwrap().len(), 6, "{all}");
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sentiment_sequences_total{task=\"token-classification\"}")),
        "{metrics}"
    );
    drop(server);
    let mut config = config_for(ner());
    config.cpu_kernels = sentiment_server::model::CpuKernels::Candle;
    let server = TestServer::start(config).await;
    check_every_reference(&server, "candle").await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_open_inference_protocol_answers_one_json_entity_list_per_text() {
    let server = TestServer::start(config_for(ner())).await;
    let meta = server.get_json("/v2/models/bert-tiny-ner").await;
    assert_eq!(meta["outputs"][0]["name"], "entities", "{meta}");
    let refs = references();
    let rows: Vec<&(String, String, Value)> = refs.iter().filter(|r| r.1 == "none").collect();
    let texts: Vec<&str> = rows.iter().take(3).map(|r| r.0.as_str()).collect();
    let body =
        json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": texts}]});
    let (status, got) = server.post("/v2/models/bert-tiny-ner/infer", &body).await;
    assert_eq!(status, 200, "{got}");
    let output = &got["outputs"][0];
    assert_eq!(output["name"], "entities");
    assert_eq!(output["datatype"], "BYTES");
    assert_eq!(output["shape"], json!([3]));
    for (data, row) in output["data"].as_array().unwrap().iter().zip(&rows) {
        let entities: Value = serde_json::from_str(data.as_str().unwrap()).unwrap();
        assert_entities(&entities, &row.2, "v2");
    }
    let body = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
        "outputs": [{"name": "label"}]});
    let (status, got) = server.post("/v2/models/bert-tiny-ner/infer", &body).await;
    assert_eq!(status, 400, "{got}");
    assert!(got["error"].as_str().unwrap().contains("entities"), "{got}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_that_do_not_fit_the_task_answer_422_naming_the_task_and_route() {
    let server = TestServer::start(config_for(ner())).await;
    for (path, body) in [
        ("/predict", json!({"inputs": "Angela Merkel"})),
        (
            "/zero-shot-classification",
            json!({"inputs": "Angela Merkel", "parameters": {"candidate_labels": ["a", "b"]}}),
        ),
    ] {
        let (status, got) = server.post(path, &body).await;
        assert_eq!(status, 422, "{path}: {got}");
        let message = got["error"].as_str().unwrap();
        assert!(
            message.contains("token-classification") && message.contains("/token-classification"),
            "{path}: {message}"
        );
    }
    for parameters in [
        json!({"stride": 16}),
        json!({"aggregation_strategy": "longest"}),
        json!({"top_k": 2}),
    ] {
        let body = json!({"inputs": "Angela Merkel", "parameters": parameters});
        let (status, got) = server.post("/token-classification", &body).await;
        assert_eq!(status, 422, "{parameters}: {got}");
    }
    let (status, got) = server
        .post("/token-classification", &json!({"inputs": ["ok", " "]}))
        .await;
    assert_eq!(status, 422, "{got}");
    drop(server);
    let server = TestServer::start(config_for(common::minilm())).await;
    let (status, got) = server
        .post("/token-classification", &json!({"inputs": "great film"}))
        .await;
    assert_eq!(status, 422, "{got}");
    let message = got["error"].as_str().unwrap();
    assert!(
        message.contains("text-classification") && message.contains("/predict"),
        "{message}"
    );
    let body = json!({"inputs": "great film", "parameters": {"aggregation_strategy": "simple"}});
    let (status, got) = server.post("/", &body).await;
    assert_eq!(status, 422, "{got}");
    drop(server);
}

#[test]
fn heads_the_server_does_not_run_stop_start_up_by_name() {
    for architecture in ["BertForMaskedLM", "BertForQuestionAnswering"] {
        let copy = common::model_copy(&ner(), |d| {
            common::edit_json(&d.join("config.json"), |c| {
                c["architectures"] = json!([architecture])
            })
        });
        let metrics = std::sync::Arc::new(sentiment_server::metrics::Metrics::new());
        let config = config_for(copy.path().to_path_buf());
        let err = match sentiment_server::engine::Engine::load(&config, metrics) {
            Ok(_) => panic!("{architecture} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(architecture), "{err}");
        assert!(!err.contains("cannot find tensor"), "{err}");
    }
}

/// `stride`'s cases from transformers' pipeline (scripts/make-stride-reference.py): the texts
/// are the fixture's reference texts joined by one space, once and three times.
fn stride_references() -> (Value, [(&'static str, String); 2]) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testsuite/token_classification/stride.json"
    );
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut texts: Vec<String> = Vec::new();
    for (text, _, _) in references() {
        if !texts.contains(&text) {
            texts.push(text);
        }
    }
    let once = texts.join(" ");
    let thrice = [texts.as_slice(); 3].concat().join(" ");
    (cases, [("once", once), ("thrice", thrice)])
}

#[tokio::test(flavor = "multi_thread")]
async fn stride_reads_long_texts_in_overlapping_windows_as_the_pipeline_does() {
    let (cases, texts) = stride_references();
    let cases = cases["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 6);
    for kernels in [
        sentiment_server::model::CpuKernels::Auto,
        sentiment_server::model::CpuKernels::Candle,
    ] {
        let mut config = config_for(ner());
        config.cpu_kernels = kernels;
        let server = TestServer::start(config).await;
        for case in cases {
            let text = &texts.iter().find(|(n, _)| *n == case["text"]).unwrap().1;
            let (stride, strategy) = (&case["stride"], &case["aggregation_strategy"]);
            let body = json!({"inputs": text, "parameters": {"aggregation_strategy": strategy,
                "stride": stride, "ignore_labels": case["ignore_labels"]}});
            let (status, got) = server.post("/token-classification", &body).await;
            assert_eq!(status, 200, "{got}");
            let what = format!("{kernels:?}: {} stride {stride} {strategy}", case["text"]);
            // Stored as [entity_group, score, word, start, end].
            let want: Vec<Value> = (case["entities"].as_array().unwrap().iter())
                .map(|e| {
                    json!({"entity_group": e[0], "score": e[1], "word": e[2],
                    "start": e[3], "end": e[4]})
                })
                .collect();
            assert_entities(&got, &Value::Array(want), &what);
            // Entities come from past the first window's cut, which the text without stride
            // never reaches.
            let furthest = got
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["end"].as_u64().unwrap());
            assert!(furthest.max().unwrap() > 3_000, "{what}: {got}");
        }
        // A short text reads as one window: the same answer as without stride.
        let (text, strategy, want) = references().into_iter().find(|r| r.1 == "first").unwrap();
        let body =
            json!({"inputs": text, "parameters": {"aggregation_strategy": strategy, "stride": 64}});
        let (status, got) = server.post("/token-classification", &body).await;
        assert_eq!(status, 200, "{got}");
        assert_entities(&got, &want, "one window");
        drop(server);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stride_is_refused_where_the_pipeline_refuses_it_and_windows_are_bounded() {
    let mut config = config_for(ner());
    config.max_client_batch_size = 4;
    let server = TestServer::start(config).await;
    let (_, texts) = stride_references();
    let long = |strategy: &str, stride: u64| json!({"inputs": texts[1].1, "parameters": {"aggregation_strategy": strategy, "stride": stride}});
    for (body, needle) in [
        // none keeps tokens, which windows would repeat.
        (long("none", 16), "aggregation_strategy"),
        // 512 tokens less [CLS] and [SEP]: a stride of 510 would never move.
        (long("simple", 510), "must be less than"),
        (long("simple", u64::MAX), "must be less than"),
        // Thrice the texts take 10 windows: over the 4 inputs a request may take.
        (long("first", 128), "--max-client-batch-size"),
    ] {
        let (status, got) = server.post("/token-classification", &body).await;
        assert_eq!(status, 422, "{body:.80}: {got}");
        let message = got["error"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
        assert!(message.len() < 400, "{message}");
    }
    // Four windows in all: the once-joined text's three and one short text.
    let body = json!({"inputs": [texts[0].1, "Paris"],
        "parameters": {"aggregation_strategy": "simple", "stride": 128}});
    let (status, got) = server.post("/token-classification", &body).await;
    assert_eq!(status, 200, "{got}");
    let body = json!({"inputs": [texts[0].1, "Paris", "Rome"],
        "parameters": {"aggregation_strategy": "simple", "stride": 128}});
    let (status, got) = server.post("/token-classification", &body).await;
    assert_eq!(status, 422, "{got}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_entities_output_takes_the_pipelines_parameters_over_http_and_grpc() {
    use sentiment_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use sentiment_server::grpc::proto::infer_parameter::ParameterChoice;
    use sentiment_server::grpc::proto::model_infer_request::{
        InferInputTensor, InferRequestedOutputTensor,
    };
    use sentiment_server::grpc::proto::{InferParameter, InferTensorContents, ModelInferRequest};

    let mut config = config_for(ner());
    config.grpc_port = Some(0);
    let server = TestServer::start(config).await;
    let refs = references();
    let (text, _, want) = refs.iter().find(|(_, s, _)| s == "first").unwrap();
    let infer = "/v2/models/bert-tiny-ner/infer";
    let input = json!([{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]);
    let ask = |parameters: Value| json!({"inputs": input, "outputs": [{"name": "entities", "parameters": parameters}]});
    let entities = |got: &Value| -> Value {
        serde_json::from_str(got["outputs"][0]["data"][0].as_str().unwrap()).unwrap()
    };
    let (status, got) = server
        .post(infer, &ask(json!({"aggregation_strategy": "first"})))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_entities(&entities(&got), want, "v2 first");
    // `ignore_labels` as one string: "" keeps every token, as `[]` does on the route.
    let (status, got) = server.post(infer, &ask(json!({"ignore_labels": ""}))).await;
    assert_eq!(status, 200, "{got}");
    let body = json!({"inputs": text, "parameters": {"ignore_labels": []}});
    let (status, every_token) = server.post("/token-classification", &body).await;
    assert_eq!(status, 200, "{every_token}");
    assert_entities(&entities(&got), &every_token, "v2 every label");
    assert!(every_token.as_array().unwrap().len() >= text.split(' ').count());
    let (status, got) = server
        .post(infer, &ask(json!({"ignore_labels": "O,B-MISC,I-MISC"})))
        .await;
    assert_eq!(status, 200, "{got}");
    assert!(entities(&got)
        .as_array()
        .unwrap()
        .iter()
        .all(|e| { !["O", "B-MISC", "I-MISC"].contains(&e["entity"].as_str().unwrap()) }));
    for parameters in [
        json!({"aggregation_strategy": "longest"}),
        json!({"ignore_labels": ["O"]}),
        json!({"stride": -1}),
        json!({"stride": 16}),
    ] {
        let (status, got) = server.post(infer, &ask(parameters.clone())).await;
        assert_eq!(status, 400, "{parameters}: {got}");
    }

    let addr = server.grpc_addr.expect("the gRPC port is bound");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let strategy = InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam("first".into())),
    };
    let request = ModelInferRequest {
        model_name: "bert-tiny-ner".into(),
        inputs: vec![InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![text.as_bytes().to_vec()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        outputs: vec![InferRequestedOutputTensor {
            name: "entities".into(),
            parameters: [("aggregation_strategy".to_string(), strategy)].into(),
        }],
        ..Default::default()
    };
    let response = GrpcInferenceServiceClient::new(channel)
        .model_infer(request)
        .await
        .unwrap()
        .into_inner();
    // Raw contents: a 4-byte little-endian length, then the JSON.
    let raw = &response.raw_output_contents[0];
    let got: Value = serde_json::from_slice(&raw[4..]).unwrap();
    assert_entities(&got, want, "gRPC first");
    drop(server);
}
