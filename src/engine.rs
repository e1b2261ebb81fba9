//! The inference pipeline behind the HTTP layer: tokenization, then the batcher, then the model.

use crate::batcher::{BatchLimits, Batcher};
use crate::checkpoint::{LoadError, ModelFiles};
use crate::config::Config;
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::{self, Compute, ModelBackend};
use crate::tokenize::TextTokenizer;
use crate::types::{InferenceError, ModelTask, ScoreFunction, TextInput, Truncation};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

mod tokens;
pub use tokens::TokenLogits;

/// What `/info` reports about the served model.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The model's name: its directory's name, or its name in the model repository.
    pub model_id: String,
    /// Its version: `1` for a model directory, else the repository's version directory.
    pub model_version: String,
    pub model_dir: String,
    /// `model_type` from config.json: bert, distilbert, roberta, xlm-roberta, electra,
    /// deberta-v2 or modernbert.
    pub model_type: String,
    /// `architectures[0]` from config.json.
    pub architecture: String,
    /// What the model does, from its architecture: `text-classification` (`/predict`,
    /// `/zero-shot-classification`) or `token-classification` (`/token-classification`).
    pub task: ModelTask,
    /// Labels in id order.
    pub labels: Vec<String>,
    pub score_function: ScoreFunction,
    /// Longest input in tokens, special tokens included; longer inputs are truncated.
    pub max_input_length: usize,
    pub device: String,
    pub dtype: String,
    /// How forward passes run, e.g. `host encoder, avx2 kernels (AVX2 + FMA), f32`, or
    /// `candle, cuda:0 f16` (GPUs; on a CPU only with `--cpu-kernels candle` or f16, at a
    /// fraction of the host encoder's speed, or for architectures the host encoder does not
    /// run, with the reason in parentheses: `candle (the host encoder runs ... only), cpu f32`).
    pub compute: String,
    /// The CPU kernel level that runs the model (`avx512`, `avx2`, `neon`, `portable`), or
    /// `candle`.
    pub cpu_kernels: String,
    /// SHA-256 of the weight file(s).
    pub weights_sha256: String,
    /// Size of the weight file(s), memory-mapped: what the weights take in memory on a CPU.
    pub weights_bytes: u64,
    pub load_seconds: f64,
    /// Where the version came from, when its directory holds the trainer's `training.json`
    /// (docs/training.md): the MLflow run that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<crate::checkpoint::Provenance>,
}

/// Requests whose texts total at most this many bytes are tokenized on the async runtime.
const INLINE_TOKENIZE_BYTES: usize = 2048;

pub struct Engine {
    tokenizer: Arc<TextTokenizer>,
    /// Long requests tokenizing on the blocking pool at once: one per core, the rest wait
    /// (their queue places taken, within their deadline).
    tokenizing: tokio::sync::Semaphore,
    batcher: Batcher,
    pub info: ModelInfo,
    metrics: Arc<ModelMetrics>,
    /// `sentiment_sequences_total` of the model's task.
    sequences: prometheus_client::metrics::counter::Counter,
}

impl Engine {
    /// Loads the model, checks it with one forward pass and starts the inference worker.
    /// Blocking: call it off the async runtime.
    pub fn load(config: &Config, metrics: Arc<Metrics>) -> Result<Self, LoadError> {
        Self::load_version(config, config.model_dir(), None, 1, metrics)
    }

