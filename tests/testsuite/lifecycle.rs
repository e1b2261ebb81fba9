//! Batching under concurrency, graceful shutdown, and the binary's start-up behaviour.

use crate::common;

use common::{config_for, TestServer};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// The value of `name`, summed over its label sets: per-model series carry `model` and
/// `version` labels, and these tests serve one model.
fn metric(text: &str, name: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.parse().ok()
        })
        .collect();
    assert!(!values.is_empty(), "metric {name} missing");
    values.iter().sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_are_batched_and_each_gets_its_own_exact_answer() {
    let mut config = config_for(common::minilm());
    // The point is batching, not admission: 96 requests at once are more than the default 2 s
    // of queued work by the throughput a cold server on a slow 2-core machine has measured so
    // far, and a 429 there is admission control working (tests/errors.rs covers it).
    config.max_queue_wait = Duration::ZERO;
    let server = TestServer::start(config).await;
    let refs: Vec<_> = common::references(&common::minilm())
        .into_iter()
        .filter(|r| !r.text.trim().is_empty())
        .take(96)
        .collect();
    let tasks: Vec<_> = refs
        .iter()
        .map(|r| {
            let client = server.client.clone();
            let url = server.url("/predict");
            let text = r.text.clone();
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({"inputs": text, "raw_scores": true}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            })
        })
        .collect();
    for (task, r) in tasks.into_iter().zip(&refs) {
        let body = task.await.unwrap();
        for item in body.as_array().unwrap() {
            let i = if item["label"] == "NEGATIVE" { 0 } else { 1 };
            let got = item["score"].as_f64().unwrap() as f32;
            assert!(
                (got - r.logits[i]).abs() < 1e-4,
                "{:?}: {body} vs {:?}",
                r.text,
                r.logits
            );
        }
    }
    let m = server.get_text("/metrics").await;
    let (sum, count) = (
        metric(&m, "sentiment_batch_size_sum"),
        metric(&m, "sentiment_batch_size_count"),
    );
    assert_eq!(sum, 96.0, "every sequence ran exactly once: {m}");
    assert!(
        sum / count > 1.5,
        "concurrent requests shared forward passes: {sum} sequences in {count} batches"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_answers_in_flight_requests_then_stops_listening() {
    let mut config = config_for(common::minilm());
    // The point is draining, not speed: a slow CI machine must not turn this into a 504.
    config.request_timeout = Duration::from_secs(300);
    let mut server = TestServer::start(config).await;
    let texts: Vec<String> = (0..32)
        .map(|i| format!("review {i}: {}", "a fine film ".repeat(20)))
        .collect();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let client = server.client.clone();
            let url = server.url("/predict");
            let body = json!({"inputs": texts});
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Wait until all six are inside the server (the /metrics request itself is the 7th).
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(
        &server.get_text("/metrics").await,
        "sentiment_http_requests_in_flight",
    ) < 7.0
    {
        assert!(Instant::now() < deadline, "requests never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopped = server.shutdown();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().expect("in-flight request answered"),
            200
        );
    }
    stopped.await.unwrap().expect("clean stop");
    assert!(
        server.client.get(server.url("/live")).send().await.is_err(),
        "no longer listening after shutdown"
    );
}

/// A client that connected but never sent a byte (a port scanner, a proxy's pre-opened
/// connection) must not hold the drain until --header-read-timeout: it has nothing in flight.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_does_not_wait_for_connections_that_never_sent_a_request() {
    let mut config = config_for(common::minilm());
    config.header_read_timeout = Duration::from_secs(120);
    let mut server = TestServer::start(config).await;
    let silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Accepted and waiting for its first bytes (the server counts it as open).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = server.shutdown();
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the drain waited for a silent connection")
        .unwrap()
        .expect("clean stop");
    drop(silent);
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sentiment-server"))
}

/// Runs the server on a broken model directory; returns stderr after it exits.
fn start_up_failure(args: &[&str]) -> String {
    let out = binary()
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "must exit non-zero: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic trace: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {stderr}");
    errors[0].to_string()
}

/// The server as a user without the right to read `chmod 000` files: root reads everything,
/// so as root (CI) it runs as `nobody` through setpriv.
fn start_up_failure_unprivileged(model: &std::path::Path) -> String {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_sentiment-server"));
        c
    } else {
        binary()
    };
    let out = command
        .args(["--host", "127.0.0.1", "--port", "0", "--model-dir"])
        .arg(model)
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "must exit non-zero: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {stderr}");
    errors[0].to_string()
}

