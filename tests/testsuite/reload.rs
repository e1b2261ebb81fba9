//! Hot reload of `--model-repository`: versions dropped into a served repository (copied
//! beside it, then renamed into place, as `download` does) take traffic within the poll
//! interval; a broken version never serves and the one before keeps serving; no request fails
//! while versions swap under load on two models; memory returns once the old version is
//! released; SIGHUP and the repository routes reload, behind the API key.

use crate::common;

use common::spawned::Spawned;
use common::TestServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(200);
/// Loading a tiny fixture takes milliseconds; this covers a slow, shared CI machine.
const SWITCH_WITHIN: Duration = Duration::from_secs(10);

/// Copies the shared model `from` to `to` the way a deployment must: into a hidden sibling,
/// then one rename, so that the server never sees it half-written. `edit` breaks the copy.
fn drop_in(from: &Path, to: &Path, edit: impl FnOnce(&Path)) {
    let parent = to.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let staging = parent.join(format!(
        ".{}.copying",
        to.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir(&staging).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, staging.join(path.file_name().unwrap())).unwrap();
    }
    edit(&staging);
    std::fs::rename(&staging, to).unwrap();
}

/// A fixture copied in unchanged, as [`drop_in`] does.
fn copy_in(fixture: &str, to: &Path) {
    drop_in(&common::fixture(fixture), to, |_| {});
}

/// A copy that cannot load: its weights cut to 4 KiB.
fn truncate_weights(dir: &Path) {
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::remove_file(&weights).unwrap();
    std::fs::write(&weights, &bytes[..4096]).unwrap();
}

/// A copy whose config does not match its weights' shapes: one more feed-forward unit.
fn wrong_shapes(dir: &Path) {
    let config = dir.join("config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    // BERT and RoBERTa call it intermediate_size, DistilBERT hidden_dim.
    let key = if json["hidden_dim"].is_u64() {
        "hidden_dim"
    } else {
        "intermediate_size"
    };
    json[key] = json!(json[key].as_u64().unwrap() + 1);
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, json.to_string()).unwrap();
}

fn repository_config(root: &Path) -> sentiment_server::Config {
    let mut config = common::config_for(PathBuf::new());
    config.model_dir = None;
    config.model_repository = Some(root.to_path_buf());
    // These tests drive the admin routes without a key; their guard is tested in hostile.rs.
    config.allow_unauthenticated_admin = true;
    config.repository_poll_interval = POLL;
    config
}

/// The first reference text of a fixture and its best label.
fn reference(fixture: &str) -> (String, String) {
    let first = common::references(&common::fixture(fixture)).remove(0);
    (first.text, first.label)
}

/// The scores `/models/<model>/predict` gives for `text`, or the status and body of a failure.
async fn predict(server: &TestServer, model: &str, text: &str) -> Result<Vec<f64>, String> {
    let (status, answer) = server
        .post(
            &format!("/models/{model}/predict"),
            &json!({ "inputs": text }),
        )
        .await;
    if status != 200 {
        return Err(format!("{status} {answer}"));
    }
    let mut scores: Vec<(String, f64)> = answer
        .as_array()
        .ok_or_else(|| answer.to_string())?
        .iter()
        .map(|p| {
            (
                p["label"].as_str().unwrap_or_default().to_owned(),
                p["score"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    scores.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(scores.into_iter().map(|(_, s)| s).collect())
}

/// The reference scores of a fixture's first text, by label name order.
fn reference_scores(fixture: &str) -> Vec<f64> {
    let dir = common::fixture(fixture);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let first = common::references(&dir).remove(0);
    let mut scores: Vec<(String, f64)> = first
        .scores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                config["id2label"][i.to_string()]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                *s as f64,
            )
        })
        .collect();
    scores.sort_by(|a, b| a.0.cmp(&b.0));
    scores.into_iter().map(|(_, s)| s).collect()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3)
}

/// `(version, state)` of each version of `model` in `/info`.
async fn versions(server: &TestServer, model: &str) -> Vec<(u64, String)> {
    common::version_states(&server.get_json("/info").await, model)
}

