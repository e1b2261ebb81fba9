//! Command line and environment configuration: one struct, every flag also an env variable.

use crate::model::{CpuKernels, Dtype};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod values;
pub(crate) use values::parse_duration;
use values::{parse_positive_duration, parse_version_policy};
pub use values::{LogFormat, LogText, ReadyWhen, VersionPolicy};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sentiment-server",
    version,
    about = "Serve a Hugging Face text classifier (BERT, DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA, DeBERTa-v2/v3, ModernBERT) over HTTP",
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

impl Cli {
    /// The command line and the environment, with one conflict settled: a `MODEL_DIR` from
    /// the environment (the images set one for their default layout) gives way to a model
    /// repository, which neither compose nor Kubernetes could otherwise serve from those
    /// images; `--model-dir` given on the command line still conflicts.
    pub fn parse_settled() -> Self {
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let from_env = matches.value_source("model_dir") == Some(ValueSource::EnvVariable);
        if cli.config.model_repository.is_some() && from_env {
            cli.config.model_dir = None;
        }
        cli
    }
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
    Download(DownloadArgs),
}

#[derive(Parser, Debug, Clone)]
pub struct Config {
    /// Model directory: config.json, tokenizer.json, model.safetensors (or sharded
    /// model.safetensors.index.json), optional tokenizer_config.json. Only read, so it can be
    /// mounted read-only. Given and absent: start-up fails (no surprise downloads in
    /// production). Not given: models/default, fetched from the Hub on the first start
    /// (--model-id).
    #[arg(long, env = "MODEL_DIR")]
    pub model_dir: Option<PathBuf>,

    /// Model repository: serve every model in DIR, each in DIR/<name>/ (a model directory as
    /// for --model-dir, served as version 1) or DIR/<name>/<version>/ (versions 1, 2, ...;
    /// --version-policy picks which are served). Names are directory names of A-Z, a-z, 0-9,
    /// `.`, `_`, `-` (at most 64, starting with a letter or digit); other entries are skipped
    /// with a warning, hidden ones and names ending in .tmp, .partial, .part or .incomplete
    /// (copies in progress) silently. Watched while serving: see --repository-poll-interval.
    /// Cannot be combined with --model-dir, which serves one model.
    #[arg(long, env = "MODEL_REPOSITORY")]
    pub model_repository: Option<PathBuf>,

    /// The model /predict, POST / and /zero-shot-classification serve, and whose loading
    /// /ready waits for. Needed when the repository holds several models; with one, that one.
    #[arg(long, env = "DEFAULT_MODEL")]
    pub default_model: Option<String>,

    /// Which versions of each repository model are loaded: latest (the highest), latest:N
    /// (the N highest; a path without /versions/<v> reaches the highest ready one) or all.
    /// Each loaded version holds its weights (memory-mapped) and its own batching queue.
    #[arg(long, env = "VERSION_POLICY", default_value = "latest", value_parser = parse_version_policy)]
    pub version_policy: VersionPolicy,

    /// How often the model repository is rescanned for new, changed and removed versions
    /// (hot reload; SIGHUP and POST /v2/repository/index rescan at once too). A scan reads
    /// directory listings and file sizes and times, no weights, so 1-10s costs little; a new
    /// version takes traffic at most this long (plus its load time) after it appears. 0
    /// disables polling (SIGHUP and the repository routes still reload). Ignored without
    /// --model-repository.
    #[arg(long, env = "REPOSITORY_POLL_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub repository_poll_interval: Duration,

    /// When /ready (and /health) answer 200: all (the default), once every version selected
    /// at start-up has finished loading, so that a replica joins its load balancer ready for
    /// every model it serves; a version that fails to load does not hold readiness (it is
    /// reported in /info, the log and sentiment_model_load_failures_total, and loaded again
    /// when its files change). default: once the default model has a loaded version, the
    /// others loading behind it (their routes answer 503 meanwhile).
    #[arg(long, env = "READY_WHEN", value_enum, default_value_t = ReadyWhen::All)]
    pub ready_when: ReadyWhen,

