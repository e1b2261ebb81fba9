//! Prometheus metrics, one registry per server, rendered at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// A gRPC method (e.g. `ModelInfer`) and the canonical name of its status code (`OK`,
/// `RESOURCE_EXHAUSTED`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcMethodCode {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcMethod {
    pub method: String,
}

/// A served model version: the labels of every per-model series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelVersion {
    pub model: String,
    pub version: String,
}

/// A task the server answers (`text-classification`, `zero-shot-classification`, `rerank`,
/// `token-classification`): a fixed name from the code, never from a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    pub task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: Family<Route, Histogram>,
    pub in_flight: Gauge,
    pub grpc_requests: Family<GrpcMethodCode, Counter>,
    pub grpc_request_duration: Family<GrpcMethod, Histogram>,
    /// Sequences queued for a model, by the model's task.
    pub sequences: Family<TaskLabel, Counter>,
    pub queue_depth: Family<ModelVersion, Gauge>,
    pub queue_seconds: Family<ModelVersion, Histogram>,
    pub batch_size: Family<ModelVersion, Histogram>,
    pub batch_tokens: Family<ModelVersion, Histogram>,
    pub tokenization_seconds: Family<ModelVersion, Histogram>,
    pub inference_seconds: Family<ModelVersion, Histogram>,
    pub sequences_cancelled: Family<ModelVersion, Counter>,
    pub model_load_seconds: Family<ModelVersion, Gauge<f64, AtomicU64>>,
    pub model_load_failures: Family<ModelVersion, Counter>,
    pub model_reloads: Family<ModelVersion, Counter>,
    /// Answered inference requests by task, and the inputs they held (texts, pairs, documents).
    pub task_requests: Family<TaskLabel, Counter>,
    pub task_inputs: Family<TaskLabel, Counter>,
    pub prediction_log_written: Counter,
    pub prediction_log_dropped: Counter,
    /// Row fields changed to be storable (NUL replaced, request id cut); no client-derived labels.
    pub prediction_log_sanitized: Counter,
    pub prediction_log_errors: Counter,
    pub prediction_log_buffered: Gauge,
    pub prediction_log_connected: Gauge,
}

fn batch_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

fn batch_tokens_histogram() -> Histogram {
    Histogram::new(exponential_buckets(16.0, 2.0, 12))
}

/// One model version's series (see [`Metrics::for_model`]).
pub struct ModelMetrics {
    pub queue_depth: Gauge,
    pub queue_seconds: Histogram,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub tokenization_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub sequences_cancelled: Counter,
    pub load_seconds: Gauge<f64, AtomicU64>,
}

