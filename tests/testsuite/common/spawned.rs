//! The real binary serving a model repository, for what only a process shows (signals).

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The real binary, killed when dropped (also when a test panics).
pub struct Spawned {
    pub child: std::process::Child,
    pub base: String,
    pub client: reqwest::Client,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    pub fn start(repo: &Path, args: &[&str]) -> Self {
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_sentiment-server"))
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .arg("--model-repository")
            .arg(repo)
            .args(args)
            .env_remove("API_KEY")
            .env_remove("DATABASE_URL")
            // As the images set it: a MODEL_DIR from the environment gives way to the repository.
            .env("MODEL_DIR", "/models/model")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sentiment-server");
        let stdout = child.stdout.take().expect("stdout");
        // Guarded from here: a panic below still kills the child.
        let mut spawned = Self {
            child,
            base: String::new(),
            client: reqwest::Client::new(),
        };
        let addr = super::listening_addresses(stdout)
            .recv_timeout(Duration::from_secs(60))
            .expect("listening log line");
        spawned.base = format!("http://{addr}");
        spawned
    }

    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.client.get(url),
            // The repository routes take JSON only, an empty body included.
            _ => self
                .client
                .post(url)
                .header("content-type", "application/json"),
        };
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn states(&self, model: &str) -> Vec<(u64, String)> {
        let (_, info) = self.call("GET", "/info", None, None).await;
        super::version_states(&info, model)
    }
}
