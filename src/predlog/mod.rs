//! Prediction log: every prediction, stored in PostgreSQL by a background writer.
//!
//! The request path only does a non-blocking `try_send` into a bounded buffer, so a slow or
//! absent database never fails or slows `/predict`: when the buffer is full the row is dropped
//! and counted (`sentiment_prediction_log_dropped_rows_total`). The writer ([`writer`]) owns the
//! connection, runs the migrations ([`schema`]) on every (re)connect, inserts in batches and
//! reconnects with backoff. Rows are made storable ([`sanitize`]) before they are queued, and
//! a batch the database refuses is split until the refused rows are found ([`store`]).

mod dburl;
mod hash;
mod sanitize;
mod schema;
mod store;
mod tls;
mod writer;

use crate::config::{Config, LogText};
use crate::error::StartupError;
use crate::metrics::Metrics;
use hash::TextHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use hash::HashKind;
pub use schema::MIGRATIONS;

/// What a row's prediction answered: its `task` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// A text or a text pair through the model: `label` and `scores` are the model's labels.
    TextClassification,
    /// One zero-shot input: `label` and `scores` are the request's candidate labels, scored as
    /// the answer scored them (the model's pairs with each hypothesis are not stored).
    ZeroShotClassification,
    /// One rerank request: `text` is the query, `text_pair` the best document, `label` its
    /// index in the request (as a string) and `scores` the best documents' relevance scores
    /// keyed by their index (at most [`RERANK_LOGGED_RESULTS`]).
    Rerank,
    /// One text through a token classifier: `scores` is the list of its entities as the answer
    /// gave them (`entity` or `entity_group`, `score`, `word`, `start`, `end`), `label` and
    /// `score` the most confident one's (`""` and 0 for a text without entities).
    TokenClassification,
}

/// How many of a rerank request's best documents its prediction-log row keeps in `scores`.
pub const RERANK_LOGGED_RESULTS: usize = 10;

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TextClassification => "text-classification",
            Self::ZeroShotClassification => "zero-shot-classification",
            Self::Rerank => "rerank",
            Self::TokenClassification => "token-classification",
        }
    }
}

/// One input's prediction as stored: `label`, `score` and the `scores` column (JSON).
#[derive(Debug, Clone)]
pub struct Stored {
    pub label: String,
    pub score: f32,
    pub scores: serde_json::Value,
}

/// Which model answered: stored on every row.
#[derive(Debug, Clone, Copy)]
pub struct ModelKey<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// SHA-256 of its weights.
    pub sha256: &'a str,
}

/// One stored prediction: one input (a text or a text pair) of one request.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Unique per row, so that retrying a write whose outcome is unknown stores it once.
    pub id: uuid::Uuid,
    pub request_id: String,
    pub input_index: i32,
    pub created_at: SystemTime,
    pub model_sha256: String,
    /// The model's name and version, as routes name them.
    pub model_name: String,
    pub model_version: String,
    /// The text itself, only with `--prediction-log-text full`.
    pub text: Option<String>,
    pub text_sha256: String,
    /// Which hash `text_sha256` and `text_pair_sha256` hold.
    pub text_hash_kind: HashKind,
    /// A pair's second text, stored as `text` is; `None` for a single text.
    pub text_pair: Option<String>,
    pub text_pair_sha256: Option<String>,
    pub task: Task,
    pub label: String,
    pub score: f32,
    /// `{"label": probability, ...}` for every label.
    pub scores: serde_json::Value,
    pub latency_ms: f32,
}

/// What a request keeps of its texts until the prediction is known.
pub struct PendingTexts {
    task: Task,
    hash_kind: HashKind,
    inputs: Vec<Kept>,
}

/// One input's texts as the log stores them: the text itself or not, and its hash.
struct Kept {
    text: (Option<String>, String),
    text_pair: Option<(Option<String>, String)>,
}

