//! Shared server state: configuration, metrics, the engine once loaded, and the drain flag.

use crate::config::Config;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::http::auth::ApiKeys;
use crate::metrics::Metrics;
use crate::predlog::PredictionLog;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Set when `--database-url` is configured.
    pub prediction_log: Option<PredictionLog>,
    /// Keys `/predict` and `/v2/.../infer` require; none configured means open.
    pub api_keys: ApiKeys,
    engine: OnceLock<Arc<Engine>>,
    draining: AtomicBool,
}

impl AppState {
    /// State with no model yet: probes answer 503 until [`AppState::set_engine`].
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            prediction_log: None,
            api_keys: ApiKeys::default(),
            engine: OnceLock::new(),
            draining: AtomicBool::new(false),
        }
    }

    pub fn with_prediction_log(mut self, log: Option<PredictionLog>) -> Self {
        self.prediction_log = log;
        self
    }

    pub fn with_api_keys(mut self, keys: ApiKeys) -> Self {
        self.api_keys = keys;
        self
    }

    pub fn set_engine(&self, engine: Arc<Engine>) {
        let _ = self.engine.set(engine);
    }

    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.get()
    }

    /// The engine if work is accepted now, else why not (503).
    pub fn ready_engine(&self) -> Result<&Arc<Engine>, ApiError> {
        if self.is_draining() {
            return Err(ApiError::Unavailable("the server is shutting down".into()));
        }
        self.engine
            .get()
            .ok_or_else(|| ApiError::Unavailable("the model is still loading".into()))
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
