//! The Hugging Face Hub's HTTP routes, as used by `huggingface_hub`: repository metadata from
//! `/api/models/{repo}/revision/{rev}?blobs=true`, files from `/{repo}/resolve/{commit}/{file}`
//! (LFS files redirect to a CDN). `HF_ENDPOINT` points all of it at a mirror.

use super::progress::Progress;
use anyhow::{anyhow, bail, Context};
use reqwest::{Client, Response, StatusCode};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// A repository at one commit.
#[derive(Debug, Deserialize)]
pub(super) struct RepoInfo {
    /// The commit the revision resolved to: every file is fetched at this commit, so a branch
    /// that moves during the download cannot mix two versions.
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Sibling {
    pub rfilename: String,
    pub size: Option<u64>,
    #[serde(rename = "blobId")]
    pub blob_id: Option<String>,
    pub lfs: Option<Lfs>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Lfs {
    pub sha256: String,
    pub size: u64,
}

/// What a downloaded file must match: its size and a hash the Hub publishes for it.
#[derive(Debug, Clone)]
pub(super) struct Expected {
    pub size: u64,
    pub check: Check,
}

#[derive(Debug, Clone)]
pub(super) enum Check {
    /// LFS files (weights): the sha256 of the content.
    Sha256(String),
    /// Files stored in git: the git blob id, sha1 over "blob {size}\0" + content.
    GitBlob(String),
}

impl Sibling {
    pub(super) fn expected(&self) -> anyhow::Result<Expected> {
        if let Some(lfs) = &self.lfs {
            return Ok(Expected {
                size: lfs.size,
                check: Check::Sha256(lfs.sha256.to_lowercase()),
            });
        }
        match (self.size, &self.blob_id) {
            (Some(size), Some(blob)) => Ok(Expected {
                size,
                check: Check::GitBlob(blob.to_lowercase()),
            }),
            _ => bail!(
                "the Hub listed {} without its size and hash (is HF_ENDPOINT a Hub?)",
                self.rfilename
            ),
        }
    }
}

pub(super) struct Hub {
    client: Client,
    endpoint: String,
    token: Option<String>,
}

impl Hub {
    pub(super) fn new(
        endpoint: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = Client::builder()
            .user_agent(concat!("sentiment-server/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub(super) async fn repo_info(&self, repo: &str, revision: &str) -> anyhow::Result<RepoInfo> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}?blobs=true",
            self.endpoint,
            encode(revision)
        );
        let response = self.get(&url).await?;
        let response = check_status(response, repo, revision).await?;
        response
            .json()
            .await
            .with_context(|| format!("{url}: not a Hub repository description"))
    }

    /// Streams `file` at `commit` into `dest`, checking size and hash; returns the sha256.
    pub(super) async fn fetch(
        &self,
        repo: &str,
        commit: &str,
        file: &str,
        expected: &Expected,
        dest: &Path,
    ) -> anyhow::Result<String> {
        let url = format!("{}/{repo}/resolve/{commit}/{file}", self.endpoint);
        let started = Instant::now();
        let mut response = check_status(self.get(&url).await?, repo, commit).await?;
        let mut out = std::fs::File::create(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let mut sha256 = Sha256::new();
        let mut blob = Sha1::new();
        blob.update(format!("blob {}\0", expected.size));
        let mut written: u64 = 0;
        let mut progress = Progress::start(file, expected.size);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                // A connection cut mid-file is worth another try.
                Err(e) => bail!(Transient(format!(
                    "{file}: download interrupted after {written} bytes: {}",
                    error_chain(&e)
                ))),
            };
            written += chunk.len() as u64;
            if written > expected.size {
                bail!(
                    "{file}: the server sent more than the {} bytes the Hub listed",
                    expected.size
                );
            }
            sha256.update(&chunk);
            if matches!(expected.check, Check::GitBlob(_)) {
                blob.update(&chunk);
            }
            out.write_all(&chunk)
                .with_context(|| format!("cannot write {}", dest.display()))?;
            progress.update(written);
        }
        drop(progress);
        if written != expected.size {
            bail!(
                "{file}: got {written} bytes, the Hub listed {} (truncated download)",
                expected.size
            );
        }
        out.sync_all()
            .with_context(|| format!("cannot flush {}", dest.display()))?;
        let sha256 = hex::encode(sha256.finalize());
        let (kind, actual, wanted) = match &expected.check {
            Check::Sha256(want) => ("sha256", sha256.clone(), want),
            Check::GitBlob(want) => ("git blob id", hex::encode(blob.finalize()), want),
        };
        if &actual != wanted {
            bail!("{file}: {kind} mismatch: expected {wanted}, got {actual} (corrupted download)");
        }
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            file,
            bytes = written,
            seconds = format!("{seconds:.1}"),
            mb_per_s = format!("{:.1}", written as f64 / 1e6 / seconds.max(1e-3)),
            "verified"
        );
        Ok(sha256)
    }

    async fn get(&self, url: &str) -> anyhow::Result<Response> {
        let mut request = self.client.get(url);
        if let Some(token) = &self.token {
            // reqwest drops this header when a redirect leaves the host (LFS CDN links are signed).
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .map_err(|e| anyhow!(Transient(format!("{url}: {}", error_chain(&e)))))
    }
}

/// A failure worth retrying: network errors, 429 and 5xx.
#[derive(Debug)]
pub(super) struct Transient(pub String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transient {}

async fn check_status(response: Response, repo: &str, revision: &str) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = response.url().to_string();
    // The Hub explains refusals in this header (or a JSON body).
    let detail = response
        .headers()
        .get("x-error-message")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    let message = match status {
        StatusCode::UNAUTHORIZED => format!("{repo}: unauthorized (private or gated model): set HF_TOKEN or --token-file to a token with access"),
        StatusCode::FORBIDDEN => format!("{repo}: forbidden: the token has no access (gated model: accept its terms on the Hub first)"),
        StatusCode::NOT_FOUND => format!("{repo}: not found at revision `{revision}` ({url})"),
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
            return Err(anyhow!(Transient(format!("{url}: {status} {detail}"))));
        }
        _ => format!("{url}: {status}"),
    };
    if detail.is_empty() {
        Err(anyhow!(message))
    } else {
        Err(anyhow!("{message}: {detail}"))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encodes a revision for one path segment (`refs/pr/1` becomes `refs%2Fpr%2F1`).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