fn latency_histogram() -> Histogram {
    // 100µs .. ~13s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let latency = || {
            Family::<ModelVersion, Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            )
        };
        let mut metrics = Self {
            registry: Registry::with_prefix("sentiment"),
            requests: Family::<RouteStatus, Counter>::default(),
            request_duration: Family::<Route, Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
            in_flight: Gauge::default(),
            grpc_requests: Family::<GrpcMethodCode, Counter>::default(),
            grpc_request_duration: Family::<GrpcMethod, Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
            sequences: Family::<TaskLabel, Counter>::default(),
            queue_depth: Family::<ModelVersion, Gauge>::default(),
            queue_seconds: latency(),
            batch_size: Family::<ModelVersion, Histogram>::new_with_constructor(
                batch_size_histogram as fn() -> Histogram,
            ),
            batch_tokens: Family::<ModelVersion, Histogram>::new_with_constructor(
                batch_tokens_histogram as fn() -> Histogram,
            ),
            tokenization_seconds: latency(),
            inference_seconds: latency(),
            sequences_cancelled: Family::<ModelVersion, Counter>::default(),
            model_load_seconds: Family::<ModelVersion, Gauge<f64, AtomicU64>>::default(),
            model_load_failures: Family::<ModelVersion, Counter>::default(),
            model_reloads: Family::<ModelVersion, Counter>::default(),
            task_requests: Family::<TaskLabel, Counter>::default(),
            task_inputs: Family::<TaskLabel, Counter>::default(),
            prediction_log_written: Counter::default(),
            prediction_log_dropped: Counter::default(),
            prediction_log_sanitized: Counter::default(),
            prediction_log_errors: Counter::default(),
            prediction_log_buffered: Gauge::default(),
            prediction_log_connected: Gauge::default(),
        };
        metrics.register_requests();
        metrics.register_models();
        metrics.register_tasks();
        metrics
    }

    /// The per-task series.
    fn register_tasks(&mut self) {
        let r = &mut self.registry;
        r.register(
            "task_requests",
            "Inference requests answered, by task (text-classification, zero-shot-classification, rerank, token-classification)",
            self.task_requests.clone(),
        );
        r.register(
            "task_inputs",
            "Inputs of the answered inference requests, by task: texts or text pairs, zero-shot inputs, rerank documents, token-classification texts",
            self.task_inputs.clone(),
        );
    }

    /// Counts one answered request of `task` with its `inputs`.
    pub fn task_answered(&self, task: &'static str, inputs: usize) {
        let labels = TaskLabel { task };
        self.task_requests.get_or_create(&labels).inc();
        self.task_inputs
            .get_or_create(&labels)
            .inc_by(inputs as u64);
    }

    /// `sentiment_sequences_total` of one task.
    pub fn sequences_of(&self, task: &'static str) -> Counter {
        self.sequences.get_or_create(&TaskLabel { task }).clone()
    }

    /// The HTTP and gRPC series.
    fn register_requests(&mut self) {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "HTTP requests by method, route and status",
            self.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            self.request_duration.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            self.in_flight.clone(),
        );
        r.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            self.grpc_requests.clone(),
        );
        r.register(
            "grpc_request_duration_seconds",
            "gRPC request latency by method",
            self.grpc_request_duration.clone(),
        );
        r.register(
            "sequences",
            "Texts and text pairs queued for a model, by the model's task (text-classification, token-classification)",
            self.sequences.clone(),
        );
    }

    /// The models' series (queue, batches, loads) and the prediction log's.
    fn register_models(&mut self) {
        let r = &mut self.registry;
        r.register(
            "queue_depth",
            "Sequences waiting for inference",
            self.queue_depth.clone(),
        );
        r.register(
            "queue_duration_seconds",
            "Time a sequence waits in the queue before its batch runs",
            self.queue_seconds.clone(),
        );
        r.register(
            "batch_size",
            "Sequences per forward pass",
            self.batch_size.clone(),
        );
        r.register(
            "batch_tokens",
            "Padded tokens per forward pass",
            self.batch_tokens.clone(),
        );
        r.register(
            "tokenization_duration_seconds",
            "Time to tokenize one request's texts",
            self.tokenization_seconds.clone(),
        );
        r.register(
            "inference_duration_seconds",
            "Time of one forward pass (the model call on one batch; tokenization and post-processing not included)",
            self.inference_seconds.clone(),
        );
        r.register(
            "sequences_cancelled",
            "Sequences dropped before inference because their client went away",
            self.sequences_cancelled.clone(),
        );
        r.register(
            "model_load_duration_seconds",
            "Time it took to load the model version, at start-up or its last hot reload",
            self.model_load_seconds.clone(),
        );
        r.register(
            "model_load_failures",
            "Model version loads that failed, at start-up or on a hot reload (/info has the reason)",
            self.model_load_failures.clone(),
        );
        r.register(
            "model_reloads",
            "Model versions loaded while serving (hot reload) and swapped in",
            self.model_reloads.clone(),
        );
        r.register(
            "prediction_log_rows_written",
            "Prediction-log rows stored in the database",
            self.prediction_log_written.clone(),
        );
        r.register(
            "prediction_log_dropped_rows",
            "Prediction-log rows dropped: buffer full, database down at shutdown, or refused by the database (only the refused rows of a batch)",
            self.prediction_log_dropped.clone(),
        );
        r.register(
            "prediction_log_sanitized_fields",
            "Prediction-log row fields changed to be storable: NUL replaced in a text, label or \
             score key, a request id cut to 128 characters or stripped of control characters",
            self.prediction_log_sanitized.clone(),
        );
        r.register(
            "prediction_log_write_errors",
            "Failed prediction-log INSERTs: a lost connection is retried after reconnecting; a refused batch is split to store all but its refused rows",
            self.prediction_log_errors.clone(),
        );
        r.register(
            "prediction_log_buffered_rows",
            "Prediction-log rows waiting in memory for the writer",
            self.prediction_log_buffered.clone(),
        );
        r.register(
            "prediction_log_connected",
            "1 while the prediction log has a database connection",
            self.prediction_log_connected.clone(),
        );
    }

    /// The series of one model version, labelled `model` and `version`: what its engine and
    /// batcher record into.
    pub fn for_model(&self, model: &str, version: u64) -> Arc<ModelMetrics> {
        let labels = ModelVersion {
            model: model.to_owned(),
            version: version.to_string(),
        };
        // A family's metric shares its value with its clones: recording needs no lookup.
        Arc::new(ModelMetrics {
            queue_depth: self.queue_depth.get_or_create(&labels).clone(),
            queue_seconds: self.queue_seconds.get_or_create(&labels).clone(),
            batch_size: self.batch_size.get_or_create(&labels).clone(),
            batch_tokens: self.batch_tokens.get_or_create(&labels).clone(),
            tokenization_seconds: self.tokenization_seconds.get_or_create(&labels).clone(),
            inference_seconds: self.inference_seconds.get_or_create(&labels).clone(),
            sequences_cancelled: self.sequences_cancelled.get_or_create(&labels).clone(),
            load_seconds: self.model_load_seconds.get_or_create(&labels).clone(),
        })
    }

    /// Counts a version that failed to load.
    pub fn model_load_failed(&self, model: &str, version: u64) {
        let labels = ModelVersion {
            model: model.to_owned(),
            version: version.to_string(),
        };
        self.model_load_failures.get_or_create(&labels).inc();
    }

    /// Counts a version swapped in by a hot reload.
    pub fn model_reloaded(&self, model: &str, version: u64) {
        let labels = ModelVersion {
            model: model.to_owned(),
            version: version.to_string(),
        };
        self.model_reloads.get_or_create(&labels).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
