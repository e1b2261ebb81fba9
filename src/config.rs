//! Command line and environment configuration: one struct, every flag also an env variable.

use crate::model::CpuKernels;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sentiment-server",
    version,
    about = "Serve a Hugging Face text classifier (BERT, DistilBERT, RoBERTa, XLM-RoBERTa) over HTTP",
    long_about = "Serve a Hugging Face sequence-classification model over HTTP.\n\n\
        Point --model-dir at a directory holding config.json, tokenizer.json and model.safetensors \
        (or a sharded model.safetensors.index.json). Clients POST text to /predict; orchestrators \
        watch /health, /live and /ready; Prometheus scrapes /metrics.\n\n\
        Every flag can also be set by the environment variable shown in its help."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Exit 0 if the server on this machine (at --port) answers /health with 200, else 1.
    /// Made for container HEALTHCHECKs, where no curl or wget is installed.
    Healthcheck {
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Download a model from the Hugging Face Hub (or a mirror: HF_ENDPOINT) into a directory
    /// this server can serve. Verifies every file's size and hash, and moves the directory into
    /// place only when complete. Made for Kubernetes init containers: a rerun with the model
    /// already at the same commit does nothing.
    Download(crate::download::DownloadArgs),
}

#[derive(Parser, Debug, Clone)]
pub struct Config {
    /// Model directory: config.json, tokenizer.json, model.safetensors (or sharded
    /// model.safetensors.index.json), optional tokenizer_config.json. Only read, so it can be
    /// mounted read-only.
    #[arg(long, env = "MODEL_DIR", default_value = "models/default")]
    pub model_dir: PathBuf,

    /// Address to listen on. 0.0.0.0 for containers; 127.0.0.1 to keep it on this machine.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// TCP port to listen on (0 picks a free one and logs it).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Where to run the model: auto (first CUDA GPU if built with CUDA and one is visible,
    /// else CPU), cpu, cuda or cuda:N. Asking for cuda without a usable GPU is an error,
    /// never a silent fallback.
    #[arg(long, env = "DEVICE", default_value = "auto")]
    pub device: String,

    /// Compute precision. f32 matches PyTorch to 1e-4 and is the right choice on most CPUs;
    /// f16/bf16 halve memory traffic and are fastest on GPUs. On a CPU, bf16 pays only with
    /// AVX512-BF16 (Intel Cooper Lake/Sapphire Rapids, AMD Zen 4 and later: about 1.3-1.5x f32);
    /// elsewhere it is emulated at f32 speed, and f16 falls back to a slow generic path (both
    /// warn at start-up).
    #[arg(long, env = "DTYPE", value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,

    /// CPU code that runs the model: auto picks the fastest level this CPU has (avx512, then
    /// avx2, neon, portable); naming a level forces it (to compare levels, or to pin one across
    /// a mixed fleet) and is a start-up error on a CPU that lacks it; candle runs candle's
    /// generic, padded ops instead (slower; for comparison). /info and the start-up log say
    /// which path runs. Ignored on GPUs.
    #[arg(long, env = "CPU_KERNELS", value_enum, default_value_t = CpuKernels::Auto)]
    pub cpu_kernels: CpuKernels,

    /// Most sequences in one forward pass. Larger batches raise throughput under load until
    /// the device saturates (CPU: 16-64; GPU: 128-512).
    #[arg(long, env = "MAX_BATCH_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_batch_size: u32,

    /// Most padded tokens (batch size x longest sequence) in one forward pass. Bounds memory
    /// and latency of a batch; must be at least the model's maximum input length.
    #[arg(long, env = "MAX_BATCH_TOKENS", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_tokens: u32,

    /// Longest time the batcher holds a batch open for requests that are already on their
    /// way. It never waits when nothing else is in flight, so single requests are not delayed.
    /// Raise it (5-20ms) for more batching under bursty load; 0 disables waiting.
    #[arg(long, env = "MAX_BATCH_DELAY", default_value = "5ms", value_parser = parse_duration)]
    pub max_batch_delay: Duration,

    /// Sequences waiting for inference before new requests are refused with 429: a hard bound
    /// on the queue's memory. --max-queue-wait usually refuses earlier.
    #[arg(long, env = "MAX_QUEUE_SIZE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queue_size: u32,

