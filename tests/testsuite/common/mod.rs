//! Shared test helpers: where the shared models live, and a real server on 127.0.0.1:0.
#![allow(dead_code)]

use sentiment_server::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub mod parity;
pub mod postgres;
pub mod spawned;

/// `../shared` beside the checkout, or `$SHARED_DIR`. Missing data is a failure, not a skip:
/// a test run that silently checks nothing proves nothing.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        dir.join("models/minilm-sst2/model.safetensors").is_file(),
        "shared test data not found at {} (set SHARED_DIR)",
        dir.display()
    );
    dir
}

pub fn minilm() -> PathBuf {
    shared_dir().join("models/minilm-sst2")
}

pub fn fixture(name: &str) -> PathBuf {
    shared_dir().join("fixtures").join(name)
}

/// A model in `more-fixtures/` (features added after `fixtures/`).
pub fn more_fixture(name: &str) -> PathBuf {
    shared_dir().join("more-fixtures").join(name)
}

/// The `more-fixtures/` models of the architectures beyond the BERT family: the candle path
/// runs them on every device.
pub const MORE_ARCHITECTURES: [&str; 3] = [
    "deberta-v2-tiny-3class",
    "electra-tiny-2class",
    "modernbert-tiny-3class",
];

/// Every single-text classifier with reference outputs.
pub fn reference_models() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(shared_dir().join("fixtures"))
        .expect("fixtures directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("reference.jsonl").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 4,
        "expected at least 4 fixtures, found {dirs:?}"
    );
    dirs.extend(MORE_ARCHITECTURES.map(more_fixture));
    dirs.push(minilm());
    dirs
}

/// A copy of a shared model directory with `edit` applied to its files: settings no fixture
/// has, broken models.
pub fn model_copy(dir: &std::path::Path, edit: impl FnOnce(&std::path::Path)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(dir).expect("model dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).expect("copy");
    }
    edit(copy.path());
    copy
}

/// Rewrites a JSON file of a model copy.
pub fn edit_json(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, json.to_string()).unwrap();
}

#[derive(serde::Deserialize, Debug, Clone)]
pub struct Reference {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub scores: Vec<f32>,
    pub label: String,
}

