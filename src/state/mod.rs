//! Shared server state: configuration, metrics, the served models, and the shutdown phase
//! (withdrawn from rotation, draining).

mod control;

pub(crate) use control::Command;
pub use control::Control;

use crate::auth::{AdminAccess, ApiKeys};
use crate::config::{Config, ReadyWhen};
use crate::engine::Engine;
use crate::error::{ApiError, StartupError};
use crate::metrics::Metrics;
use crate::predlog::PredictionLog;
use crate::repository::{ModelSource, Served, VersionSource, VersionState};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tower_http::cors::CorsLayer;

pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Set when `--database-url` is configured.
    pub prediction_log: Option<PredictionLog>,
    /// Keys `/predict` and `/v2/.../infer` require; none configured means open.
    pub api_keys: ApiKeys,
    /// Who may call the repository's admin routes (load, unload, index).
    pub admin: AdminAccess,
    /// The CORS layer for `--cors-allow-origin`; none when no origin is configured.
    pub cors: Option<CorsLayer>,
    /// The served models, replaced whole on every change: readers take a snapshot (one
    /// `Arc` clone) and never hold the lock across an await.
    served: RwLock<Arc<Served>>,
    /// Where shutdown stands: one of the `PHASE_*` values, only ever raised.
    phase: AtomicU8,
    /// The hot-reload task's handle, once it watches `--model-repository`.
    reload: OnceLock<Control>,
    /// `--ready-when all` has seen every version settle (loaded or failed): from then on a model
    /// with a version serving counts as ready, so that a reload in progress never turns
    /// readiness off.
    all_loaded_once: AtomicBool,
}

impl AppState {
    /// State with no model yet: probes answer 503 until a version of the default model is
    /// ready. The CORS origins are parsed here, once (an invalid one is an error naming it);
    /// the raw `--api-key` is dropped: only [`ApiKeys`]' digests stay in memory.
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
            admin: AdminAccess::default(),
            served: RwLock::new(Arc::new(Served::default())),
            phase: AtomicU8::new(PHASE_SERVING),
            reload: OnceLock::new(),
            all_loaded_once: AtomicBool::new(false),
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

    pub fn with_admin(mut self, admin: AdminAccess) -> Self {
        self.admin = admin;
        self
    }

    /// Registers the hot-reload task (once).
    pub fn set_reload(&self, control: Control) {
        let _ = self.reload.set(control);
    }

    /// The hot-reload task, for the repository routes: 400 without `--model-repository`
    /// (nothing to load from), 503 before start-up loading has ended.
    pub fn reload(&self) -> Result<&Control, ApiError> {
        if self.config.model_repository.is_none() {
            return Err(ApiError::BadRequest(
                "this server serves --model-dir, not a model repository (--model-repository): \
                 there is nothing to load or unload"
                    .into(),
            ));
        }
        self.reload
            .get()
            .ok_or_else(|| ApiError::Unavailable("the model repository is still loading".into()))
    }

    /// The hot-reload task, when one watches the repository.
    pub fn reload_if_watching(&self) -> Option<&Control> {
        self.reload.get()
    }

