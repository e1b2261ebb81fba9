//! The repository routes' load and unload, run by the reload task between scans.

use super::{release, Reloader};
use crate::error::ApiError;
use crate::repository::VersionState;

impl Reloader {
    /// `POST /v2/repository/models/<name>/load`: rescan, loading every version of `name`.
    pub(super) async fn load(&mut self, name: &str) -> Result<(), ApiError> {
        let was_unloaded = self.unloaded.remove(name);
        let on_disk = self.rescan_forcing(Some(name), None).await;
        let Some(on_disk) = on_disk else {
            if was_unloaded {
                self.unloaded.insert(name.to_string());
            }
            return Err(ApiError::Unavailable(
                "the model repository cannot be read, or holds no model; see the server log".into(),
            ));
        };
        if !on_disk.contains(name) {
            return Err(ApiError::ModelNotFound(format!(
                "no model `{name}` in the repository"
            )));
        }
        let served = self.state.served();
        let Some(model) = served.model(name) else {
            return Err(ApiError::ModelNotFound(format!(
                "no model `{name}` in the repository"
            )));
        };
        let failures: Vec<String> = model
            .versions
            .iter()
            .filter_map(|v| match (&v.state, &v.reload_error) {
                (VersionState::Failed(why), _) | (_, Some(why)) => {
                    Some(format!("version {}: {why}", v.version))
                }
                _ => None,
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!(
                "model `{name}` failed to load: {}",
                failures.join("; ")
            )))
        }
    }

    /// `POST /v2/repository/models/<name>/unload`: every version of `name` stops serving; their
    /// engines are released once in-flight requests finish.
    pub(super) fn unload(&mut self, name: &str) -> Result<(), ApiError> {
        if self.state.served().default.as_deref() == Some(name) {
            return Err(ApiError::BadRequest(format!(
                "`{name}` is the default model (--default-model), which /predict and readiness \
                 need; it cannot be unloaded"
            )));
        }
        if self.state.served().model(name).is_none() {
            return Err(ApiError::ModelNotFound(format!(
                "model `{name}` is not served"
            )));
        }
        self.unloaded.insert(name.to_string());
        let mut retired = Vec::new();
        self.state.update_served(|current| {
            let mut next = current.clone();
            if let Some(model) = next.models.iter_mut().find(|m| m.name == name) {
                for v in &mut model.versions {
                    let old = std::mem::replace(&mut v.state, VersionState::Unloaded);
                    if let VersionState::Ready(engine) = old {
                        retired.push((v.version, engine));
                    }
                    v.reload_error = None;
                }
            }
            next
        });
        self.loaded.retain(|(model, _), _| model != name);
        for (version, engine) in retired {
            tracing::info!(model = %name, version, "model version unloaded; released once its requests finish");
            release::release(engine, name.to_string(), version);
        }
        Ok(())
    }
}
