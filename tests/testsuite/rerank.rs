//! Reranking with the cross-encoder fixture against transformers' references, through the real
//! routes: TEI's `/rerank` (scores, logits, texts), Cohere's and Jina's `/v1/rerank` (top_n,
//! documents, usage), the Open Inference Protocol over HTTP and gRPC (`query` and `texts`);
//! the documents of a request batched together; the limits and the models that are not
//! rerankers refused with 422s that say what to do; the per-task metrics; and the prediction
//! log's rerank row in PostgreSQL.

use crate::common;

use common::postgres::Postgres;
use common::{config_for, TestServer};
use sentiment_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use sentiment_server::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use sentiment_server::grpc::proto::{InferTensorContents, ModelInferRequest};
use serde_json::{json, Value};

const MODEL: &str = "bert-tiny-reranker";

#[derive(serde::Deserialize, Debug, Clone)]
struct RerankReference {
    query: String,
    documents: Vec<String>,
    logits: Vec<f32>,
    scores: Vec<f32>,
    order: Vec<usize>,
}

fn reranker() -> std::path::PathBuf {
    common::more_fixture(MODEL)
}

fn references() -> Vec<RerankReference> {
    let text = std::fs::read_to_string(reranker().join("reference.jsonl")).expect("references");
    let refs: Vec<RerankReference> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("reference line"))
        .collect();
    assert!(refs.len() >= 4, "too few rerank references");
    refs
}

fn close(got: &Value, want: f32, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: no number")) as f32;
    assert!((got - want).abs() <= 1e-4, "{what}: got {got}, want {want}");
}

/// Tokens of (query, document) as transformers' tokenizer gives them (its tokenizer.json cuts
/// `longest_first` at 512, as the server does).
fn pair_tokens(query: &str, documents: &[String]) -> usize {
    let tokenizer = tokenizers::Tokenizer::from_file(reranker().join("tokenizer.json")).unwrap();
    documents
        .iter()
        .map(|d| tokenizer.encode((query, d.as_str()), true).unwrap().len())
        .sum()
}