    /// A snapshot of the served models.
    pub fn served(&self) -> Arc<Served> {
        // A poisoned lock still holds a whole value: every writer replaces it in one store.
        self.served
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set_served(&self, served: Served) {
        *self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(served);
    }

    /// Serves `engine` alone, as the default model: for embedding the server (the fuzz
    /// targets do) without a repository.
    pub fn set_engine(&self, engine: Arc<Engine>) {
        let name = engine.info.model_id.clone();
        let version = engine.info.model_version.parse().unwrap_or(1);
        let source = ModelSource {
            name: name.clone(),
            versions: vec![VersionSource {
                version,
                dir: engine.info.model_dir.clone().into(),
            }],
        };
        let served = Served::loading(&[source], name.clone());
        self.set_served(served.with_state(&name, version, VersionState::Ready(engine)));
    }

    /// Replaces the served models with what `change` makes of the current ones, under the
    /// write lock, so that concurrent updates (start-up loading, hot reload) never lose one
    /// another's changes. Readers keep the snapshot they hold.
    pub fn update_served(&self, change: impl FnOnce(&Served) -> Served) {
        let mut served = self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *served = Arc::new(change(&served));
    }

    /// Records one version's new state.
    pub fn set_version_state(&self, name: &str, version: u64, state: VersionState) {
        let mut served = self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *served = Arc::new(served.with_state(name, version, state));
    }

    /// The default model's engine once loaded, also while draining (metadata stays
    /// available); 503 before.
    pub fn loaded_engine(&self) -> Result<Arc<Engine>, ApiError> {
        self.served().default_engine().map(|(_, e)| e.clone())
    }

    /// The default model's engine if work is accepted now, else why not (503).
    pub fn ready_engine(&self) -> Result<Arc<Engine>, ApiError> {
        self.check_draining()?;
        self.loaded_engine()
    }

    /// The engine `name` (and `version`, else the highest ready one) reaches, also while
    /// draining; 404 for an unknown model or version, 503 while loading or failed.
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<(u64, Arc<Engine>), ApiError> {
        self.served()
            .resolve(name, version)
            .map(|(v, e)| (v, e.clone()))
    }

    /// As [`AppState::model`], and 503 while draining.
    pub fn ready_model(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(u64, Arc<Engine>), ApiError> {
        let found = self.model(name, version)?;
        self.check_draining()?;
        Ok(found)
    }

    /// Readiness (`/ready`, `/health`, the v2 and gRPC server readiness): not withdrawn from
    /// rotation (from SIGTERM on, `--shutdown-delay` included) nor draining, and the default
    /// model (or, with `--ready-when all`, every version) loaded.
    pub fn check_ready(&self) -> Result<(), ApiError> {
        self.check_withdrawn()?;
        let served = self.served();
        served.default_engine()?;
        if self.config.ready_when == ReadyWhen::All {
            if served.all_settled() {
                self.all_loaded_once.store(true, Ordering::SeqCst);
            } else if !(self.all_loaded_once.load(Ordering::SeqCst) && served.every_model_serves())
            {
                return Err(ApiError::Unavailable(
                    "not every model version has finished loading yet (--ready-when all)".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn check_draining(&self) -> Result<(), ApiError> {
        self.refuse_from(PHASE_DRAINING)
    }

    /// 503 once readiness has turned (what the model readiness routes add to their lookup).
    pub fn check_withdrawn(&self) -> Result<(), ApiError> {
        self.refuse_from(PHASE_WITHDRAWN)
    }

    fn refuse_from(&self, phase: u8) -> Result<(), ApiError> {
        if self.phase.load(Ordering::SeqCst) >= phase {
            return Err(ApiError::Unavailable("the server is shutting down".into()));
        }
        Ok(())
    }

    /// Readiness turns 503 so that load balancers stop sending work, while requests are still
    /// answered (the first step of a shutdown with `--shutdown-delay`).
    pub fn withdraw(&self) {
        self.phase.fetch_max(PHASE_WITHDRAWN, Ordering::SeqCst);
    }

    /// Withdrawn from rotation: readiness answers 503 (requests may still be served).
    pub fn is_withdrawn(&self) -> bool {
        self.phase.load(Ordering::SeqCst) >= PHASE_WITHDRAWN
    }

    /// Readiness turns 503 and new work is refused with 503.
    pub fn start_draining(&self) {
        self.phase.fetch_max(PHASE_DRAINING, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.phase.load(Ordering::SeqCst) >= PHASE_DRAINING
    }
}

/// Shutdown phases, in order: draining implies withdrawn, so one value holds both.
const PHASE_SERVING: u8 = 0;
/// Readiness answers 503 (set on SIGTERM); requests are still served.
const PHASE_WITHDRAWN: u8 = 1;
/// New work is refused (503); set once the listeners stop accepting.
const PHASE_DRAINING: u8 = 2;

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