    /// The Hub model served when --model-dir is not given: fetched once into models/default
    /// (verified, atomic, as `download` does; HF_ENDPOINT, HF_REVISION, HF_TOKEN and
    /// HF_TOKEN_PATH apply), then served from there, also offline. Default: transformers'
    /// own sentiment-analysis model.
    #[arg(long, env = "MODEL_ID", default_value = DEFAULT_MODEL_ID)]
    pub model_id: String,

    /// Address to listen on. 0.0.0.0 for containers; 127.0.0.1 to keep it on this machine.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// TCP port to listen on (0 picks a free one and logs it).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Also serve the Open Inference Protocol over gRPC (KServe v2 / Triton
    /// `inference.GRPCInferenceService`, and `grpc.health.v1` for probes) on this port, on
    /// --host. Off unless set; 8001 is Triton's convention, and the images set it. The same
    /// value as --port serves both protocols on one port (for platforms that allow one, like
    /// Knative). 0 picks a free port and logs it.
    #[arg(long, env = "GRPC_PORT")]
    pub grpc_port: Option<u16>,

    /// Where to run the model: auto (first CUDA GPU if built with CUDA and one is visible,
    /// else CPU), cpu, cuda or cuda:N. Asking for cuda without a usable GPU is an error,
    /// never a silent fallback.
    #[arg(long, env = "DEVICE", default_value = "auto")]
    pub device: String,

    /// Compute precision. f32 matches PyTorch to 1e-4 and is the right choice on most CPUs;
    /// f16/bf16 halve memory traffic and are fastest on GPUs. On a CPU, bf16 pays only with
    /// AVX512-BF16 (Intel Cooper Lake, AMD Zen 4 and later: about 1.3-1.5x f32) and most with
    /// AMX (Intel Sapphire Rapids and later: about 3x f32); elsewhere it is emulated at f32
    /// speed, and f16 falls back to a slow generic path (both warn at start-up). int8 (CPU host encoder only) quantizes the linear layers' weights per
    /// output channel at load and their inputs per row at run time, as PyTorch's
    /// quantize_dynamic does but with per-row scales, keeping over 99% of f32's decisions
    /// (BENCHMARKS.md): about 2x f32's throughput with AVX512-VNNI, 3x or more with AMX, and
    /// 1.4x with AVX2 alone (7-bit inputs there), with a quarter of the weight memory. Without AVX2 it warns and
    /// runs plain loops (slower than f32); on GPUs and candle's path it warns and runs f32.
    #[arg(long, env = "DTYPE", value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,

    /// CPU code that runs the model: auto picks the fastest level this CPU has (avx512, then
    /// avx2, neon, portable), with AMX's tiles for --dtype int8 and bf16 where the CPU has them
    /// (Intel Xeon since Sapphire Rapids); naming a level forces it (to compare levels, or to
    /// pin one across a mixed fleet) and is a start-up error on a CPU that lacks it: avx512
    /// never uses AMX, amx is avx512 with AMX's tiles for int8 and bf16. candle runs candle's
    /// generic, padded ops instead (slower; for comparison). /info and the start-up log say
    /// which path runs. Ignored on GPUs (a warning says so).
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

    /// Most texts or text pairs in one request (/predict, POST /, v2 infer), and most
    /// (input, candidate label) pairs in one zero-shot request; more is refused (422; 400 on
    /// the Open Inference Protocol).
    #[arg(long, env = "MAX_CLIENT_BATCH_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_client_batch_size: u32,

    /// Most candidate labels in one zero-shot request; more is refused with 422. Each label
    /// costs one forward pass per input (the input paired with the label's hypothesis), and
    /// inputs x labels must also stay within --max-client-batch-size: raise both together to
    /// allow long label lists, and keep them where a request's pairs still run within
    /// --request-timeout.
    #[arg(long, env = "MAX_CANDIDATE_LABELS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_candidate_labels: u32,