/// The sum of a metric's series whose line starts with `prefix` (labels included).
async fn metric_sum(server: &TestServer, prefix: &str) -> f64 {
    let text = server.get_text("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn rerank_routes_answer_as_the_cross_encoder_references() {
    let server = TestServer::start(config_for(reranker())).await;
    let refs = references();
    let mut documents_seen = 0;
    for r in &refs {
        documents_seen += r.documents.len();
        let what = format!("query {:?}", r.query);
        let body = json!({"query": r.query, "texts": r.documents, "return_text": true});
        let (status, ranks) = server.post("/rerank", &body).await;
        assert_eq!(status, 200, "{ranks}");
        let ranks = ranks.as_array().expect("a list");
        let order: Vec<usize> = ranks
            .iter()
            .map(|x| x["index"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(order, r.order, "{what}");
        for x in ranks {
            let i = x["index"].as_u64().unwrap() as usize;
            close(&x["score"], r.scores[i], &what);
            assert_eq!(x["text"], r.documents[i].as_str(), "{what}");
        }
        let body = json!({"query": r.query, "texts": r.documents, "raw_scores": true});
        let (status, raw) = server.post("/rerank", &body).await;
        assert_eq!(status, 200, "{raw}");
        for x in raw.as_array().unwrap() {
            let i = x["index"].as_u64().unwrap() as usize;
            close(&x["score"], r.logits[i], &what);
            assert!(x.get("text").is_none(), "no text unless asked: {x}");
        }

        // Cohere's / Jina's shape: strings and {"text"} objects, top_n, return_documents.
        let documents: Vec<Value> = r
            .documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if i % 2 == 0 {
                    json!(d)
                } else {
                    json!({"text": d, "id": i})
                }
            })
            .collect();
        let body = json!({"model": "rerank-english-v3.0", "query": r.query, "documents": documents,
                          "top_n": 3, "return_documents": true});
        let (status, answer) = server.post("/v1/rerank", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["model"], MODEL,
            "an unknown model name falls to the default model"
        );
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), 3, "{answer}");
        for (x, &want) in results.iter().zip(&r.order) {
            assert_eq!(x["index"], want, "{what}: {answer}");
            close(&x["relevance_score"], r.scores[want], &what);
            assert_eq!(x["document"]["text"], r.documents[want].as_str());
        }
        let tokens = pair_tokens(&r.query, &r.documents);
        assert_eq!(answer["usage"]["total_tokens"], tokens, "{what}");
        let body = json!({"model": MODEL, "query": r.query, "documents": r.documents});
        let (status, all) = server.post("/v1/rerank", &body).await;
        assert_eq!(status, 200, "{all}");
        let indices: Vec<usize> = all["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                assert!(x.get("document").is_none(), "{x}");
                x["index"].as_u64().unwrap() as usize
            })
            .collect();
        assert_eq!(indices, r.order, "{what}");
    }
    let requests = metric_sum(&server, "sentiment_task_requests_total{task=\"rerank\"}").await;
    let documents = metric_sum(&server, "sentiment_task_inputs_total{task=\"rerank\"}").await;
    assert_eq!(requests as usize, 4 * refs.len());
    assert_eq!(documents as usize, 4 * documents_seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documents_of_a_request_run_in_shared_batches() {
    let server = TestServer::start(config_for(reranker())).await;
    let r = references()
        .into_iter()
        .max_by_key(|r| r.documents.len())
        .unwrap();
    let before = metric_sum(&server, "sentiment_batch_size_count").await;
    let sizes = metric_sum(&server, "sentiment_batch_size_sum").await;
    let (status, ranks) = server
        .post("/rerank", &json!({"query": r.query, "texts": r.documents}))
        .await;
    assert_eq!(status, 200, "{ranks}");
    let batches = metric_sum(&server, "sentiment_batch_size_count").await - before;
    let sequences = metric_sum(&server, "sentiment_batch_size_sum").await - sizes;
    assert_eq!(sequences as usize, r.documents.len());
    assert!(
        (1.0..=2.0).contains(&batches),
        "{} documents in {batches} forward passes",
        r.documents.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_bad_requests_are_refused_with_422() {
    let mut config = config_for(reranker());
    config.max_rerank_documents = 3;
    let server = TestServer::start(config).await;
    let long = references()
        .into_iter()
        .find(|r| r.documents.iter().any(|d| d.len() > 5000))
        .unwrap();
    let cases = [
        (
            "/rerank",
            json!({"query": "q", "texts": ["a", "b", "c", "d"]}),
            "--max-rerank-documents",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": ["a", "b", "c", "d"]}),
            "--max-rerank-documents",
        ),
        (
            "/rerank",
            json!({"query": " ", "texts": ["a"]}),
            "`query` is empty",
        ),
        (
            "/rerank",
            json!({"query": "q", "texts": []}),
            "`texts` is an empty list",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": []}),
            "`documents` is an empty list",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": ["a"], "top_n": 0}),
            "`top_n`",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": [{"title": "a"}]}),
            "string `text`",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": [3]}),
            "a document is a string",
        ),
        (
            "/rerank",
            json!({"query": long.query, "texts": [long.documents.iter().max_by_key(|d| d.len()).unwrap()], "truncate": false}),
            "`truncate` is false",
        ),
    ];
    for (route, body, message) in cases {
        let (status, answer) = server.post(route, &body).await;
        assert_eq!(status, 422, "{route} {body}: {answer}");
        assert_eq!(answer["error_type"], "validation", "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(message), "{route} {body}: {error}");
    }
    // Up to the limit, and an empty document is scored like any other.
    let (status, answer) = server
        .post("/rerank", &json!({"query": "q", "texts": ["", "a", "b"]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.as_array().map(Vec::len), Some(3));
    // A cross-encoder is a classifier too: /predict answers its sigmoid, counted as its task.
    let (status, answer) = server
        .post("/predict", &json!({"inputs": ["a", "b"]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let texts = metric_sum(
        &server,
        "sentiment_task_inputs_total{task=\"text-classification\"}",
    );
    assert_eq!(texts.await, 2.0);
    let reranked = metric_sum(&server, "sentiment_task_requests_total{task=\"rerank\"}");
    assert_eq!(reranked.await, 1.0, "refused requests are not counted");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_that_are_not_cross_encoders_are_told_which_route_fits() {
    for (dir, name, route) in [
        (common::minilm(), "minilm-sst2", "/predict"),
        (common::nli(), "bert-tiny-nli", "/zero-shot-classification"),
    ] {
        let server = TestServer::start(config_for(dir)).await;
        for (path, body) in [
            ("/rerank", json!({"query": "q", "texts": ["a"]})),
            ("/v1/rerank", json!({"query": "q", "documents": ["a"]})),
        ] {
            let (status, answer) = server.post(path, &body).await;
            assert_eq!(status, 422, "{path}: {answer}");
            let error = answer["error"].as_str().unwrap();
            assert!(
                error.contains("cross-encoder") && error.contains(name) && error.contains(route),
                "{error}"
            );
        }
        let body = json!({"inputs": [
            {"name": "query", "shape": [1], "datatype": "BYTES", "data": ["q"]},
            {"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["a"]}]});
        let (status, answer) = server
            .post(&format!("/v2/models/{name}/infer"), &body)
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(route),
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn open_inference_protocol_reranks_over_http_and_grpc() {
    let mut config = config_for(reranker());
    config.grpc_port = Some(0);
    let server = TestServer::start(config).await;
    let metadata = server.get_json(&format!("/v2/models/{MODEL}")).await;
    let inputs: Vec<&str> = metadata["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        inputs.contains(&"query") && inputs.contains(&"texts"),
        "{metadata}"
    );
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr.unwrap()))
            .unwrap()
            .connect()
            .await
            .expect("gRPC connection");
    let mut grpc = GrpcInferenceServiceClient::new(channel);
    for r in references() {
        let n = r.documents.len();
        let body = json!({"inputs": [
            {"name": "query", "shape": [1], "datatype": "BYTES", "data": [r.query]},
            {"name": "texts", "shape": [n], "datatype": "BYTES", "data": r.documents}],
            "outputs": [{"name": "ranking"}, {"name": "score"}, {"name": "logit"}]});
        let (status, answer) = server
            .post(&format!("/v2/models/{MODEL}/infer"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
        let outputs = answer["outputs"].as_array().unwrap();
        assert_eq!(outputs[0]["name"], "ranking");
        assert_eq!(outputs[0]["datatype"], "INT64");
        assert_eq!(outputs[0]["data"], json!(r.order));
        assert_eq!(outputs[1]["shape"], json!([n]));
        for (i, (score, logit)) in r.scores.iter().zip(&r.logits).enumerate() {
            close(&outputs[1]["data"][i], *score, "v2 score");
            close(&outputs[2]["data"][i], *logit, "v2 logit");
        }

        let bytes = |texts: Vec<String>| InferTensorContents {
            bytes_contents: texts.into_iter().map(String::into_bytes).collect(),
            ..Default::default()
        };
        let tensor = |name: &str, texts: Vec<String>| InferInputTensor {
            name: name.into(),
            datatype: "BYTES".into(),
            shape: vec![texts.len() as i64],
            contents: Some(bytes(texts)),
            ..Default::default()
        };
        let request = ModelInferRequest {
            model_name: MODEL.into(),
            inputs: vec![
                tensor("query", vec![r.query.clone()]),
                tensor("texts", r.documents.clone()),
            ],
            outputs: ["score", "ranking"]
                .map(|name| InferRequestedOutputTensor {
                    name: name.into(),
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        };
        let response = grpc
            .model_infer(request)
            .await
            .expect("ModelInfer")
            .into_inner();
        assert_eq!(response.outputs[1].datatype, "INT64");
        let scores: Vec<f32> = response.raw_output_contents[0]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let ranking: Vec<usize> = response.raw_output_contents[1]
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
            .collect();
        assert_eq!(ranking, r.order);
        for (got, want) in scores.iter().zip(&r.scores) {
            assert!(
                (got - want).abs() <= 1e-4,
                "gRPC scores {scores:?} vs {:?}",
                r.scores
            );
        }
    }
    let body = json!({"inputs": [
        {"name": "query", "shape": [2], "datatype": "BYTES", "data": ["q", "r"]},
        {"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["a"]}]});
    let (status, answer) = server
        .post(&format!("/v2/models/{MODEL}/infer"), &body)
        .await;
    assert_eq!(status, 400, "{answer}");
}

/// One row per rerank request: the query, the best document, its index as the label, and the
/// best documents' scores by index.
#[tokio::test(flavor = "multi_thread")]
async fn the_prediction_log_keeps_the_query_and_the_top_results() {
    let pg = Postgres::start();
    let mut config = config_for(reranker());
    config.database_url = Some(pg.url());
    config.database_password_file = Some(pg.password_file());
    config.prediction_log_text = sentiment_server::config::LogText::Full;
    let server = TestServer::start(config).await;
    let r = references()
        .into_iter()
        .max_by_key(|r| r.documents.len())
        .unwrap();
    assert!(r.documents.len() > 10);
    let (status, _) = server
        .post("/rerank", &json!({"query": r.query, "texts": r.documents}))
        .await;
    assert_eq!(status, 200);
    let rows = pg
        .wait_rows(
            "SELECT task, text, text_pair, label, score, scores, input_index FROM predictions",
            1,
        )
        .await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    let best = r.order[0];
    assert_eq!(row.get::<_, String>(0), "rerank");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some(r.query.as_str())
    );
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some(r.documents[best].as_str())
    );
    assert_eq!(row.get::<_, String>(3), best.to_string());
    assert!((row.get::<_, f32>(4) - r.scores[best]).abs() <= 1e-4);
    let scores: Value = row.get(5);
    let scores = scores.as_object().expect("scores by index");
    assert_eq!(scores.len(), 10, "the ten best: {scores:?}");
    for &i in &r.order[..10] {
        close(&scores[&i.to_string()], r.scores[i], "logged score");
    }
}