pub fn references(model_dir: &std::path::Path) -> Vec<Reference> {
    let text = std::fs::read_to_string(model_dir.join("reference.jsonl")).expect("reference.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("reference line"))
        .collect()
}

/// The NLI fixture (contradiction/neutral/entailment), kept in `more-fixtures/` so that the
/// tests iterating over `fixtures/` do not take it: text pairs and zero-shot classification.
pub fn nli() -> PathBuf {
    shared_dir().join("more-fixtures/bert-tiny-nli")
}

/// A text pair through PyTorch/transformers (`kind: pair`).
#[derive(serde::Deserialize, Debug, Clone)]
pub struct PairReference {
    pub text: String,
    pub text_pair: String,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub scores: Vec<f32>,
    pub label: String,
}

/// A call of transformers' zero-shot pipeline (`kind: zero-shot`): `labels` and `scores` in
/// the pipeline's order.
#[derive(serde::Deserialize, Debug, Clone)]
pub struct ZeroShotReference {
    pub sequence: String,
    pub candidate_labels: Vec<String>,
    pub hypothesis_template: String,
    pub multi_label: bool,
    pub labels: Vec<String>,
    pub scores: Vec<f32>,
}

/// The NLI fixture's references of one `kind`.
fn nli_references<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<T> {
    let text = std::fs::read_to_string(nli().join("reference.jsonl")).expect("reference.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("reference line"))
        .filter(|v| v["kind"] == kind)
        .map(|v| serde_json::from_value(v).expect("reference fields"))
        .collect()
}

pub fn pair_references() -> Vec<PairReference> {
    let refs = nli_references("pair");
    assert!(refs.len() >= 20, "too few pair references");
    refs
}

pub fn zero_shot_references() -> Vec<ZeroShotReference> {
    let refs = nli_references("zero-shot");
    assert!(refs.len() >= 15, "too few zero-shot references");
    refs
}

/// SST-2 validation: (label, sentence).
pub fn sst2_dev() -> Vec<(usize, String)> {
    let text =
        std::fs::read_to_string(shared_dir().join("data/sst2_dev.tsv")).expect("sst2_dev.tsv");
    text.lines()
        .filter_map(|l| {
            let (label, sentence) = l.split_once('\t')?;
            Some((label.trim().parse().ok()?, sentence.to_string()))
        })
        .collect()
}

/// Test servers of one test binary take turns: each owns the inference thread pools while it
/// runs, and several full servers at once on a 2-core CI machine only measure contention.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// A real server on an ephemeral loopback port; stops (gracefully) when dropped.
pub struct TestServer {
    _exclusive: tokio::sync::MutexGuard<'static, ()>,
    pub addr: SocketAddr,
    /// The gRPC address, when the config set `grpc_port`.
    pub grpc_addr: Option<SocketAddr>,
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    pub handle: Option<tokio::task::JoinHandle<Result<(), sentiment_server::error::StartupError>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        Self::start_unready(config).await.wait_ready().await
    }

    /// Starts without waiting for the model to load.
    pub async fn start_unready(mut config: Config) -> Self {
        let exclusive = exclusive().await;
        config.host = "127.0.0.1".into();
        config.port = 0;
        let listener = sentiment_server::server::bind(&config).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let grpc_addr = listener.grpc_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(sentiment_server::server::run(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            _exclusive: exclusive,
            addr,
            grpc_addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub async fn wait_ready(self) -> Self {
        wait_healthy(&self.client, &self.base).await;
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path`, body parsed as JSON (whatever the status).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        response.json().await.expect("JSON body")
    }

    /// `POST /predict` with a JSON body; the answer parsed as JSON (whatever the status).
    pub async fn predict_json(&self, body: &serde_json::Value) -> serde_json::Value {
        let response = self
            .client
            .post(self.url("/predict"))
            .json(body)
            .send()
            .await
            .expect("request");
        response.json().await.expect("JSON body")
    }

    /// `GET path`, body as text (whatever the status).
    /// POSTs `body` as JSON to `path`: the status and the JSON answer, whatever the status.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send");
        (r.status().as_u16(), r.json().await.expect("json body"))
    }

    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        response.text().await.expect("text body")
    }

    /// Begins a graceful shutdown (like SIGTERM) and returns the server task.
    pub fn shutdown(
        &mut self,
    ) -> tokio::task::JoinHandle<Result<(), sentiment_server::error::StartupError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.take().expect("server already stopped")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn config_for(model_dir: PathBuf) -> Config {
    let mut config = Config::for_model(model_dir);
    config.log_level = "warn".into();
    config
}

/// The device the model-level tests run on: `$TEST_DEVICE`, `cpu` by default; `cuda` or
/// `cuda:N` picks a GPU (needs a `--features cuda` build), as `--device` does.
pub fn test_device() -> candle_core::Device {
    let spec = std::env::var("TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    sentiment_server::device::select(&spec).unwrap_or_else(|e| panic!("TEST_DEVICE={spec}: {e}"))
}

/// A model loaded in process, as the server's engine loads it: backend, tokenizer, config.
pub struct TestModel {
    pub backend: sentiment_server::model::ModelBackend,
    pub tokenizer: sentiment_server::tokenize::TextTokenizer,
    pub config: sentiment_server::checkpoint::ModelConfig,
}

/// Loads on the path the server would pick for `device` and `dtype` (`--cpu-kernels auto`).
pub fn load_model(
    dir: &std::path::Path,
    device: &candle_core::Device,
    dtype: candle_core::DType,
) -> TestModel {
    use sentiment_server::checkpoint::ModelFiles;
    use sentiment_server::model::{Compute, CpuKernels};
    let config = ModelFiles::locate(dir)
        .expect("locate")
        .read_config()
        .expect("config");
    let dtype = match dtype {
        candle_core::DType::F16 => sentiment_server::model::Dtype::F16,
        candle_core::DType::BF16 => sentiment_server::model::Dtype::Bf16,
        _ => sentiment_server::model::Dtype::F32,
    };
    let decision =
        Compute::decide(device, dtype, CpuKernels::Auto, config.family).expect("compute decision");
    load_model_with(dir, &decision.compute)
}

/// Loads on a given compute path.
pub fn load_model_with(
    dir: &std::path::Path,
    compute: &sentiment_server::model::Compute,
) -> TestModel {
    use sentiment_server::checkpoint::ModelFiles;
    use sentiment_server::model::{self, ModelBackend};
    let files = ModelFiles::locate(dir).expect("locate");
    let config = files.read_config().expect("config");
    let loaded = model::load(files, config, compute).expect("load");
    let tokenizer = sentiment_server::tokenize::TextTokenizer::load(&loaded.files, &loaded.config)
        .expect("tokenizer");
    TestModel {
        backend: ModelBackend {
            classifier: loaded.classifier,
        },
        tokenizer,
        config: loaded.config,
    }
}

/// Largest difference from the PyTorch fp32 references accepted on `device`: 1e-4 on the
/// CPU, 1e-3 on a GPU (cuBLAS and the CUDA kernels sum in other orders).
pub fn parity_tolerance(device: &candle_core::Device) -> f32 {
    if device.is_cpu() {
        1e-4
    } else {
        1e-3
    }
}

/// Starts the real binary on 127.0.0.1:0 with `args`; returns it and its base URL, read from
/// the JSON start-up log. The caller stops it (SIGTERM) or kills it.
pub fn spawn_binary(model: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentiment-server"))
        .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
        .arg("--model-dir")
        .arg(model)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sentiment-server");
    let stdout = child.stdout.take().expect("stdout");
    let addr = listening_addresses(stdout)
        .recv_timeout(Duration::from_secs(30))
        .expect("listening log line");
    (child, format!("http://{addr}"))
}

/// Reads the binary's JSON log from `stdout` on a thread of its own (so the pipe never fills
/// up) and sends the address of each "listening" line.
pub fn listening_addresses(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(addr) = v["address"].as_str() {
                    let _ = tx.send(addr.to_string());
                }
            }
        }
    });
    rx
}

/// `(version, state)` of each version of `model` in an `/info` answer.
pub fn version_states(info: &serde_json::Value, model: &str) -> Vec<(u64, String)> {
    info["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == model)
        .flat_map(|m| m["versions"].as_array().cloned().unwrap_or_default())
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or(0),
                v["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Waits until `base` answers /health with 200.
pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/health"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM and waits for the exit status.
pub async fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait")
}

/// Runs the test at `path` (`module_path!()` and its name) alone in a fresh process of this
/// test binary and returns false, or returns true inside that process, where the caller runs
/// its body. For tests that measure the whole process (its resident memory), which the other
/// tests of this binary, running beside them, would disturb, or compare latencies on its one
/// rayon pool, which every in-process server shares.
pub fn alone(path: &str) -> bool {
    const INSIDE: &str = "SENTIMENT_TEST_ALONE";
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    // libtest names a test by its path without the crate's name.
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    let out = std::process::Command::new(std::env::current_exe().expect("test executable"))
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(INSIDE, "1")
        .output()
        .expect("run the test in a process of its own");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed in its own process");
    // A filter that matches nothing also succeeds: make sure the test really ran.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name} did not run in its own process"
    );
    false
}
