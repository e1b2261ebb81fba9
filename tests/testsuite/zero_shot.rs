//! Zero-shot classification over HTTP against transformers' pipeline on the NLI fixture: the
//! same label order and scores, single- and multi-label, on `/zero-shot-classification` and on
//! `POST /` (how huggingface_hub's InferenceClient asks); all hypothesis pairs of a request in
//! one batch; and hostile requests refused with clear 422s, the server healthy afterwards.

use crate::common;

use common::{config_for, TestServer, ZeroShotReference};
use serde_json::{json, Value};

fn parameters(r: &ZeroShotReference) -> Value {
    json!({
        "candidate_labels": r.candidate_labels,
        "hypothesis_template": r.hypothesis_template,
        "multi_label": r.multi_label,
    })
}

/// `{"sequence", "labels", "scores"}` equals the pipeline's: same order, scores to 1e-4.
fn assert_answer(answer: &Value, r: &ZeroShotReference) {
    assert_eq!(answer["sequence"], r.sequence.as_str(), "{answer}");
    assert_eq!(
        answer["labels"],
        json!(r.labels),
        "{answer} vs {:?}",
        r.scores
    );
    let scores = answer["scores"].as_array().expect("scores");
    assert_eq!(scores.len(), r.scores.len());
    for (got, want) in scores.iter().zip(&r.scores) {
        let got = got.as_f64().expect("score") as f32;
        assert!((got - want).abs() < 1e-4, "{answer} vs {:?}", r.scores);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_shot_answers_as_transformers_pipeline_one_by_one_in_lists_and_on_post_root() {
    let server = TestServer::start(config_for(common::nli())).await;
    let refs = common::zero_shot_references();
    assert!(refs.iter().any(|r| r.multi_label) && refs.iter().any(|r| !r.multi_label));
    for r in &refs {
        let body = json!({"inputs": r.sequence, "parameters": parameters(r)});
        let (status, answer) = server.post("/zero-shot-classification", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_answer(&answer, r);
        // POST /, as InferenceClient.zero_shot_classification sends it: {label, score} objects.
        let (status, list) = server.post("/", &body).await;
        assert_eq!(status, 200, "{list}");
        let labels: Vec<&str> = list
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| e["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, r.labels, "{list}");
        for (e, want) in list.as_array().unwrap().iter().zip(&r.scores) {
            assert!((e["score"].as_f64().unwrap() as f32 - want).abs() < 1e-4);
        }
    }
    // The inputs that share labels, template and mode, in one request each.
    let mut groups: Vec<(Value, Vec<&ZeroShotReference>)> = Vec::new();
    for r in &refs {
        let key = parameters(r);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    assert!(groups.iter().any(|(_, members)| members.len() > 1));
    for (parameters, members) in &groups {
        let sequences: Vec<&str> = members.iter().map(|r| r.sequence.as_str()).collect();
        let body = json!({"inputs": sequences, "parameters": parameters});
        let (status, answers) = server.post("/zero-shot-classification", &body).await;
        assert_eq!(status, 200, "{answers}");
        let answers = answers.as_array().expect("one answer per input");
        assert_eq!(answers.len(), members.len());
        for (answer, r) in answers.iter().zip(members) {
            assert_answer(answer, r);
        }
        let (status, lists) = server.post("/", &body).await;
        assert_eq!(status, 200, "{lists}");
        assert_eq!(lists.as_array().map(Vec::len), Some(members.len()));
    }
    // Labels as one comma-separated string, as transformers takes them; the default template
    // and single-label mode when not given.
    let r = refs
        .iter()
        .find(|r| !r.multi_label && r.hypothesis_template == "This example is {}.")
        .expect("a default-template reference");
    let body = json!({"inputs": r.sequence, "parameters": {"candidate_labels": format!(" {} ,", r.candidate_labels.join(", "))}});
    let (status, answer) = server.post("/zero-shot-classification", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_answer(&answer, r);
}

/// The sum and count of a histogram in /metrics.
async fn histogram(server: &TestServer, name: &str) -> (f64, f64) {
    let text = server.get_text("/metrics").await;
    let value = |suffix: &str| {
        text.lines()
            .filter_map(|l| {
                // Per-model series carry `model` and `version` labels: sum over them.
                let rest = l.strip_prefix(&format!("{name}_{suffix}"))?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.parse::<f64>().ok()
            })
            .sum::<f64>()
    };
    (value("sum"), value("count"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hypothesis_pair_of_a_request_runs_in_one_batch() {
    let server = TestServer::start(config_for(common::nli())).await;
    let (sum, count) = histogram(&server, "sentiment_batch_size").await;
    let body = json!({
        "inputs": ["The match went to extra time.", "Parliament passed the budget."],
        "parameters": {"candidate_labels": ["sports", "politics", "cooking", "music"]},
    });
    let (status, answer) = server.post("/zero-shot-classification", &body).await;
    assert_eq!(status, 200, "{answer}");
    let (sum_after, count_after) = histogram(&server, "sentiment_batch_size").await;
    assert_eq!((sum_after - sum, count_after - count), (8.0, 1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_zero_shot_requests_get_clear_422s_and_the_server_stays_healthy() {
    let server = TestServer::start(config_for(common::nli())).await;
    let labels: Vec<String> = (0..1000).map(|i| format!("label {i}")).collect();
    let twenty: Vec<String> = labels[..20].to_vec();
    let zs = |inputs: Value, parameters: Value| json!({"inputs": inputs, "parameters": parameters});
    let cases = [
        (
            zs(json!("text"), json!({"candidate_labels": labels})),
            "1000 candidate labels exceed the limit of 64 per request (--max-candidate-labels)",
        ),
        (
            zs(json!(["a", "b"]), json!({"candidate_labels": twenty})),
            "40 hypothesis pairs",
        ),
        (
            zs(
                json!("text"),
                json!({"candidate_labels": ["a", "b"], "hypothesis_template": "No placeholder."}),
            ),
            "no `{}`",
        ),
        (
            zs(
                json!("text"),
                json!({"candidate_labels": ["a"], "hypothesis_template": "{} and {}"}),
            ),
            "has 2 `{}`",
        ),
        (
            zs(
                json!("text"),
                json!({"candidate_labels": ["a"], "hypothesis_template": format!("{{}}{}", "x".repeat(600))}),
            ),
            "the limit is 500",
        ),
        (
            zs(json!("text"), json!({"candidate_labels": ["a", " "]})),
            "candidate_labels[1] is empty",
        ),
        (
            zs(json!("text"), json!({"candidate_labels": ["a", "b", "a"]})),
            "candidate_labels[2] \"a\" is given twice",
        ),
        (zs(json!("text"), json!({"candidate_labels": []})), "empty"),
        (
            zs(json!("text"), json!({"candidate_labels": " , ,"})),
            "empty",
        ),
        (
            zs(json!("text"), json!({"candidate_labels": 3})),
            "list of labels",
        ),
        (
            zs(json!("  "), json!({"candidate_labels": ["a"]})),
            "inputs[0] is empty",
        ),
        (
            zs(json!([]), json!({"candidate_labels": ["a"]})),
            "empty list",
        ),
        (
            zs(
                json!({"text": "a", "text_pair": "b"}),
                json!({"candidate_labels": ["a"]}),
            ),
            "not text pairs",
        ),
        (
            zs(
                json!("text"),
                json!({"candidate_labels": ["a"], "top_k": 1}),
            ),
            "unknown field",
        ),
        (json!({"inputs": "text"}), "parameters"),
    ];
    for (body, needle) in &cases {
        let (status, answer) = server.post("/zero-shot-classification", body).await;
        assert_eq!(status, 422, "{needle} -> {answer}");
        assert_eq!(answer["error_type"], "validation", "{answer}");
        let error = answer["error"].as_str().expect("error");
        assert!(error.contains(needle), "{needle} -> {error}");
    }
    for (path, body, needle) in [
        (
            "/",
            zs(json!("text"), json!({"candidate_labels": labels})),
            "--max-candidate-labels",
        ),
        (
            "/",
            zs(
                json!("text"),
                json!({"candidate_labels": ["a"], "top_k": 1}),
            ),
            "takes no `top_k`",
        ),
        (
            "/",
            json!({"inputs": "text", "truncate": false, "parameters": {"candidate_labels": ["a"]}}),
            "`truncate`",
        ),
        (
            "/",
            zs(json!("text"), json!({"hypothesis_template": "{}"})),
            "give `candidate_labels`",
        ),
        (
            "/",
            zs(
                json!({"text": "a", "text_pair": "b"}),
                json!({"candidate_labels": ["a"]}),
            ),
            "not text pairs",
        ),
        (
            "/predict",
            zs(json!("text"), json!({"candidate_labels": ["a"]})),
            "/zero-shot-classification",
        ),
    ] {
        let (status, answer) = server.post(path, &body).await;
        assert_eq!(status, 422, "{path} {needle} -> {answer}");
        assert_eq!(answer["error_type"], "validation", "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{path} {needle} -> {answer}"
        );
    }
    // Still healthy and right.
    assert_eq!(server.get_json("/health").await["status"], "ok");
    let r = &common::zero_shot_references()[0];
    let body = json!({"inputs": r.sequence, "parameters": parameters(r)});
    let (status, answer) = server.post("/zero-shot-classification", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_answer(&answer, r);
}

#[tokio::test(flavor = "multi_thread")]
async fn models_without_entailment_or_contradiction_labels_say_what_they_lack() {
    let server = TestServer::start(config_for(common::minilm())).await;
    let body = json!({"inputs": "I love it", "parameters": {"candidate_labels": ["a", "b"]}});
    for path in ["/zero-shot-classification", "/"] {
        let (status, answer) = server.post(path, &body).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error_type"], "validation");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("\"entail\"") && error.contains("NEGATIVE, POSITIVE"),
            "{error}"
        );
    }
    assert_eq!(server.get_json("/health").await["status"], "ok");
    drop(server);

    // The NLI fixture relabelled without a contradiction label: single-label zero-shot still
    // runs, per-label scoring cannot.
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(common::nli()).expect("nli") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_owned();
        if name != "config.json" {
            std::os::unix::fs::symlink(&path, dir.path().join(name)).expect("symlink");
        }
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(common::nli().join("config.json")).unwrap())
            .unwrap();
    config["id2label"] = json!({"0": "other", "1": "neutral", "2": "entailment"});
    config["label2id"] = json!({"other": 0, "neutral": 1, "entailment": 2});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let server = TestServer::start(config_for(dir.path().to_path_buf())).await;
    let (status, answer) = server.post("/zero-shot-classification", &body).await;
    assert_eq!(status, 200, "{answer}");
    for parameters in [
        json!({"candidate_labels": ["a", "b"], "multi_label": true}),
        json!({"candidate_labels": ["a"]}),
    ] {
        let body = json!({"inputs": "I love it", "parameters": parameters});
        let (status, answer) = server.post("/zero-shot-classification", &body).await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("\"contradict\""),
            "{answer}"
        );
    }
}