    /// Refuse new requests with 429 once the queue holds this much work, estimated from the
    /// measured throughput (a moving average). Bounds latency under overload, whatever the
    /// device's speed, and lets latency recover quickly once the load drops. 0 disables it.
    #[arg(long, env = "MAX_QUEUE_WAIT", default_value = "2s", value_parser = parse_duration)]
    pub max_queue_wait: Duration,

    /// Most texts in one /predict request; more is refused with 422.
    #[arg(long, env = "MAX_CLIENT_BATCH_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_client_batch_size: u32,

    /// Largest request body in bytes; more is refused with 413.
    #[arg(long, env = "PAYLOAD_LIMIT", default_value_t = 2_000_000)]
    pub payload_limit: usize,

    /// Longest a /predict request may take, queueing included, before it is answered with 504.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Longest a client may take to send a request's headers; slower connections are closed
    /// (slow-header attacks hold connections open this way). Keep-alive connections idle this
    /// long are closed too: keep it above the idle time-out of a proxy that pools connections
    /// to this server (AWS ALB: 60s), or lower that one.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Longest a client may take to send a request body, from the end of its headers; slower
    /// requests get 408 and the connection is closed. Raise it for large batches on slow links.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Most client connections open at once; more wait in the kernel's accept queue. Keep it
    /// below the process's file-descriptor limit (ulimit -n).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before the server
    /// exits anyway. Keep it below the orchestrator's grace period (Kubernetes: 30s default).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Threads for the model's matrix kernels. Default: all cores. Lower it when several
    /// servers share a machine.
    #[arg(long, env = "INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,

    /// PostgreSQL connection for the prediction log, as a URL
    /// (postgres://user@host:5432/db) or key=value string. Unset: no prediction log. Keep the
    /// password out of it (URLs show up in process listings): use --database-password-file.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// File holding the database password, e.g. a Docker or Kubernetes secret
    /// (/run/secrets/...). A trailing newline is ignored. The password is never logged.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// What the prediction log stores of each text: hash (its sha256 only, the default, for
    /// personal data) or full (the text and its sha256).
    #[arg(long, env = "PREDICTION_LOG_TEXT", value_enum, default_value_t = LogText::Hash)]
    pub prediction_log_text: LogText,

    /// Prediction-log rows held in memory while the database is slow or down. Beyond it new rows
    /// are dropped and counted (sentiment_prediction_log_dropped_rows_total); /predict never
    /// waits. Each row is about 0.5 KB (more with --prediction-log-text full).
    #[arg(long, env = "PREDICTION_LOG_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub prediction_log_buffer: u32,

    /// Most prediction-log rows in one INSERT. Rows that arrive while a write runs go into the
    /// next one, so batches grow with load without delaying anything under light load.
    #[arg(long, env = "PREDICTION_LOG_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub prediction_log_batch: u32,

    /// Require `Authorization: Bearer <key>` on /predict, POST / and /v2/.../infer (health, probes,
    /// metrics, /info and the playground stay open). At least 16 characters. Prefer
    /// --api-key-file: a flag's value shows up in process listings.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// File of accepted API keys, one per line (# comments allowed): several keys let clients
    /// rotate without downtime. Mount it from a secret.
    #[arg(long, env = "API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Origins browsers may call this API from (CORS), comma-separated, e.g.
    /// https://app.example.com; `*` allows any origin. Unset: no CORS
    /// headers, so browsers allow same-origin pages only (the playground at / works either way).
    #[arg(long, env = "CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,

    /// Export request traces over OpenTelemetry OTLP/HTTP to this collector, e.g.
    /// http://otel-collector:4318 (spans go to its /v1/traces). Unset: no export. Incoming W3C
    /// `traceparent` headers are honoured, so spans join the caller's trace.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Service name on exported traces.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "sentiment-server")]
    pub otel_service_name: String,

    /// Log format: text for people, json for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing syntax), e.g. info, debug, sentiment_server=debug,tower_http=info.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn candle(self) -> candle_core::DType {
        match self {
            Self::F32 => candle_core::DType::F32,
            Self::F16 => candle_core::DType::F16,
            Self::Bf16 => candle_core::DType::BF16,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogText {
    Hash,
    Full,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5ms, 2s, 1m)"))
}

impl Config {
    /// A configuration with every default, for tests and embedding.
    pub fn for_model(model_dir: impl Into<PathBuf>) -> Self {
        let mut config = Cli::parse_from(["sentiment-server"]).config;
        config.model_dir = model_dir.into();
        config
    }
}
