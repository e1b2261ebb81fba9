//! `sentiment-server download` against a local imitation of the Hugging Face Hub's file routes:
//! the real binary, real HTTP, real files; then the real server on what it downloaded.

use crate::common;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "hf_test_token_never_logged";

#[derive(Default)]
struct Repo {
    commit: String,
    /// name -> (content, stored with LFS)
    files: BTreeMap<String, (Vec<u8>, bool)>,
    gated: bool,
}

#[derive(Default)]
struct Hub {
    repos: Mutex<BTreeMap<String, Repo>>,
    requests: Mutex<Vec<String>>,
    /// Files whose next request fails with 503 once.
    flaky: Mutex<HashSet<String>>,
    /// Files served with one byte changed, or cut short.
    corrupt: Mutex<HashSet<String>>,
    truncate: Mutex<HashSet<String>>,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn git_blob_id(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()));
    h.update(bytes);
    hex::encode(h.finalize())
}

fn authorized(repo: &Repo, headers: &HeaderMap) -> bool {
    !repo.gated
        || headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"))
}

fn refuse() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("x-error-message", "Access to model is restricted.")],
        "",
    )
        .into_response()
}

/// GET /api/models/{repo}/revision/{rev}?blobs=true
async fn api(
    State(hub): State<Arc<Hub>>,
    UrlPath(rest): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    hub.requests.lock().unwrap().push(format!("api {rest}"));
    let Some((repo_id, _revision)) = rest.split_once("/revision/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let repos = hub.repos.lock().unwrap();
    let Some(repo) = repos.get(repo_id) else {
        return (
            StatusCode::NOT_FOUND,
            [("x-error-message", "Repository not found")],
            "",
        )
            .into_response();
    };
    if !authorized(repo, &headers) {
        return refuse();
    }
    let siblings: Vec<Value> = repo
        .files
        .iter()
        .map(|(name, (bytes, lfs))| {
            let mut s =
                json!({"rfilename": name, "size": bytes.len(), "blobId": git_blob_id(bytes)});
            if *lfs {
                s["lfs"] =
                    json!({"sha256": sha256(bytes), "size": bytes.len(), "pointerSize": 134});
            }
            s
        })
        .collect();
    axum::Json(json!({"id": repo_id, "sha": repo.commit, "siblings": siblings})).into_response()
}

/// GET /{repo}/resolve/{commit}/{file}; LFS files redirect to /cdn/{sha256} as on the Hub.
async fn resolve(State(hub): State<Arc<Hub>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/').to_string();
    hub.requests.lock().unwrap().push(format!("resolve {path}"));
    let Some((repo_id, rest)) = path.split_once("/resolve/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some((commit, file)) = rest.split_once('/') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if hub.flaky.lock().unwrap().remove(file) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let repos = hub.repos.lock().unwrap();
    let Some(repo) = repos.get(repo_id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !authorized(repo, &headers) {
        return refuse();
    }
    let Some((bytes, lfs)) = repo.files.get(file).filter(|_| commit == repo.commit) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut bytes = bytes.clone();
    if hub.corrupt.lock().unwrap().contains(file) {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
    }
    if hub.truncate.lock().unwrap().contains(file) {
        bytes.truncate(bytes.len() / 2);
    }
    if *lfs {
        let key = format!("{}-{}", sha256(&bytes), bytes.len());
        CDN.lock().unwrap().insert(key.clone(), bytes);
        return Redirect::temporary(&format!("/cdn/{key}")).into_response();
    }
    bytes.into_response()
}

static CDN: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());

async fn cdn(UrlPath(key): UrlPath<String>) -> Response {
    match CDN.lock().unwrap().get(&key) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_hub(hub: Arc<Hub>) -> String {
    let app = Router::new()
        .route("/api/models/{*rest}", get(api))
        .route("/cdn/{key}", get(cdn))
        .fallback(get(resolve))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn repo_from(dir: &Path, names: &[&str], commit: &str) -> Repo {
    let mut files = BTreeMap::new();
    for name in names {
        let lfs = name.ends_with(".safetensors");
        files.insert(
            name.to_string(),
            (std::fs::read(dir.join(name)).expect("read fixture"), lfs),
        );
    }
    // Present on the Hub, never needed: must not be fetched.
    files.insert("pytorch_model.bin".into(), (vec![7u8; 4096], true));
    files.insert("README.md".into(), (b"# model card\n".to_vec(), false));
    Repo {
        commit: commit.into(),
        files,
        gated: false,
    }
}

async fn download(endpoint: &str, repo: &str, to: &Path, token: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sentiment-server"));
    command
        .args(["download", repo, "--to"])
        .arg(to)
        .args(["--retries", "2", "--timeout", "10s"])
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_REVISION");
    if let Some(token) = token {
        command.env("HF_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run sentiment-server download"))
        .await
        .expect("join")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn leftovers(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .expect("read parent")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_a_gated_model_verifies_it_and_the_server_serves_it() {
    let hub = Arc::new(Hub::default());
    let commit = "0123456789abcdef0123456789abcdef01234567";
    // A BERT model as many are published: vocab.txt and no tokenizer.json.
    let mut repo = repo_from(
        &common::minilm(),
        &[
            "config.json",
            "model.safetensors",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.txt",
        ],
        commit,
    );
    repo.gated = true;
    hub.repos
        .lock()
        .unwrap()
        .insert("acme/minilm-sst2".into(), repo);
    hub.flaky.lock().unwrap().insert("model.safetensors".into());
    let endpoint = start_hub(hub.clone()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let to = tmp.path().join("models/sst2");

    let refused = download(&endpoint, "acme/minilm-sst2", &to, None).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("HF_TOKEN"),
        "should say how to authenticate: {}",
        stderr(&refused)
    );
    assert!(!to.exists());

    let output = download(&endpoint, "acme/minilm-sst2", &to, Some(TOKEN)).await;
    assert!(
        output.status.success(),
        "download failed: {}",
        stderr(&output)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        to.display().to_string()
    );
    assert!(
        !stderr(&output).contains(TOKEN),
        "the token must never be logged"
    );
    let mut names: Vec<String> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".sentiment-server-download.json",
            "config.json",
            "model.safetensors",
            "special_tokens_map.json",
            "tokenizer_config.json",
            "vocab.txt"
        ]
    );
    for name in ["model.safetensors", "vocab.txt"] {
        assert_eq!(
            std::fs::read(to.join(name)).unwrap(),
            std::fs::read(common::minilm().join(name)).unwrap(),
            "{name}"
        );
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(to.join(".sentiment-server-download.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["commit"], commit);
    assert!(
        leftovers(to.parent().unwrap()).is_empty(),
        "staging directories left behind"
    );
    let requests = hub.requests.lock().unwrap().clone();
    let resolves: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("resolve"))
        .collect();
    assert!(
        resolves.iter().all(|r| r.contains(commit)),
        "files must be fetched at the resolved commit: {resolves:?}"
    );
    assert_eq!(
        resolves
            .iter()
            .filter(|r| r.ends_with("model.safetensors"))
            .count(),
        2,
        "one 503, one retry"
    );

    // A rerun (a restarted init container) finds the same commit and fetches nothing.
    let again = download(&endpoint, "acme/minilm-sst2", &to, Some(TOKEN)).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let after = hub.requests.lock().unwrap().len();
    assert_eq!(after, requests.len() + 1, "only the repository lookup");

    // The server serves what was downloaded and answers as PyTorch does.
    let server = common::TestServer::start(common::config_for(to.clone())).await;
    let references = common::references(&common::minilm());
    for reference in references
        .iter()
        .filter(|r| !r.text.trim().is_empty())
        .take(8)
    {
        let body = server
            .predict_json(&json!({"inputs": reference.text}))
            .await;
        assert_eq!(body[0]["label"], reference.label.as_str(), "{body}");
        let best = reference.scores.iter().copied().fold(f32::MIN, f32::max);
        let score = body[0]["score"].as_f64().unwrap() as f32;
        assert!((score - best).abs() < 1e-4, "{score} vs PyTorch {best}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_truncated_download_never_replaces_a_good_model() {
    let hub = Arc::new(Hub::default());
    let fixture = common::fixture("bert-tiny-3class");
    let names = [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ];
    hub.repos
        .lock()
        .unwrap()
        .insert("acme/tiny".into(), repo_from(&fixture, &names, "aaaa"));
    let endpoint = start_hub(hub.clone()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let to = tmp.path().join("tiny");

    let good = download(&endpoint, "acme/tiny", &to, None).await;
    assert!(good.status.success(), "{}", stderr(&good));

    // A new commit appears, but its weights arrive damaged: the old model must stay whole.
    hub.repos
        .lock()
        .unwrap()
        .insert("acme/tiny".into(), repo_from(&fixture, &names, "bbbb"));
    for (fault, expected) in [
        (&hub.corrupt, "sha256 mismatch"),
        (&hub.truncate, "truncated"),
    ] {
        fault.lock().unwrap().insert("model.safetensors".into());
        let output = download(&endpoint, "acme/tiny", &to, None).await;
        fault.lock().unwrap().clear();
        assert!(!output.status.success(), "a damaged download must fail");
        assert!(
            stderr(&output).contains(expected),
            "expected `{expected}` in: {}",
            stderr(&output)
        );
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(to.join(".sentiment-server-download.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["commit"], "aaaa",
            "the earlier download must be untouched"
        );
        assert_eq!(
            std::fs::read(to.join("model.safetensors")).unwrap(),
            std::fs::read(fixture.join("model.safetensors")).unwrap()
        );
        assert!(
            leftovers(tmp.path()).is_empty(),
            "staging directories left behind"
        );
    }

    // Fixed upstream: the next run replaces the model in one step.
    let updated = download(&endpoint, "acme/tiny", &to, None).await;
    assert!(updated.status.success(), "{}", stderr(&updated));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(to.join(".sentiment-server-download.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["commit"], "bbbb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_repositories_and_targets_are_refused_with_the_reason() {
    let hub = Arc::new(Hub::default());
    let fixture = common::fixture("bert-tiny-3class");
    // PyTorch weights only.
    hub.repos.lock().unwrap().insert(
        "acme/bin-only".into(),
        repo_from(&fixture, &["config.json", "tokenizer.json"], "cccc"),
    );
    hub.repos.lock().unwrap().insert(
        "acme/tiny".into(),
        repo_from(
            &fixture,
            &["config.json", "model.safetensors", "tokenizer.json"],
            "dddd",
        ),
    );
    let endpoint = start_hub(hub.clone()).await;
    let tmp = tempfile::tempdir().expect("tempdir");

    let cases = [
        (
            "acme/bin-only",
            tmp.path().join("a"),
            "no safetensors weights",
        ),
        ("acme/missing", tmp.path().join("b"), "not found"),
        ("../etc/passwd", tmp.path().join("c"), "not a Hub model id"),
    ];
    for (repo, to, expected) in cases {
        let output = download(&endpoint, repo, &to, None).await;
        assert!(!output.status.success(), "{repo}");
        assert!(
            stderr(&output).contains(expected),
            "{repo}: expected `{expected}` in {}",
            stderr(&output)
        );
        assert!(!to.exists(), "{repo}");
    }

    // A directory the user filled by hand is never overwritten without --force.
    let mine = tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let output = download(&endpoint, "acme/tiny", &mine, None).await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--force"), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );
}

/// Runs the real server binary in `cwd` with `args` and the Hub at `endpoint`, waits until
/// `/ready` answers 200, and returns the process with its base URL; None when it exits first
/// (with its stderr).
async fn serve_in(
    cwd: &Path,
    endpoint: &str,
    args: &[&str],
) -> Result<(std::process::Child, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sentiment-server"))
        .current_dir(cwd)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("MODEL_ID", "acme/minilm-sst2")
        .env("RUST_LOG", "info")
        .env_remove("MODEL_DIR")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_REVISION")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sentiment-server");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            return Err(format!("exited with {status}: {err}"));
        }
        if let Ok(r) = client.get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                return Ok((child, base));
            }
        }
        assert!(std::time::Instant::now() < deadline, "not ready after 90 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_model_dir_fetches_the_default_model_once_then_serves_it_offline() {
    let hub = Arc::new(Hub::default());
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let repo = repo_from(
        &common::minilm(),
        &["config.json", "model.safetensors", "tokenizer.json"],
        commit,
    );
    hub.repos
        .lock()
        .unwrap()
        .insert("acme/minilm-sst2".into(), repo);
    let endpoint = start_hub(hub.clone()).await;
    // A fresh clone: models/ exists, models/default does not.
    let clone = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(clone.path().join("models")).unwrap();

    let (mut server, base) = serve_in(clone.path(), &endpoint, &[])
        .await
        .expect("first start");
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .json(&json!({"inputs": "a gorgeous, witty, seductive movie."}))
        .send()
        .await
        .expect("predict")
        .json()
        .await
        .expect("json");
    assert_eq!(body[0]["label"], "POSITIVE", "{body}");
    let info: Value = reqwest::get(format!("{base}/info"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["model_id"], "default", "{info}");
    server.kill().ok();
    server.wait().ok();
    let fetched = std::fs::read(clone.path().join("models/default/model.safetensors")).unwrap();
    assert_eq!(
        fetched,
        std::fs::read(common::minilm().join("model.safetensors")).unwrap()
    );
    let requests = hub.requests.lock().unwrap().len();

    // The next start needs no Hub: it serves what is there.
    let (mut server, _) = serve_in(clone.path(), "http://127.0.0.1:9", &[])
        .await
        .expect("offline restart");
    server.kill().ok();
    server.wait().ok();
    assert_eq!(hub.requests.lock().unwrap().len(), requests);

    // An explicit --model-dir that does not exist is an error, never a download.
    let error = serve_in(clone.path(), &endpoint, &["--model-dir", "models/other"])
        .await
        .expect_err("start-up must fail");
    assert!(error.contains("models/other"), "{error}");
    assert_eq!(hub.requests.lock().unwrap().len(), requests);
    assert!(!clone.path().join("models/other").exists());

    // Without a reachable Hub the first start fails and names the ways out.
    let empty = tempfile::tempdir().expect("tempdir");
    let error = serve_in(empty.path(), "http://127.0.0.1:9", &[])
        .await
        .expect_err("start-up must fail");
    assert!(error.contains("--model-dir DIR"), "{error}");
    assert!(
        error.contains("sentiment-server download acme/minilm-sst2"),
        "{error}"
    );
}