    /// Most documents in one rerank request (TEI's default); more is refused with 422 (400 on
    /// the Open Inference Protocol). Each is one forward pass; see docs/configuration.md.
    #[arg(long, env = "MAX_RERANK_DOCUMENTS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rerank_documents: u32,

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

    /// Longest an HTTP/2 or gRPC connection may stay open with no request in flight; it is then
    /// closed with GOAWAY, which HTTP/2 and gRPC clients follow by reconnecting when they next
    /// need to. Without it, idle connections that answer pings hold a --max-connections slot
    /// for ever. 30s, as --header-read-timeout bounds an idle HTTP/1 keep-alive connection;
    /// keep it above the idle time-out of a proxy that pools HTTP/2 connections to this server.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Longest a client may take to send a request body (a gRPC message included), from the end
    /// of its headers; slower requests get 408 (gRPC: DEADLINE_EXCEEDED) and, over HTTP/1, the
    /// connection is closed. Raise it for large batches on slow links.
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

    /// On SIGTERM/SIGINT, how long to keep serving before the drain starts: /ready, /health and
    /// gRPC health `ready` answer 503 at once, while connections are still accepted and requests
    /// answered, so that a load balancer that health-checks /ready takes this replica out of
    /// rotation before it stops accepting. Set it above the balancer's check interval x the
    /// failed checks it needs plus one check timeout (HAProxy: inter x fall + timeout check;
    /// deploy/swarm: 1s x 1 + 2s, so 4s). 0 (the default) drains at once: right where the
    /// orchestrator removes the replica from its endpoints before the signal (the Kubernetes
    /// manifests' preStop sleep does that). The process may take --shutdown-delay +
    /// --shutdown-timeout after the signal: keep the orchestrator's grace period above both.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Threads for the model's matrix kernels. Default: all cores. Lower it when several
    /// servers share a machine.
    #[arg(long, env = "INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,

    /// PostgreSQL connection for the prediction log, as a URL
    /// (postgres://user@host:5432/db) or key=value string. Unset: no prediction log. Keep the
    /// password out of it (URLs show up in process listings): use --database-password-file.
    /// TLS as in libpq: sslmode=disable|prefer (default)|require|verify-ca|verify-full and
    /// sslrootcert=/path/ca.pem (else Mozilla's and the system's roots); use verify-full for
    /// a database reached over a network you do not own.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// File holding the database password, e.g. a Docker or Kubernetes secret
    /// (/run/secrets/...). A trailing newline is ignored. The password is never logged.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// What the prediction log stores of each text: hash (its hash only, the default, for
    /// personal data) or full (the text and its hash).
    #[arg(long, env = "PREDICTION_LOG_TEXT", value_enum, default_value_t = LogText::Hash)]
    pub prediction_log_text: LogText,

    /// Secret key file (16+ bytes) for HMAC-SHA256 text hashes; unset: plain SHA-256 (guessable).
    #[arg(long, env = "PREDICTION_LOG_HASH_KEY_FILE")]
    pub prediction_log_hash_key_file: Option<PathBuf>,

    /// Prediction-log rows held in memory while the database is slow or down. Beyond it new rows
    /// are dropped and counted (sentiment_prediction_log_dropped_rows_total); /predict never
    /// waits. Each row is about 0.5 KB (more with --prediction-log-text full).
    #[arg(long, env = "PREDICTION_LOG_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub prediction_log_buffer: u32,

    /// Most prediction-log rows in one INSERT. Rows that arrive while a write runs go into the
    /// next one, so batches grow with load without delaying anything under light load.
    #[arg(long, env = "PREDICTION_LOG_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub prediction_log_batch: u32,