/// Waits until `check` holds, up to `within`; panics with `what` after.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn new_versions_serve_within_the_poll_interval_and_broken_ones_never_serve() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    copy_in("bert-tiny-3class", &r.join("three/1"));
    let server = TestServer::start(repository_config(r)).await;
    let (text, _) = reference("bert-tiny-3class");
    let bert = reference_scores("bert-tiny-3class");
    let roberta = reference_scores("roberta-tiny-3class");
    assert!(close(
        &predict(&server, "three", &text).await.unwrap(),
        &bert
    ));

    // Version 2 dropped in: served within the poll interval (and its load), version 1 retired.
    copy_in("roberta-tiny-3class", &r.join("three/2"));
    let took = eventually(SWITCH_WITHIN, "version 2 serves", || async {
        predict(&server, "three", &text)
            .await
            .is_ok_and(|s| close(&s, &roberta))
    })
    .await;
    println!("version 2 served {took:?} after its rename (poll interval {POLL:?})");
    eventually(SWITCH_WITHIN, "version 1 retired", || async {
        versions(&server, "three").await == [(2, "READY".to_string())]
    })
    .await;
    let retired = server
        .client
        .get(server.url("/v2/models/three/versions/1/ready"))
        .send()
        .await;
    assert_eq!(retired.unwrap().status(), 404);

    // Version 3 with truncated weights: FAILED with the reason, never serves; 2 keeps serving.
    drop_in(
        &common::fixture("bert-tiny-3class"),
        &r.join("three/3"),
        truncate_weights,
    );
    eventually(SWITCH_WITHIN, "version 3 fails", || async {
        versions(&server, "three").await == [(2, "READY".to_string()), (3, "FAILED".to_string())]
    })
    .await;
    let info = server.get_json("/info").await;
    assert!(
        info["models"][0]["versions"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("model.safetensors")),
        "{info}"
    );
    for _ in 0..5 {
        assert!(close(
            &predict(&server, "three", &text).await.unwrap(),
            &roberta
        ));
        tokio::time::sleep(POLL).await;
    }
    let (status, answer) = server
        .post("/models/three/predict", &json!({"inputs": text}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let metrics = server.get_text("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "sentiment_model_load_failures_total{model=\"three\",version=\"3\"}"
        ),
        Some(1.0),
        "failed once, not retried while unchanged:\n{metrics}"
    );
    let (status, index) = server.post("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(index[1]["state"], "UNAVAILABLE", "{index}");

    // Version 3 fixed in place (the broken directory swapped for a good one): it serves.
    std::fs::rename(r.join("three/3"), r.join("three/.3.broken")).unwrap();
    copy_in("bert-tiny-3class", &r.join("three/3"));
    eventually(SWITCH_WITHIN, "the fixed version 3 serves", || async {
        predict(&server, "three", &text)
            .await
            .is_ok_and(|s| close(&s, &bert))
    })
    .await;
    eventually(SWITCH_WITHIN, "version 2 retired", || async {
        versions(&server, "three").await == [(3, "READY".to_string())]
    })
    .await;
}

/// Proof under load (issue 17, item 6): clients on two models while one gets a new version and
/// the other a broken one. Every request succeeds, answers switch within the poll interval,
/// the broken version never serves.
#[tokio::test(flavor = "multi_thread")]
async fn no_request_fails_while_versions_swap_under_load_on_two_models() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    copy_in("bert-tiny-3class", &r.join("alpha/1"));
    copy_in("distilbert-tiny", &r.join("beta/1"));
    let mut config = repository_config(r);
    config.default_model = Some("alpha".into());
    let server = Arc::new(TestServer::start(config).await);
    let (alpha_text, _) = reference("bert-tiny-3class");
    let (beta_text, _) = reference("distilbert-tiny");
    let alpha_old = reference_scores("bert-tiny-3class");
    let alpha_new = reference_scores("roberta-tiny-3class");
    let beta_old = reference_scores("distilbert-tiny");

    // /health waits for the default model only.
    eventually(SWITCH_WITHIN, "beta 1 serves", || async {
        versions(&server, "beta").await == [(1, "READY".to_string())]
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (server, stop) = (server.clone(), stop.clone());
        let (model, text) = if i % 2 == 0 {
            ("alpha", alpha_text.clone())
        } else {
            ("beta", beta_text.clone())
        };
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                answers.push((Instant::now(), predict(&server, model, &text).await));
            }
            (model, answers)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    copy_in("roberta-tiny-3class", &r.join("alpha/2"));
    let dropped = Instant::now();
    drop_in(
        &common::fixture("distilbert-tiny"),
        &r.join("beta/2"),
        wrong_shapes,
    );
    eventually(
        SWITCH_WITHIN,
        "alpha 2 serves and beta 2 failed",
        || async {
            versions(&server, "alpha").await == [(2, "READY".to_string())]
                && versions(&server, "beta").await
                    == [(1, "READY".to_string()), (2, "FAILED".to_string())]
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut alpha = Vec::new();
    for client in clients {
        let (model, answers) = client.await.unwrap();
        assert!(
            answers.len() > 5,
            "{model}: too few requests to prove anything"
        );
        for (sent, answer) in answers {
            let scores = answer.unwrap_or_else(|e| panic!("{model}: a request failed: {e}"));
            match model {
                // The broken version never answers: every beta answer is version 1's.
                "beta" => assert!(close(&scores, &beta_old), "beta: {scores:?}"),
                _ => {
                    let new = close(&scores, &alpha_new);
                    assert!(new || close(&scores, &alpha_old), "alpha: {scores:?}");
                    alpha.push((sent, new));
                }
            }
        }
    }
    let first_new = alpha
        .iter()
        .filter(|(_, new)| *new)
        .map(|(sent, _)| *sent)
        .min()
        .expect("alpha never answered with version 2");
    for (sent, new) in &alpha {
        // Once version 2 answered, requests sent later get version 2 (a little slack for
        // requests in flight on other connections).
        assert!(*new || *sent < first_new + Duration::from_millis(250));
    }
    let switched = first_new.saturating_duration_since(dropped);
    println!("alpha switched {switched:?} after the new version's rename (poll interval {POLL:?})");
    assert!(switched < SWITCH_WITHIN);
}

/// The process's resident set size in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Links every file of `from` into a staging directory beside `to`, then renames it into place.
fn link_in(from: &Path, to: &Path) {
    let staging = to.with_file_name(".linking");
    std::fs::create_dir_all(&staging).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::symlink(&path, staging.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::rename(&staging, to).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_returns_to_its_level_once_the_old_version_is_released() {
    // Measures this process's memory: alone, away from the other tests.
    if !common::alone(concat!(
        module_path!(),
        "::memory_returns_to_its_level_once_the_old_version_is_released"
    )) {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    std::fs::create_dir(r.join("sst2")).unwrap();
    link_in(&common::minilm(), &r.join("sst2/1"));
    let server = TestServer::start(repository_config(r)).await;
    for _ in 0..20 {
        predict(&server, "sst2", "a warm-up sentence, of a few words")
            .await
            .unwrap();
    }
    let baseline = rss();

    // Sample the resident size while version 2 loads beside version 1, until 1 is released.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::SeqCst) {
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    link_in(&common::minilm(), &r.join("sst2/2"));
    eventually(
        Duration::from_secs(60),
        "version 2 serves alone",
        || async { versions(&server, "sst2").await == [(2, "READY".to_string())] },
    )
    .await;
    for _ in 0..20 {
        predict(&server, "sst2", "a warm-up sentence, of a few words")
            .await
            .unwrap();
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let slack = 24 << 20;
    let released = eventually(
        Duration::from_secs(30),
        "memory back to its level",
        || async { rss() <= baseline + slack },
    )
    .await;
    sampling.store(false, Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    println!(
        "resident: {:.0} MiB with version 1, {:.0} MiB at the peak with both, {:.0} MiB after version 1 was released ({released:?} after the swap)",
        mib(baseline),
        mib(peak),
        mib(rss())
    );
    // The measure sees a model (87 MiB of weights): the release is not lost in the noise.
    assert!(peak > baseline + (48 << 20), "peak {:.0} MiB", mib(peak));
}

const KEY: &str = "a-test-key-of-enough-length-0123";

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_the_repository_routes_reload_behind_the_api_key() {
    let _exclusive = common::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("{KEY}\n")).unwrap();
    let r = dir.path().join("repo");
    copy_in("bert-tiny-3class", &r.join("main/1"));
    copy_in("distilbert-tiny", &r.join("other/1"));
    let server = Spawned::start(
        &r,
        &[
            "--default-model",
            "main",
            "--repository-poll-interval",
            "0",
            "--api-key-file",
            keys.to_str().unwrap(),
        ],
    );
    common::wait_healthy(&server.client, &server.base).await;
    // The repository routes answer 503 until start-up loading is over and the repository is
    // watched (its first scan done): then an unknown model is 404.
    eventually(
        Duration::from_secs(60),
        "the repository is watched",
        || async {
            let path = "/v2/repository/models/nope/load";
            server.call("POST", path, Some(KEY), None).await.0 == 404
        },
    )
    .await;
    let ready = |s: Vec<(u64, String)>, want: &[(u64, &str)]| {
        s.iter()
            .map(|(v, st)| (*v, st.as_str()))
            .eq(want.iter().copied())
    };

    // Polling is off: a new version waits for SIGHUP.
    copy_in("roberta-tiny-3class", &r.join("main/2"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ready(server.states("main").await, &[(1, "READY")]));
    server.signal("HUP");
    eventually(SWITCH_WITHIN, "SIGHUP loads main 2", || async {
        ready(server.states("main").await, &[(2, "READY")])
    })
    .await;

    // The index rescans before it answers, behind the key.
    copy_in("bert-tiny-3class", &r.join("main/3"));
    let (status, answer) = server
        .call("POST", "/v2/repository/index", None, None)
        .await;
    assert_eq!(
        (status, &answer["error_type"]),
        (401, &json!("unauthorized"))
    );
    let (status, index) = server
        .call("POST", "/v2/repository/index", Some(KEY), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{index}");
    assert!(
        index
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "main" && e["version"] == "3"),
        "{index}"
    );

    // Unload: 503 on its routes, left unloaded by rescans, until loaded again.
    let (status, _) = server
        .call("POST", "/v2/repository/models/other/unload", None, None)
        .await;
    assert_eq!(status, 401);
    let (status, answer) = server
        .call(
            "POST",
            "/v2/repository/models/other/unload",
            Some(KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!([{"name": "other", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}])
    );
    let predict_other = json!({"inputs": "fine"});
    let (status, answer) = server
        .call(
            "POST",
            "/models/other/predict",
            Some(KEY),
            Some(predict_other.clone()),
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("unloaded"),
        "{answer}"
    );
    assert_eq!(
        server
            .call("GET", "/v2/models/other/ready", None, None)
            .await
            .0,
        503
    );
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ready(server.states("other").await, &[(1, "UNLOADED")]));
    let (status, answer) = server
        .call("POST", "/v2/repository/models/other/load", Some(KEY), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer[0]["state"], "READY", "{answer}");
    let (status, _) = server
        .call(
            "POST",
            "/models/other/predict",
            Some(KEY),
            Some(predict_other.clone()),
        )
        .await;
    assert_eq!(status, 200);

    // A load that fails is 400 with the reason, and the version before keeps serving.
    drop_in(
        &common::fixture("distilbert-tiny"),
        &r.join("other/2"),
        truncate_weights,
    );
    let (status, answer) = server
        .call("POST", "/v2/repository/models/other/load", Some(KEY), None)
        .await;
    assert_eq!(
        (status, &answer["error_type"]),
        (400, &json!("bad_request")),
        "{answer}"
    );
    assert!(
        answer["error"].as_str().unwrap().contains("version 2"),
        "{answer}"
    );
    let (status, _) = server
        .call(
            "POST",
            "/models/other/predict",
            Some(KEY),
            Some(predict_other),
        )
        .await;
    assert_eq!(status, 200);

    // The default model cannot be unloaded; unknown models are 404.
    let (status, answer) = server
        .call("POST", "/v2/repository/models/main/unload", Some(KEY), None)
        .await;
    assert_eq!(
        (status, &answer["error_type"]),
        (400, &json!("bad_request")),
        "{answer}"
    );
    for route in ["load", "unload"] {
        let path = format!("/v2/repository/models/nope/{route}");
        let (status, answer) = server.call("POST", &path, Some(KEY), None).await;
        assert_eq!(
            (status, &answer["error_type"]),
            (404, &json!("model_not_found")),
            "{route}: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_repository_there_is_nothing_to_load_or_unload() {
    let server = TestServer::start(common::config_for(common::fixture("bert-tiny-3class"))).await;
    for route in ["load", "unload"] {
        let path = format!("/v2/repository/models/bert-tiny-3class/{route}");
        let (status, answer) = server.post(&path, &json!({})).await;
        assert_eq!(
            (status, &answer["error_type"]),
            (400, &json!("bad_request")),
            "{answer}"
        );
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .contains("--model-repository"));
    }
    let (status, _) = server.post("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200);
}