/// Handle of the prediction log, shared by the request handlers.
pub struct PredictionLog {
    sender: mpsc::Sender<Row>,
    text: LogText,
    hasher: TextHasher,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl PredictionLog {
    /// Starts the writer when `--database-url` is set. A bad URL or an unreadable password file
    /// stops start-up; an unreachable database does not (the writer keeps retrying).
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Option<Self>, StartupError> {
        let Some(url) = config.database_url.as_deref() else {
            return Ok(None);
        };
        let hasher = TextHasher::from_key_file(config.prediction_log_hash_key_file.as_deref())?;
        if hasher.kind() == HashKind::Sha256 && config.prediction_log_text == LogText::Hash {
            tracing::warn!(
                "prediction log: texts are stored as plain SHA-256, from which short texts can \
                 be recovered by guessing; set --prediction-log-hash-key-file for keyed hashes"
            );
        }
        let url =
            tls::DatabaseUrl::parse(url).map_err(|e| StartupError::setting("--database-url", e))?;
        let connector = url
            .connector()
            .map_err(|e| StartupError::setting("--database-url", e))?;
        let mut pg = url.pg;
        if let Some(path) = &config.database_password_file {
            let password = std::fs::read_to_string(path).map_err(|e| {
                StartupError::setting(
                    "--database-password-file",
                    format!(
                        "cannot read the database password from {}: {e}",
                        path.display()
                    ),
                )
            })?;
            pg.password(password.trim_end_matches(['\r', '\n']));
        }
        pg.connect_timeout(Duration::from_secs(5));
        pg.application_name("sentiment-server");
        // Only where, never the credentials.
        let hosts: Vec<String> = pg.get_hosts().iter().map(|h| format!("{h:?}")).collect();
        tracing::info!(
            hosts = ?hosts,
            dbname = pg.get_dbname().unwrap_or("-"),
            user = pg.get_user().unwrap_or("-"),
            sslmode = url.ssl_mode.as_str(),
            text = ?config.prediction_log_text,
            text_hash = hasher.kind().as_str(),
            buffer = config.prediction_log_buffer,
            "prediction log enabled"
        );
        let (sender, receiver) = mpsc::channel(config.prediction_log_buffer as usize);
        let stop = CancellationToken::new();
        let writer = tokio::spawn(writer::run(
            pg,
            connector,
            receiver,
            config.prediction_log_batch as usize,
            metrics.clone(),
            stop.clone(),
        ));
        Ok(Some(Self {
            sender,
            text: config.prediction_log_text,
            hasher,
            metrics,
            stop,
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Keeps what the log needs of the inputs (each a text and perhaps a pair's second text)
    /// before they are handed to the engine.
    pub fn keep<'a>(
        &self,
        task: Task,
        inputs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> PendingTexts {
        let keep = |text: &str| {
            let hash = self.hasher.hash(text);
            ((self.text == LogText::Full).then(|| text.to_owned()), hash)
        };
        PendingTexts {
            task,
            hash_kind: self.hasher.kind(),
            inputs: inputs
                .into_iter()
                .map(|(text, pair)| Kept {
                    text: keep(text),
                    text_pair: pair.map(keep),
                })
                .collect(),
        }
    }

    /// Queues one row per input without waiting; rows that do not fit are dropped and counted.
    pub fn record(
        &self,
        request_id: &str,
        model: ModelKey<'_>,
        texts: PendingTexts,
        predictions: &[Vec<(String, f32)>],
        latency: Duration,
    ) {
        let stored = predictions.iter().map(|labels| {
            let (label, score) = labels.iter().max_by(|a, b| a.1.total_cmp(&b.1)).cloned()?;
            let scores = labels
                .iter()
                .map(|(l, s)| (l.clone(), serde_json::Value::from(*s)))
                .collect::<serde_json::Map<_, _>>();
            Some(Stored {
                label,
                score,
                scores: serde_json::Value::Object(scores),
            })
        });
        self.record_stored(request_id, model, texts, stored, latency);
    }

    /// [`PredictionLog::record`] with each input's row as it is stored (`None`: no row).
    pub fn record_stored(
        &self,
        request_id: &str,
        model: ModelKey<'_>,
        texts: PendingTexts,
        stored: impl IntoIterator<Item = Option<Stored>>,
        latency: Duration,
    ) {
        let created_at = SystemTime::now();
        let latency_ms = latency.as_secs_f32() * 1000.0;
        for (index, (kept, stored)) in texts.inputs.into_iter().zip(stored).enumerate() {
            let Some(Stored {
                label,
                score,
                scores,
            }) = stored
            else {
                continue;
            };
            let (text, text_sha256) = kept.text;
            let (text_pair, text_pair_sha256) = match kept.text_pair {
                Some((pair, hash)) => (pair, Some(hash)),
                None => (None, None),
            };
            let mut row = Row {
                id: uuid::Uuid::new_v4(),
                request_id: request_id.to_owned(),
                input_index: index as i32,
                created_at,
                model_sha256: model.sha256.to_owned(),
                model_name: model.name.to_owned(),
                model_version: model.version.to_owned(),
                text,
                text_sha256,
                text_hash_kind: texts.hash_kind,
                text_pair,
                text_pair_sha256,
                task: texts.task,
                label,
                score,
                scores,
                latency_ms,
            };
            let sanitized = sanitize::row(&mut row);
            if sanitized > 0 {
                self.metrics.prediction_log_sanitized.inc_by(sanitized);
            }
            if self.sender.try_send(row).is_ok() {
                self.metrics.prediction_log_buffered.inc();
            } else {
                self.metrics.prediction_log_dropped.inc();
            }
        }
    }

    /// Stops taking rows and gives the writer up to `timeout` to store what is buffered.
    pub async fn close(&self, timeout: Duration) {
        self.stop.cancel();
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            if tokio::time::timeout(timeout, writer).await.is_err() {
                tracing::warn!("prediction log: rows still buffered at shutdown were not stored");
            }
        }
    }
}