    /// Require `Authorization: Bearer <key>` on /predict, /models/<name>/predict, POST /, /zero-shot-classification,
    /// /v2/.../infer and the repository routes /v2/repository/... (health, probes, metrics, /info and the playground stay open). At least 16 characters. Prefer
    /// --api-key-file: a flag's value shows up in process listings.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// File of accepted API keys, one per line (# comments allowed): several keys let clients
    /// rotate without downtime. Mount it from a secret.
    #[arg(long, env = "API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// File of keys for the model repository's routes that change what is served (load,
    /// unload, and the index, which rescans), one per line as in --api-key-file; callers send
    /// `Authorization: Bearer <key>`. Unset: those routes take the API keys (--api-key,
    /// --api-key-file); with no key at all they answer 403 unless
    /// --allow-unauthenticated-admin. They take `Content-Type: application/json` only, so that
    /// no simple cross-site request (a form, a text/plain fetch) reaches them.
    #[arg(long, env = "ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,

    /// Let anyone who reaches the port load, unload and rescan repository models when no key
    /// guards those routes (--admin-key-file, --api-key, --api-key-file). Only for a port that
    /// no one else reaches; off, they answer 403 without a key.
    #[arg(long, env = "ALLOW_UNAUTHENTICATED_ADMIN")]
    pub allow_unauthenticated_admin: bool,

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

/// The arguments of `sentiment-server download` (run by the download module).
#[derive(clap::Args, Debug, Clone)]
pub struct DownloadArgs {
    /// Hub model id, e.g. distilbert/distilbert-base-uncased-finetuned-sst-2-english.
    pub repo: String,

    /// Directory to create (or replace, if an earlier download made it). Its parent must be
    /// writable; the model appears there complete or not at all.
    #[arg(long)]
    pub to: PathBuf,

    /// Branch, tag or commit to fetch. Pin a commit in production for reproducible pods.
    #[arg(long, env = "HF_REVISION", default_value = "main")]
    pub revision: String,

    /// The Hub, or a mirror of it.
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub endpoint: String,

    /// File holding an access token for private or gated models (a mounted secret). The
    /// HF_TOKEN environment variable works too; the token never appears in logs.
    #[arg(long, env = "HF_TOKEN_PATH")]
    pub token_file: Option<PathBuf>,

    /// Give up on a connection that is silent this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Attempts per request after a network error, 429 or 5xx, with exponential back-off.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,

    /// Download again even if --to already holds this commit, and replace a directory that
    /// an earlier download did not make.
    #[arg(long)]
    pub force: bool,
}

impl DownloadArgs {
    /// `download <repo> --to <to>`, every other setting from the environment (HF_REVISION,
    /// HF_ENDPOINT, HF_TOKEN_PATH) or its default: what a start without --model-dir fetches.
    pub fn from_env(repo: &str, to: &Path) -> Result<Self, clap::Error> {
        #[derive(Parser)]
        struct Standalone {
            #[command(flatten)]
            args: DownloadArgs,
        }
        let argv = [
            "download".as_ref(),
            repo.as_ref(),
            "--to".as_ref(),
            to.as_os_str(),
        ];
        Standalone::try_parse_from::<_, &std::ffi::OsStr>(argv).map(|s| s.args)
    }
}

/// What `--model-id` defaults to: transformers' default for `pipeline("sentiment-analysis")`.
pub const DEFAULT_MODEL_ID: &str = "distilbert/distilbert-base-uncased-finetuned-sst-2-english";

/// Where the model of `--model-id` goes when `--model-dir` is not given.
pub const DEFAULT_MODEL_DIR: &str = "models/default";

impl Config {
    /// The directory the model is read from: --model-dir, or models/default.
    pub fn model_dir(&self) -> &Path {
        self.model_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_MODEL_DIR))
    }

    /// A configuration with every default, for tests and embedding. The environment is not
    /// read: `API_KEY`, `DATABASE_URL` and the like of the shell that runs the tests must not
    /// leak into them.
    pub fn for_model(model_dir: impl Into<PathBuf>) -> Self {
        let command = Cli::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["sentiment-server"]);
        let mut config = Cli::from_arg_matches(&matches)
            .expect("the defaults parse")
            .config;
        config.model_dir = Some(model_dir.into());
        config
    }
}

#[cfg(test)]
mod tests;
