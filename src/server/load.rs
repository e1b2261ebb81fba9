//! Start-up loading: which models are served (the repository, or `--model-dir` as a
//! repository of one model with version 1), then every selected version, the default model's
//! first so that `/ready` does not wait for the others.

use super::fetch;
use crate::checkpoint::LoadError;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::StartupError;
use crate::metrics::Metrics;
use crate::repository::{discover, ModelSource, Served, VersionSource, VersionState};
use crate::state::AppState;
use std::sync::Arc;

/// The models to serve and the default one's name.
pub async fn sources(config: &Config) -> Result<(Vec<ModelSource>, String), StartupError> {
    let Some(root) = config.model_repository.clone() else {
        fetch::default_model(config).await?;
        let dir = config.model_dir().to_path_buf();
        let name = crate::checkpoint::dir_name(&dir);
        if let Some(default) = config.default_model.as_deref().filter(|d| *d != name) {
            return Err(StartupError::setting(
                "--default-model",
                format!("`{default}` is not the model --model-dir serves (`{name}`)"),
            ));
        }
        let source = ModelSource {
            name: name.clone(),
            versions: vec![VersionSource { version: 1, dir }],
        };
        return Ok((vec![source], name));
    };
    if config.model_dir.is_some() {
        return Err(StartupError::setting(
            "--model-repository",
            "cannot be combined with --model-dir (MODEL_DIR): a repository serves every model \
             in its directory, --model-dir one model; give one of them",
        ));
    }
    let policy = config.version_policy;
    let scan = root.clone();
    let discovery = tokio::task::spawn_blocking(move || discover(&scan, policy))
        .await
        .map_err(|e| StartupError::setting("--model-repository", e.to_string()))?
        .map_err(|e| StartupError::setting("--model-repository", e))?;
    for (entry, reason) in &discovery.skipped {
        tracing::warn!(entry = %entry, %reason, "model repository: skipping an entry");
    }
    let names: Vec<&str> = discovery.models.iter().map(|m| m.name.as_str()).collect();
    if names.is_empty() {
        return Err(StartupError::setting(
            "--model-repository",
            format!(
                "no models in {}: expected <name>/config.json or <name>/<version>/config.json",
                root.display()
            ),
        ));
    }
    let default = match (&config.default_model, names.as_slice()) {
        (Some(default), _) if names.contains(&default.as_str()) => default.clone(),
        (Some(default), _) => {
            return Err(StartupError::setting(
                "--default-model",
                format!("`{default}` is not in the repository, which holds {names:?}"),
            ))
        }
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(StartupError::setting(
                "--default-model",
                format!("the repository holds {names:?}: name the one /predict serves"),
            ))
        }
    };
    Ok((discovery.models, default))
}

/// Loads every version of `sources` into `state`, off the async runtime, one at a time (they
/// would share the same cores anyway). A version that fails is logged, counted and reported
/// FAILED; only a default model with no version loaded stops the start.
pub async fn load_all(
    config: &Config,
    state: &AppState,
    metrics: &Arc<Metrics>,
    sources: Vec<ModelSource>,
    default: String,
) -> Result<(), StartupError> {
    state.set_served(Served::loading(&sources, default.clone()));
    // The default model's versions first, highest first; then the others by name.
    let mut order: Vec<(String, VersionSource)> = sources
        .into_iter()
        .flat_map(|m| {
            let name = m.name;
            m.versions.into_iter().rev().map(move |v| (name.clone(), v))
        })
        .collect();
    order.sort_by_key(|(name, _)| *name != default);
    let default_versions = order.iter().filter(|(name, _)| *name == default).count();
    let mut default_failure = None;
    for (i, (name, source)) in order.into_iter().enumerate() {
        let version = source.version;
        let loaded = {
            let (config, metrics, name) = (config.clone(), metrics.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                Engine::load_version(&config, &source.dir, Some(name.as_str()), version, metrics)
            })
            .await
            .unwrap_or_else(|join| {
                Err(LoadError::new("model", format!("loading panicked: {join}")))
            })
        };
        match loaded {
            Ok(engine) => {
                log_loaded(&engine, name == default);
                state.set_version_state(&name, version, VersionState::Ready(Arc::new(engine)));
            }
            Err(error) => {
                tracing::error!(model = %name, version, %error, "model version failed to load");
                metrics.model_load_failed(&name, version);
                state.set_version_state(&name, version, VersionState::Failed(error.to_string()));
                if name == default {
                    default_failure = Some(error);
                }
            }
        }
        // The default model's versions are all tried: without one loaded, nothing can start.
        if i + 1 == default_versions && state.served().default_engine().is_err() {
            if let Some(error) = default_failure.take() {
                return Err(error.into());
            }
        }
    }
    Ok(())
}

/// The loaded version's particulars; the default model's line says "ready" (with
/// `--ready-when default`, `/ready` turns 200 with it).
fn log_loaded(engine: &Engine, default: bool) {
    let info = &engine.info;
    macro_rules! loaded {
        ($message:literal) => {
            tracing::info!(
                model = %info.model_id,
                version = %info.model_version,
                model_dir = %info.model_dir,
                architecture = %info.architecture,
                model_type = %info.model_type,
                labels = ?info.labels,
                device = %info.device,
                dtype = %info.dtype,
                compute = %info.compute,
                cpu_kernels = %info.cpu_kernels,
                max_input_length = info.max_input_length,
                weights_sha256 = %info.weights_sha256,
                load_seconds = format!("{:.2}", info.load_seconds),
                $message
            )
        };
    }
    if default {
        loaded!("model loaded; ready");
    } else {
        loaded!("model loaded");
    }
}
