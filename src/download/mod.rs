//! `sentiment-server download`: fetch a model from the Hugging Face Hub into a directory the
//! server can serve, verified file by file and moved into place in one rename, so that a
//! download cut short never looks like a model (Kubernetes init containers, air-gapped mirrors).

mod hub;
mod progress;

use anyhow::{bail, Context};
use hub::{Hub, RepoInfo, Sibling, Transient};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::config::DownloadArgs;

/// Written last into a finished download: what it holds, so a rerun can tell it is current.
pub const MANIFEST: &str = ".sentiment-server-download.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Manifest {
    repo: String,
    revision: String,
    commit: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ManifestFile {
    name: String,
    size: u64,
    sha256: String,
}

/// Downloads (unless already current) and returns the model directory.
pub async fn run(args: &DownloadArgs) -> anyhow::Result<PathBuf> {
    validate_repo_id(&args.repo)?;
    if !args.force
        && args.to.exists()
        && !args.to.join(MANIFEST).is_file()
        && !is_empty_dir(&args.to)
    {
        bail!(
            "{} exists and was not made by `download`; remove it or pass --force",
            args.to.display()
        );
    }
    let hub = Hub::new(&args.endpoint, token(args)?, args.timeout)?;
    let info: RepoInfo = retry(args.retries, || hub.repo_info(&args.repo, &args.revision)).await?;
    tracing::info!(repo = %args.repo, revision = %args.revision, commit = %info.sha, endpoint = %args.endpoint, "resolved");
    if !args.force && is_current(&args.to, &args.repo, &info.sha)? {
        tracing::info!(dir = %args.to.display(), "already downloaded at this commit; nothing to do");
        return Ok(args.to.clone());
    }

    let staging = Staging::create(&args.to)?;
    let fetch = |name: String| {
        let (hub, info, staging) = (&hub, &info, &staging);
        async move {
            let sibling = find(info, &name)?;
            let expected = sibling.expected()?;
            let dest = staging.dir.join(&name);
            let sha256 = retry(args.retries, || {
                hub.fetch(&args.repo, &info.sha, &name, &expected, &dest)
            })
            .await?;
            Ok::<_, anyhow::Error>(ManifestFile {
                name,
                size: expected.size,
                sha256,
            })
        }
    };
    let mut files = Vec::new();
    for name in plan(&info)? {
        files.push(fetch(name).await?);
    }
    if files
        .iter()
        .any(|f| f.name == "model.safetensors.index.json")
    {
        for shard in shard_names(&staging.dir.join("model.safetensors.index.json"))? {
            files.push(fetch(shard).await?);
        }
    }
    let manifest = Manifest {
        repo: args.repo.clone(),
        revision: args.revision.clone(),
        commit: info.sha.clone(),
        files,
    };
    std::fs::write(
        staging.dir.join(MANIFEST),
        serde_json::to_vec_pretty(&manifest)?,
    )
    .context("cannot write the download manifest")?;
    staging.commit(&args.to, args.force)?;
    tracing::info!(dir = %args.to.display(), files = manifest.files.len(), "model ready");
    Ok(args.to.clone())
}

fn token(args: &DownloadArgs) -> anyhow::Result<Option<String>> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --token-file {}", path.display()))?;
        return Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()));
    }
    Ok(std::env::var("HF_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// `name` or `owner/name`, from the characters the Hub allows: nothing that could leave the
/// repository's URL path.
fn validate_repo_id(repo: &str) -> anyhow::Result<()> {
    let valid_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) {
        bail!("`{repo}` is not a Hub model id (expected owner/name, e.g. distilbert/distilbert-base-uncased-finetuned-sst-2-english)");
    }
    Ok(())
}

/// The files a classifier needs, as the Hub lists them: config, a tokenizer (tokenizer.json,
/// or vocab.txt for BERT-family models), and safetensors weights (one file or an index whose
/// shards follow once it is read).
fn plan(info: &RepoInfo) -> anyhow::Result<Vec<String>> {
    let has = |name: &str| info.siblings.iter().any(|s| s.rfilename == name);
    let mut files = vec!["config.json".to_string()];
    if !has("config.json") {
        bail!("the repository has no config.json: not a transformers model");
    }
    match ["tokenizer.json", "vocab.txt"].into_iter().find(|f| has(f)) {
        Some(tokenizer) => files.push(tokenizer.into()),
        None => bail!("the repository has neither tokenizer.json nor vocab.txt"),
    }
    files.extend(
        ["tokenizer_config.json", "special_tokens_map.json"]
            .into_iter()
            .filter(|f| has(f))
            .map(String::from),
    );
    match ["model.safetensors", "model.safetensors.index.json"].into_iter().find(|f| has(f)) {
        Some(weights) => files.push(weights.into()),
        None => bail!(
            "the repository has no safetensors weights (model.safetensors or model.safetensors.index.json); \
             convert its PyTorch weights with transformers: model.save_pretrained(dir, safe_serialization=True)"
        ),
    }
    Ok(files)
}

fn find<'a>(info: &'a RepoInfo, name: &str) -> anyhow::Result<&'a Sibling> {
    info.siblings
        .iter()
        .find(|s| s.rfilename == name)
        .with_context(|| format!("{name} is not in the repository listing"))
}

