//! The first start without `--model-dir`: the `--model-id` model is fetched into
//! models/default by the `download` path (verified, atomic), then served from there; a
//! download of another model there is replaced, a model put there by hand is served as it is.
//! An explicit `--model-dir` never downloads anything.

use crate::config::{Config, DownloadArgs, DEFAULT_MODEL_DIR};
use crate::error::StartupError;
use std::path::Path;

/// Fetches the default model when it is needed and not yet there.
pub(super) async fn default_model(config: &Config) -> Result<(), StartupError> {
    if config.model_dir.is_some() {
        return Ok(());
    }
    let dir = Path::new(DEFAULT_MODEL_DIR);
    if crate::download::holds(dir, &config.model_id) {
        return Ok(());
    }
    if dir.join("config.json").exists() && !crate::download::made_by_download(dir) {
        // Put there by hand (a copy, a symlink to ../shared): served as it is.
        tracing::info!(dir = %dir.display(), "serving the model found there; --model-id is not fetched");
        return Ok(());
    }
    let args = DownloadArgs::from_env(&config.model_id, dir)
        .map_err(|e| StartupError::setting("--model-id", one_line(&e.to_string())))?;
    tracing::info!(
        model_id = %config.model_id,
        dir = %dir.display(),
        endpoint = %args.endpoint,
        "no --model-dir: fetching the default model once"
    );
    crate::download::run(&args).await.map_err(|e| {
        StartupError::setting(
            "--model-id",
            format!(
                "cannot fetch {} into {}: {}. Without network access, serve a model \
                 directory with --model-dir DIR, or run `sentiment-server download {} --to DIR` \
                 where the Hub is reachable and bring DIR here",
                config.model_id,
                dir.display(),
                one_line(&format!("{e:#}")),
                config.model_id,
            ),
        )
    })?;
    Ok(())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