    /// [`Engine::load`] for one version of a repository model in `dir`: `name` replaces the
    /// directory's name as the model's name (a versioned model's directory is its number).
    pub fn load_version(
        config: &Config,
        dir: &std::path::Path,
        name: Option<&str>,
        version: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LoadError> {
        let started = Instant::now();
        let device =
            crate::device::select(&config.device).map_err(|e| LoadError::new("--device", e))?;
        let files = ModelFiles::locate(dir)?;
        // The family decides whether the host encoder can run the model at all.
        let model_config = files.read_config()?;
        let decision = Compute::decide(
            &device,
            config.dtype,
            config.cpu_kernels,
            model_config.family,
        )
        .map_err(|e| LoadError::new("--cpu-kernels", e))?;
        for warning in &decision.warnings {
            tracing::warn!("{warning}");
        }
        let loaded = model::load(files, model_config, &decision.compute)?;
        let tokenizer = TextTokenizer::load(&loaded.files, &loaded.config)?;
        let max_input_length = tokenizer.max_length();
        check_batch_tokens(config, max_input_length)?;
        let compute = loaded.compute.to_string();
        let cpu_kernels = loaded.compute.kernels().to_string();
        let dtype = loaded.compute.dtype().to_string();
        let backend = ModelBackend {
            classifier: loaded.classifier,
        };
        // A first pass surfaces device or kernel problems now rather than on the first request.
        let probe = tokenizer
            .encode("warm-up")
            .map_err(|e| LoadError::new(crate::checkpoint::show(&loaded.files.tokenizer), e))?;
        crate::types::Backend::forward(&backend, &[&probe]).map_err(|e| {
            LoadError::new(
                loaded.files.weights_display(),
                format!("first forward pass failed: {e}"),
            )
        })?;
        let weights_sha256 = loaded.files.weights_sha256()?;
        let weights_bytes = weights_bytes(&loaded.files.weights);
        let training = crate::checkpoint::provenance::find(&loaded.files.dir);
        let load_seconds = started.elapsed().as_secs_f64();
        let model_id = name.map_or_else(|| loaded.files.name(), str::to_owned);
        let sequences = metrics.sequences_of(loaded.config.task.as_str());
        let metrics = metrics.for_model(&model_id, version);
        metrics.load_seconds.set(load_seconds);
        let info = ModelInfo {
            model_id,
            model_version: version.to_string(),
            model_dir: loaded.files.dir.display().to_string(),
            model_type: loaded.config.family.as_str().to_string(),
            architecture: loaded.config.class_name.clone(),
            task: loaded.config.task,
            labels: loaded.config.labels.clone(),
            score_function: loaded.config.score_function,
            max_input_length,
            device: crate::device::describe(&device),
            dtype,
            compute,
            cpu_kernels,
            weights_sha256,
            weights_bytes,
            load_seconds,
            training,
        };
        let limits = BatchLimits {
            max_batch_size: config.max_batch_size as usize,
            max_batch_tokens: config.max_batch_tokens as usize,
            max_batch_delay: config.max_batch_delay,
            max_queue_size: config.max_queue_size as usize,
            max_queue_wait: config.max_queue_wait,
        };
        let batcher = Batcher::start(backend, limits, metrics.clone());
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            tokenizer: Arc::new(tokenizer),
            tokenizing: tokio::sync::Semaphore::new(cores),
            batcher,
            info,
            metrics,
            sequences,
        })
    }

    pub fn limits(&self) -> BatchLimits {
        self.batcher.limits()
    }

    /// Logits for each input (a text or a pair), in order. The inputs take their queue places
    /// first (429 when the queue is full), so that tokenization counts toward admission; long
    /// inputs are tokenized on the blocking pool, a few at a time, and stop between inputs once
    /// the caller has gone (a client that left, a time-out). This future only waits.
    pub async fn classify(
        &self,
        inputs: Vec<TextInput>,
        truncation: Truncation,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        Ok(self.classify_counted(inputs, truncation).await?.0)
    }

    /// [`Engine::classify`], and the tokens the inputs took, special tokens included (what a
    /// rerank answer reports as its usage).
    pub async fn classify_counted(
        &self,
        inputs: Vec<TextInput>,
        truncation: Truncation,
    ) -> Result<(Vec<Vec<f32>>, usize), InferenceError> {
        let incoming = self.batcher.announce();
        let admitted = self.batcher.admit(inputs.len())?;
        self.sequences.inc_by(inputs.len() as u64);
        let started = Instant::now();
        let encoded = self.tokenize(inputs, truncation).await?;
        self.metrics
            .tokenization_seconds
            .observe(started.elapsed().as_secs_f64());
        if truncation == Truncation::Refuse {
            if let Some(i) = encoded.iter().position(|e| e.truncated) {
                return Err(InferenceError::Input(format!(
                    "inputs[{i}] is longer than the model's maximum of {} tokens and `truncate` is false",
                    self.info.max_input_length
                )));
            }
        }
        let tokens = encoded.iter().map(crate::types::Encoded::len).sum();
        let receivers = self.batcher.enqueue(admitted, encoded, incoming)?;
        let mut logits = Vec::with_capacity(receivers.len());
        for rx in receivers {
            logits.push(answer(rx).await?);
        }
        Ok((logits, tokens))
    }

    async fn tokenize(
        &self,
        inputs: Vec<TextInput>,
        truncation: Truncation,
    ) -> Result<Vec<crate::types::Encoded>, InferenceError> {
        let bytes: usize = inputs.iter().map(TextInput::len).sum();
        self.run_tokenizer(bytes, move |tokenizer, keep_going| {
            tokenizer.encode_inputs_while(&inputs, truncation, keep_going)
        })
        .await
    }

    /// Runs `encode` with the tokenizer and a test of whether the caller is still there: here
    /// for `bytes` of text up to [`INLINE_TOKENIZE_BYTES`], else on the blocking pool.
    async fn run_tokenizer<T: Send + 'static>(
        &self,
        bytes: usize,
        encode: impl FnOnce(&TextTokenizer, &dyn Fn() -> bool) -> Result<T, (usize, String)>
            + Send
            + 'static,
    ) -> Result<T, InferenceError> {
        let tokenizer = self.tokenizer.clone();
        // Cancelled when this future is dropped (its caller has gone): the blocking task then
        // stops before its next input.
        let gone = tokio_util::sync::CancellationToken::new();
        let caller_gone = gone.clone();
        let _cancel_when_dropped = gone.drop_guard();
        let encode = move || encode(&tokenizer, &|| !caller_gone.is_cancelled());
        // A few sentences tokenize in tens of microseconds: less than a round trip through the
        // blocking pool (~0.2 ms measured at one client), so they are tokenized here. Longer
        // inputs go to the blocking pool, where they cannot stall the runtime's threads.
        let encoded = if bytes <= INLINE_TOKENIZE_BYTES {
            encode()
        } else {
            let _slot = self
                .tokenizing
                .acquire()
                .await
                .map_err(|_| InferenceError::Stopped("the server is shutting down".into()))?;
            tokio::task::spawn_blocking(encode)
                .await
                .map_err(|e| InferenceError::Internal(format!("tokenizer task failed: {e}")))?
        };
        encoded.map_err(|(i, e)| InferenceError::Input(format!("cannot tokenize inputs[{i}]: {e}")))
    }

    /// Stops the worker after it has finished the queued work.
    pub fn shutdown(&self) {
        self.batcher.shutdown();
    }
}

/// Refuses a `--max-batch-tokens` below the model's longest input, which could never run.
/// One queued sequence's logits, once the worker has answered it.
async fn answer(
    rx: tokio::sync::oneshot::Receiver<crate::types::Reply>,
) -> Result<Vec<f32>, InferenceError> {
    rx.await
        .map_err(|_| InferenceError::Internal("the inference worker dropped a request".into()))?
        .map_err(InferenceError::Backend)
}

fn check_batch_tokens(config: &Config, max_input_length: usize) -> Result<(), LoadError> {
    if (config.max_batch_tokens as usize) < max_input_length {
        return Err(LoadError::new(
            "--max-batch-tokens",
            format!(
                "{} is below the model's maximum input length {max_input_length}: a long input could never run",
                config.max_batch_tokens
            ),
        ));
    }
    Ok(())
}

/// The weight files' total size on disk, for `/info`.
fn weights_bytes(weights: &[std::path::PathBuf]) -> u64 {
    weights
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum()
}