#[test]
fn unreadable_model_files_and_directories_stop_start_up_naming_them() {
    use std::os::unix::fs::PermissionsExt;
    let d = broken_copy(|d| {
        std::fs::set_permissions(
            d.join("model.safetensors"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap()
    });
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let line = start_up_failure_unprivileged(d.path());
    assert!(
        line.contains("model.safetensors") && line.contains("Permission denied"),
        "{line}"
    );

    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = parent.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(
            common::fixture("bert-tiny-3class").join(file),
            locked.join(file),
        )
        .unwrap();
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let line = start_up_failure_unprivileged(&locked);
    assert!(
        line.contains("locked") && line.contains("Permission denied"),
        "{line}"
    );
}

fn broken_copy(edit: impl FnOnce(&std::path::Path)) -> tempfile::TempDir {
    common::model_copy(&common::fixture("bert-tiny-3class"), edit)
}

fn edit_config(dir: &std::path::Path, change: impl FnOnce(&mut Value)) {
    common::edit_json(&dir.join("config.json"), change);
}

#[test]
fn broken_model_directories_stop_start_up_with_one_line_naming_the_problem() {
    let line = start_up_failure(&["--model-dir", "/nonexistent/model"]);
    assert!(
        line.contains("/nonexistent/model") && line.contains("cannot open"),
        "{line}"
    );

    let d = broken_copy(|d| std::fs::remove_file(d.join("config.json")).unwrap());
    let line = start_up_failure(&["--model-dir", d.path().to_str().unwrap()]);
    assert!(line.contains("config.json"), "{line}");

    let d = broken_copy(|d| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("model.safetensors"))
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len / 2).unwrap();
    });
    let line = start_up_failure(&["--model-dir", d.path().to_str().unwrap()]);
    assert!(line.contains("model.safetensors"), "{line}");

    let d = broken_copy(|d| edit_config(d, |c| c["model_type"] = json!("gpt2")));
    let line = start_up_failure(&["--model-dir", d.path().to_str().unwrap()]);
    assert!(
        line.contains("config.json") && line.contains("gpt2"),
        "{line}"
    );

    let d = broken_copy(|d| edit_config(d, |c| c["hidden_size"] = json!(64)));
    let line = start_up_failure(&["--model-dir", d.path().to_str().unwrap()]);
    assert!(
        line.contains("model.safetensors") && line.contains("shape"),
        "{line}"
    );

    let d = broken_copy(|d| {
        edit_config(d, |c| {
            c["id2label"] = json!({"0": "a", "1": "b", "2": "c", "3": "d"})
        })
    });
    let line = start_up_failure(&["--model-dir", d.path().to_str().unwrap()]);
    assert!(
        line.contains("classifier"),
        "label count must match the classifier: {line}"
    );

    let d = broken_copy(|d| std::fs::write(d.join("tokenizer.json"), "{ not a tokenizer").unwrap());
    let line = start_up_failure(&["--model-dir", d.path().to_str().unwrap()]);
    assert!(line.contains("tokenizer.json"), "{line}");

    let d = broken_copy(|d| std::fs::write(d.join("config.json"), "{\"model_type\": ").unwrap());
    let line = start_up_failure(&["--model-dir", d.path().to_str().unwrap()]);
    assert!(
        line.contains("config.json") && line.contains("JSON"),
        "{line}"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn asking_for_cuda_without_cuda_support_is_a_clear_error() {
    let dir = common::fixture("bert-tiny-3class");
    let line = start_up_failure(&["--model-dir", dir.to_str().unwrap(), "--device", "cuda"]);
    assert!(line.contains("CUDA"), "{line}");
}

/// A kernel level the CPU lacks stops start-up with one line naming what is missing, whether
/// asked for by flag or by environment variable.
#[test]
fn cpu_kernels_the_cpu_lacks_stop_start_up_naming_what_is_missing() {
    use sentiment_server::model::cpu::{Isa, Level};
    let dir = common::fixture("bert-tiny-3class");
    let dir = dir.to_str().unwrap();
    // Every machine lacks one of these: neon on x86, avx2 on ARM.
    let lacking = [Level::Neon, Level::Avx2, Level::Avx512]
        .into_iter()
        .find(|l| Isa::detect(*l).is_err())
        .expect("a level this CPU lacks");
    let line = start_up_failure(&["--model-dir", dir, "--cpu-kernels", lacking.name()]);
    assert!(
        line.contains(&format!("--cpu-kernels {lacking}")) && line.contains("lacks"),
        "{line}"
    );
    // The environment variable does the same.
    let out = binary()
        .args(["--host", "127.0.0.1", "--port", "0", "--model-dir", dir])
        .env("CPU_KERNELS", lacking.name())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lacks"));
}

/// `--dtype bf16` where the level has no bf16 arithmetic: a start-up warning that says what
/// to use instead, then the server serves, emulating bf16 on the f32 kernels.
#[tokio::test(flavor = "multi_thread")]
async fn bf16_without_bf16_hardware_warns_and_serves() {
    use std::io::{BufRead, BufReader};
    let dir = common::fixture("bert-tiny-3class");
    let mut child = binary()
        .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
        .args([
            "--dtype",
            "bf16",
            "--cpu-kernels",
            "portable",
            "--model-dir",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let ready = v["message"] == "model loaded; ready";
            seen.push(v);
            if ready {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    let warning = lines
        .iter()
        .find(|v| v["level"] == "WARN")
        .unwrap_or_else(|| panic!("no warning in {lines:?}"));
    let text = warning["message"].as_str().unwrap();
    assert!(
        text.contains("bf16") && text.contains("Use --dtype f32"),
        "{text}"
    );
    let addr = lines
        .iter()
        .find_map(|v| v["address"].as_str())
        .expect("address");
    let info: Value = reqwest::get(format!("http://{addr}/info"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().ok();
    child.wait().ok();
    assert_eq!(info["cpu_kernels"], "portable");
    assert_eq!(info["dtype"], "bf16");
    assert!(
        info["compute"].as_str().unwrap().contains("bf16 emulated"),
        "{info}"
    );
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let out = binary().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--model-dir", "MODEL_DIR"),
        ("--repository-poll-interval", "REPOSITORY_POLL_INTERVAL"),
        ("--host", "HOST"),
        ("--port", "PORT"),
        ("--device", "DEVICE"),
        ("--dtype", "DTYPE"),
        ("--cpu-kernels", "CPU_KERNELS"),
        ("--max-batch-size", "MAX_BATCH_SIZE"),
        ("--max-batch-tokens", "MAX_BATCH_TOKENS"),
        ("--max-batch-delay", "MAX_BATCH_DELAY"),
        ("--max-queue-size", "MAX_QUEUE_SIZE"),
        ("--max-client-batch-size", "MAX_CLIENT_BATCH_SIZE"),
        ("--payload-limit", "PAYLOAD_LIMIT"),
        ("--request-timeout", "REQUEST_TIMEOUT"),
        ("--shutdown-timeout", "SHUTDOWN_TIMEOUT"),
        ("--shutdown-delay", "SHUTDOWN_DELAY"),
        ("--log-format", "LOG_FORMAT"),
    ] {
        assert!(
            help.contains(flag) && help.contains(&format!("env: {env}")),
            "{flag} / {env}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let _exclusive = common::exclusive().await;
    let (child, base) = common::spawn_binary(
        &common::minilm(),
        &["--request-timeout", "300s", "--shutdown-timeout", "300s"],
    );
    let client = reqwest::Client::new();
    common::wait_healthy(&client, &base).await;
    let texts: Vec<String> = (0..32)
        .map(|i| format!("review {i}: {}", "a dull film ".repeat(20)))
        .collect();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, body) = (
                client.clone(),
                format!("{base}/predict"),
                json!({"inputs": texts}),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    while metric(
        &client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "sentiment_http_requests_in_flight",
    ) < 5.0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = common::terminate(child).await;
    for task in tasks {
        assert_eq!(task.await.unwrap().expect("answered despite SIGTERM"), 200);
    }
    assert_eq!(status.code(), Some(0), "graceful exit");
}

/// `--shutdown-delay`: after SIGTERM readiness is 503 at once, while new connections, pooled
/// keep-alive connections (a proxy's) and their requests are still served for the delay; then
/// the drain closes idle keep-alive connections instead of waiting for them (the process exits
/// long before --header-read-timeout would close them), and the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_delay_keeps_serving_with_readiness_503_then_closes_idle_connections() {
    let _exclusive = common::exclusive().await;
    let delay = Duration::from_secs(3);
    let (mut child, base) = common::spawn_binary(
        &common::minilm(),
        &[
            "--shutdown-delay",
            "3s",
            "--shutdown-timeout",
            "300s",
            "--header-read-timeout",
            "60s",
        ],
    );
    // One client whose pooled connection stays open throughout, as a proxy's would.
    let pooled = reqwest::Client::new();
    common::wait_healthy(&pooled, &base).await;
    let predict = |client: &reqwest::Client| {
        client
            .post(format!("{base}/predict"))
            .json(&json!({"inputs": "a warm and funny film"}))
            .send()
    };
    assert_eq!(predict(&pooled).await.unwrap().status(), 200);

    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let exited = tokio::task::spawn_blocking(move || child.wait());

    // Readiness turns 503 at once (a fresh connection for each probe: new connections are
    // still accepted).
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    loop {
        let status = fresh()
            .get(format!("{base}/ready"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 503 {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "/ready still {status} 1 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Until shortly before the delay ends, everything but readiness is served: on new
    // connections and on the pooled one.
    let mut rounds = 0;
    while signalled.elapsed() < delay - Duration::from_millis(1000) {
        let client = fresh();
        assert_eq!(
            predict(&client).await.unwrap().status(),
            200,
            "new connection"
        );
        assert_eq!(
            predict(&pooled).await.unwrap().status(),
            200,
            "pooled connection"
        );
        let live = client.get(format!("{base}/live")).send().await.unwrap();
        assert_eq!(live.status(), 200);
        let ready = pooled.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["error_type"], "unavailable", "{body}");
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 503, "the container HEALTHCHECK's route");
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rounds >= 3,
        "only {rounds} rounds of requests during the delay"
    );

    // The pooled connection is idle now: the drain closes it rather than waiting for it.
    let status = tokio::time::timeout(delay + Duration::from_secs(20), exited)
        .await
        .expect("exited within the delay + 20 s (an idle keep-alive connection held the drain?)")
        .expect("join")
        .expect("wait");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "graceful exit");
    assert!(
        took >= delay,
        "exited {took:?} after SIGTERM, before the delay"
    );
    assert!(
        fresh().get(format!("{base}/live")).send().await.is_err(),
        "no longer listening after shutdown"
    );
}
