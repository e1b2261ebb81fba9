//! Shared server state: configuration, metrics, the engine once loaded, and the shutdown flags
//! (withdrawn from rotation, draining).

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{ApiError, StartupError};
use crate::metrics::Metrics;
use crate::predlog::PredictionLog;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tower_http::cors::CorsLayer;

pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Set when `--database-url` is configured.
    pub prediction_log: Option<PredictionLog>,
    /// Keys `/predict` and `/v2/.../infer` require; none configured means open.
    pub api_keys: ApiKeys,
    /// The CORS layer for `--cors-allow-origin`; none when no origin is configured.
    pub cors: Option<CorsLayer>,
    engine: OnceLock<Arc<Engine>>,
    /// Readiness answers 503 (set on SIGTERM); requests are still served until `draining`.
    withdrawn: AtomicBool,
    /// New work is refused (503); set once the listeners stop accepting.
    draining: AtomicBool,
}

impl AppState {
    /// State with no model yet: probes answer 503 until [`AppState::set_engine`]. The CORS
    /// origins are parsed here, once (an invalid one is an error naming it); the raw
    /// `--api-key` is dropped: only [`ApiKeys`]' digests stay in memory.
    pub fn new(mut config: Config, metrics: Arc<Metrics>) -> Result<Self, StartupError> {
        config.api_key = None;
        let cors = crate::cors::layer(&config.cors_allow_origin)
            .map_err(|e| StartupError::setting("--cors-allow-origin", e))?;
        Ok(Self {
            config,
            cors,
            metrics,
            prediction_log: None,
            api_keys: ApiKeys::default(),
            engine: OnceLock::new(),
            withdrawn: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
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

    /// The engine once loaded, also while draining (metadata stays available); 503 before.
    pub fn loaded_engine(&self) -> Result<&Arc<Engine>, ApiError> {
        self.engine
            .get()
            .ok_or_else(|| ApiError::Unavailable("the model is still loading".into()))
    }

    /// The engine if work is accepted now, else why not (503).
    pub fn ready_engine(&self) -> Result<&Arc<Engine>, ApiError> {
        if self.is_draining() {
            return Err(ApiError::Unavailable("the server is shutting down".into()));
        }
        self.loaded_engine()
    }

    /// What the readiness probes (`/ready`, `/health`, the v2 ready routes, gRPC health
    /// `ready`) answer: the engine when this server should get new work; 503 while loading,
    /// draining, or withdrawn from rotation while still serving (`--shutdown-delay`).
    pub fn readiness(&self) -> Result<&Arc<Engine>, ApiError> {
        if self.withdrawn.load(Ordering::SeqCst) {
            return Err(ApiError::Unavailable("the server is shutting down".into()));
        }
        self.ready_engine()
    }

    /// Readiness turns 503 so that load balancers stop sending work, while requests are still
    /// answered (the first step of a shutdown with `--shutdown-delay`).
    pub fn withdraw(&self) {
        self.withdrawn.store(true, Ordering::SeqCst);
    }

    /// Readiness turns 503 and new work is refused with 503.
    pub fn start_draining(&self) {
        self.withdraw();
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_api_key_is_not_kept_in_the_state() {
        let mut config = Config::for_model("models/x");
        config.api_key = Some("a-secret-key-of-enough-length".into());
        let keys = ApiKeys::load(config.api_key.as_deref(), None).unwrap();
        let state = AppState::new(config, Arc::new(Metrics::new()))
            .unwrap()
            .with_api_keys(keys);
        assert_eq!(state.config.api_key, None);
        assert!(state.api_keys.enabled());
        let debug = format!("{:?} {:?}", state.config, state.api_keys);
        assert!(!debug.contains("a-secret-key"), "{debug}");
    }

    #[test]
    fn an_invalid_cors_origin_is_refused_where_the_state_is_made() {
        let mut config = Config::for_model("models/x");
        config.cors_allow_origin = vec!["app.example.com/path".into()];
        let error = AppState::new(config, Arc::new(Metrics::new()))
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("--cors-allow-origin") && error.contains("app.example.com/path"));
    }
}