/// Shard names from a downloaded index, each a plain file name inside the repository (parsed
/// as loading parses it).
fn shard_names(index: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(index)?;
    crate::checkpoint::shard_names(&text)
        .map_err(|e| anyhow::anyhow!("model.safetensors.index.json: {e}"))
}

/// True when `dir` holds a finished download of `commit`, every file at its recorded size.
/// Whether `dir` holds a complete download of `repo` (any commit): what a start without
/// --model-dir serves without asking the Hub again, so that it also starts offline.
pub fn holds(dir: &Path, repo: &str) -> bool {
    std::fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok())
        .is_some_and(|manifest| manifest.repo == repo)
}

/// Whether `dir` was made by `download` (of any model).
pub fn made_by_download(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

fn is_current(dir: &Path, repo: &str, commit: &str) -> anyhow::Result<bool> {
    let Ok(bytes) = std::fs::read(dir.join(MANIFEST)) else {
        return Ok(false);
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
        return Ok(false);
    };
    Ok(manifest.repo == repo
        && manifest.commit == commit
        && manifest
            .files
            .iter()
            .all(|f| std::fs::metadata(dir.join(&f.name)).is_ok_and(|m| m.len() == f.size)))
}

/// Retries transient failures (network, 429, 5xx) with back-off: 1 s, 2 s, 4 s, ...
async fn retry<T, F, Fut>(retries: u32, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if tries < retries && e.downcast_ref::<Transient>().is_some() => {
                let wait = Duration::from_secs(1 << tries.min(5));
                tracing::warn!(error = %e, retry_in = ?wait, "transient failure; retrying");
                tokio::time::sleep(wait).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// A hidden sibling of the target directory: same filesystem, so the final rename is atomic.
struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(target: &Path) -> anyhow::Result<Self> {
        let (parent, name) = split(target)?;
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let dir = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir(&dir).with_context(|| {
            format!(
                "cannot create {} (is the parent of --to writable?)",
                dir.display()
            )
        })?;
        Ok(Self {
            dir,
            committed: false,
        })
    }

    /// Moves the finished download to `target`, replacing an earlier download there.
    fn commit(mut self, target: &Path, force: bool) -> anyhow::Result<()> {
        let (parent, name) = split(target)?;
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        let replacing = target.exists();
        if replacing {
            let ours = target.join(MANIFEST).is_file() || is_empty_dir(target);
            if !ours && !force {
                bail!(
                    "{} exists and was not made by `download`; remove it or pass --force",
                    target.display()
                );
            }
            std::fs::rename(target, &old).with_context(|| {
                format!("cannot move the old {} aside (a mount point? point --to at a directory inside the volume)", target.display())
            })?;
        }
        std::fs::rename(&self.dir, target)
            .with_context(|| format!("cannot rename into {}", target.display()))?;
        self.committed = true;
        if let Ok(parent) = std::fs::File::open(&parent) {
            // Makes the rename itself durable before the server is started on it.
            parent.sync_all().ok();
        }
        if replacing {
            std::fs::remove_dir_all(&old).ok();
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

fn split(target: &Path) -> anyhow::Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("--to {} must name a directory", target.display()))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_that_could_leave_the_url_path_are_refused() {
        for ok in [
            "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
            "gpt2",
            "a_b/c.d-e",
        ] {
            assert!(validate_repo_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a/b/c", "../x", "a/..", "a b/c", "a/b?x=1", "a/b#c", "/a", "a/",
        ] {
            assert!(validate_repo_id(bad).is_err(), "{bad}");
        }
    }
}
