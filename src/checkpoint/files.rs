//! The model directory: which files it holds, reading them, and saying clearly what is wrong.
//! Everything here only reads, so the directory can be mounted read-only.

use super::config::ModelConfig;
use candle_core::safetensors::MmapedSafetensors;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A start-up failure: the file at fault and what is wrong with it, printed as one line.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub file: String,
    pub problem: String,
}

impl LoadError {
    pub fn new(file: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep it on one line: the message may come from a library that wraps lines.
        let problem = self
            .problem
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        write!(f, "{}: {}", self.file, problem)
    }
}

impl std::error::Error for LoadError {}

/// The files of a Hugging Face model directory, checked to exist.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// `tokenizer.json`, or `vocab.txt` for BERT-family checkpoints published without one.
    pub tokenizer: PathBuf,
    pub tokenizer_config: Option<PathBuf>,
    /// One `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    pub weights: Vec<PathBuf>,
}

impl ModelFiles {
    pub fn locate(dir: &Path) -> Result<Self, LoadError> {
        let shown = dir.display().to_string();
        let meta = std::fs::metadata(dir)
            .map_err(|e| LoadError::new(&shown, format!("cannot open model directory: {e}")))?;
        if !meta.is_dir() {
            return Err(LoadError::new(&shown, "is not a directory"));
        }
        let required = |name: &str| -> Result<PathBuf, LoadError> {
            let path = dir.join(name);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Ok(path),
                Ok(_) => Err(LoadError::new(path.display().to_string(), "is not a file")),
                Err(e) => Err(LoadError::new(
                    path.display().to_string(),
                    format!("required model file cannot be read: {e}"),
                )),
            }
        };
        let config = required("config.json")?;
        let tokenizer = match required("tokenizer.json") {
            Ok(path) => path,
            Err(missing) => match required("vocab.txt") {
                Ok(vocab) => vocab,
                Err(_) => return Err(missing),
            },
        };
        let tokenizer_config = Some(dir.join("tokenizer_config.json")).filter(|p| p.is_file());
        let weights = if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else if dir.join("model.safetensors.index.json").is_file() {
            shards(dir)?
        } else {
            return Err(LoadError::new(
                dir.join("model.safetensors").display().to_string(),
                "no weights: need model.safetensors or model.safetensors.index.json \
                 (PyTorch .bin weights are not read: convert them to safetensors)",
            ));
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            tokenizer_config,
            weights,
        })
    }

    /// The tokenizer comes from a WordPiece `vocab.txt`, not `tokenizer.json`.
    pub fn tokenizer_is_vocab(&self) -> bool {
        self.tokenizer.file_name().is_some_and(|n| n == "vocab.txt")
    }

    /// The model's name: its directory's name.
    pub fn name(&self) -> String {
        dir_name(&self.dir)
    }

    pub fn read_config(&self) -> Result<ModelConfig, LoadError> {
        let text = read_text(&self.config)?;
        ModelConfig::from_json(&text).map_err(|e| LoadError::new(show(&self.config), e))
    }

    /// Memory-maps every weight file, checking each header on its own so that an error
    /// names the file at fault (a truncated file fails here).
    #[allow(unsafe_code)]
    pub fn open_weights(&self) -> Result<MmapedSafetensors, LoadError> {
        for path in &self.weights {
            // SAFETY: the mapping is read-only; the file must not be modified while served,
            // which holds for a model directory mounted read-only.
            unsafe { MmapedSafetensors::new(path) }.map_err(|e| {
                LoadError::new(show(path), format!("invalid safetensors file: {e}"))
            })?;
        }
        // SAFETY: as above.
        unsafe { MmapedSafetensors::multi(&self.weights) }
            .map_err(|e| LoadError::new(self.weights_display(), e.to_string()))
    }

    /// How the weights are named in messages.
    pub fn weights_display(&self) -> String {
        match self.weights.as_slice() {
            [one] => show(one),
            many => format!(
                "{} ({} shards)",
                show(&self.dir.join("model.safetensors.index.json")),
                many.len()
            ),
        }
    }

    /// SHA-256 over the weight files in order: identifies exactly which weights are served.
    pub fn weights_sha256(&self) -> Result<String, LoadError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for path in &self.weights {
            let mut file =
                std::fs::File::open(path).map_err(|e| LoadError::new(show(path), e.to_string()))?;
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| LoadError::new(show(path), e.to_string()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// A model directory's name, links resolved (`models/default` pointing at `minilm` is
/// `minilm`): the name a `--model-dir` model is served under.
pub fn dir_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

pub(crate) fn show(path: &Path) -> String {
    path.display().to_string()
}

pub(crate) fn read_text(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path)
        .map_err(|e| LoadError::new(show(path), format!("cannot read: {e}")))
}

/// The shard file names a `model.safetensors.index.json` lists in its `weight_map`, sorted and
/// without repeats; each must be a plain file name (shards sit inside the model directory).
/// Shared by loading and by `download`, which fetches them.
pub fn shard_names(index_json: &str) -> Result<Vec<String>, String> {
    let json: serde_json::Value =
        serde_json::from_str(index_json).map_err(|e| format!("invalid JSON: {e}"))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no `weight_map` object")?;
    let mut names = BTreeSet::new();
    for file in map.values() {
        let name = file
            .as_str()
            .ok_or("weight_map values must be file names")?;
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(format!("shard name `{name}` is not a plain file name"));
        }
        names.insert(name.to_string());
    }
    if names.is_empty() {
        return Err("weight_map is empty".into());
    }
    Ok(names.into_iter().collect())
}

/// Shard files named by `model.safetensors.index.json`'s `weight_map`, in name order.
fn shards(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let index = dir.join("model.safetensors.index.json");
    let names = shard_names(&read_text(&index)?).map_err(|e| LoadError::new(show(&index), e))?;
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(LoadError::new(
                    show(&path),
                    "shard listed in model.safetensors.index.json is missing",
                ))
            }
        })
        .collect()
}
