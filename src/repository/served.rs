//! The set of served models and the state of each version: an immutable value, replaced
//! whole when a version's state changes (see [`crate::state::AppState::update_served`]).

use super::discover::ModelSource;
use crate::engine::Engine;
use crate::error::ApiError;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub enum VersionState {
    Loading,
    Ready(Arc<Engine>),
    /// Why loading failed; the other versions and models serve regardless.
    Failed(String),
    /// Taken out of service by `POST /v2/repository/models/<name>/unload`; rescans leave it
    /// so until a `load`.
    Unloaded,
}

impl VersionState {
    /// The name the repository index and `/info` report, as Triton spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Loading => "LOADING",
            Self::Ready(_) => "READY",
            Self::Failed(_) => "FAILED",
            Self::Unloaded => "UNLOADED",
        }
    }
}

#[derive(Clone)]
pub struct ServedVersion {
    pub version: u64,
    pub dir: PathBuf,
    pub state: VersionState,
    /// Why the last reload of this version's changed files failed while it kept serving the
    /// files it loaded before (hot reload); cleared by the next successful load.
    pub reload_error: Option<String>,
}

#[derive(Clone)]
pub struct ServedModel {
    pub name: String,
    /// Ascending by version.
    pub versions: Vec<ServedVersion>,
}

impl ServedModel {
    /// The highest version that is ready: what a path without `/versions/<v>` reaches.
    pub fn latest_ready(&self) -> Option<(u64, &Arc<Engine>)> {
        self.versions.iter().rev().find_map(|v| match &v.state {
            VersionState::Ready(engine) => Some((v.version, engine)),
            _ => None,
        })
    }

    fn versions_list(&self) -> String {
        let list: Vec<String> = self
            .versions
            .iter()
            .map(|v| format!("`{}`", v.version))
            .collect();
        list.join(", ")
    }
}

/// What a path reaches, for callers that answer "not ready" rather than an error.
pub enum Lookup<'a> {
    Ready(u64, &'a Arc<Engine>),
    NotReady(ApiError),
    Unknown(ApiError),
}

/// Every served model (sorted by name) and the default one, which `/predict` serves.
#[derive(Clone, Default)]
pub struct Served {
    pub models: Vec<ServedModel>,
    pub default: Option<String>,
}

impl Served {
    /// Every selected version of `sources`, loading.
    pub fn loading(sources: &[ModelSource], default: String) -> Self {
        let mut models: Vec<ServedModel> = sources
            .iter()
            .map(|source| ServedModel {
                name: source.name.clone(),
                versions: source
                    .versions
                    .iter()
                    .map(|v| ServedVersion {
                        version: v.version,
                        dir: v.dir.clone(),
                        state: VersionState::Loading,
                        reload_error: None,
                    })
                    .collect(),
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            models,
            default: Some(default),
        }
    }

    /// A copy with one version's state replaced.
    pub fn with_state(&self, name: &str, version: u64, state: VersionState) -> Self {
        let mut next = self.clone();
        if let Some(slot) = next
            .models
            .iter_mut()
            .filter(|m| m.name == name)
            .flat_map(|m| m.versions.iter_mut())
            .find(|v| v.version == version)
        {
            slot.state = state;
        }
        next
    }

    pub fn version_mut(&mut self, name: &str, version: u64) -> Option<&mut ServedVersion> {
        self.models
            .iter_mut()
            .filter(|m| m.name == name)
            .flat_map(|m| m.versions.iter_mut())
            .find(|v| v.version == version)
    }

    /// Whether every model serves (has a ready version), models unloaded on purpose apart:
    /// `--ready-when all` once start-up is over, so that a reload in progress or a new version
    /// that failed, both with an earlier version serving, keep readiness.
    pub fn every_model_serves(&self) -> bool {
        !self.models.is_empty()
            && self.models.iter().all(|m| {
                m.latest_ready().is_some()
                    || m.versions
                        .iter()
                        .all(|v| matches!(v.state, VersionState::Unloaded))
            })
    }

    pub fn model(&self, name: &str) -> Option<&ServedModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Every ready engine, for shutdown.
    pub fn engines(&self) -> impl Iterator<Item = &Arc<Engine>> {
        self.models
            .iter()
            .flat_map(|m| &m.versions)
            .filter_map(|v| match &v.state {
                VersionState::Ready(engine) => Some(engine),
                _ => None,
            })
    }

    /// Whether every selected version has finished loading, ready or failed (`--ready-when
    /// all`): a version that failed stays failed until its files change, so waiting for it
    /// would keep the replica out of rotation for good.
    pub fn all_settled(&self) -> bool {
        !self.models.is_empty()
            && self
                .models
                .iter()
                .flat_map(|m| &m.versions)
                .all(|v| !matches!(v.state, VersionState::Loading))
    }

    /// The engine `name` (and `version`, when given; else the highest ready one) reaches.
    pub fn lookup(&self, name: &str, version: Option<&str>) -> Lookup<'_> {
        if self.models.is_empty() {
            return Lookup::NotReady(still_loading());
        }
        let Some(model) = self.model(name) else {
            let names: Vec<String> = self
                .models
                .iter()
                .map(|m| format!("`{}`", m.name))
                .collect();
            return Lookup::Unknown(ApiError::ModelNotFound(format!(
                "unknown model `{name}`; this server serves {}",
                names.join(", ")
            )));
        };
        let slot = match version {
            None => match model.latest_ready() {
                Some((version, engine)) => return Lookup::Ready(version, engine),
                // None ready: the highest tells why (still loading, or failed).
                None => model.versions.last(),
            },
            Some(asked) => {
                let found = super::name::version(asked)
                    .and_then(|n| model.versions.iter().find(|v| v.version == n));
                if found.is_none() {
                    return Lookup::Unknown(ApiError::ModelNotFound(format!(
                        "model `{name}` has no version `{asked}`; its served versions are {}",
                        model.versions_list()
                    )));
                }
                found
            }
        };
        match slot.map(|v| (v.version, &v.state)) {
            Some((version, VersionState::Ready(engine))) => Lookup::Ready(version, engine),
            Some((version, VersionState::Failed(why))) => Lookup::NotReady(ApiError::Unavailable(
                format!("model `{name}` version {version} failed to load: {why}"),
            )),
            Some((version, VersionState::Loading)) => Lookup::NotReady(ApiError::Unavailable(
                format!("model `{name}` version {version} is still loading"),
            )),
            Some((version, VersionState::Unloaded)) => {
                Lookup::NotReady(ApiError::Unavailable(format!(
                    "model `{name}` version {version} is unloaded; \
                     POST /v2/repository/models/{name}/load serves it again"
                )))
            }
            None => Lookup::Unknown(ApiError::ModelNotFound(format!(
                "model `{name}` has no served version"
            ))),
        }
    }

    /// As [`Served::lookup`], not ready and unknown alike as errors (503 and 404).
    pub fn resolve(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(u64, &Arc<Engine>), ApiError> {
        match self.lookup(name, version) {
            Lookup::Ready(version, engine) => Ok((version, engine)),
            Lookup::NotReady(error) | Lookup::Unknown(error) => Err(error),
        }
    }

    /// The default model's highest ready version: what `/predict` serves.
    pub fn default_engine(&self) -> Result<(u64, &Arc<Engine>), ApiError> {
        match &self.default {
            Some(name) => self.resolve(name, None),
            None => Err(still_loading()),
        }
    }
}

/// Before the repository has been read (or the model downloaded), nothing is known yet.
pub(crate) fn still_loading() -> ApiError {
    ApiError::Unavailable("the model is still loading".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::discover::VersionSource;

    fn served() -> Served {
        let source = |name: &str, versions: &[u64]| ModelSource {
            name: name.into(),
            versions: versions
                .iter()
                .map(|&version| VersionSource {
                    version,
                    dir: PathBuf::from(format!("/repo/{name}/{version}")),
                })
                .collect(),
        };
        Served::loading(&[source("b", &[1, 2]), source("a", &[1])], "b".into()).with_state(
            "b",
            2,
            VersionState::Failed("truncated weights".into()),
        )
    }

    fn status(lookup: Lookup<'_>) -> (&'static str, String) {
        match lookup {
            Lookup::Ready(..) => ("ready", String::new()),
            Lookup::NotReady(e) => ("not ready", e.to_string()),
            Lookup::Unknown(e) => ("unknown", e.to_string()),
        }
    }

    #[test]
    fn paths_reach_known_versions_and_say_why_they_cannot_serve() {
        let served = served();
        let names: Vec<&str> = served.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let (kind, why) = status(served.lookup("c", None));
        assert_eq!(kind, "unknown");
        assert!(why.contains("`a`, `b`"), "{why}");
        assert_eq!(status(served.lookup("b", Some("3"))).0, "unknown");
        assert_eq!(status(served.lookup("b", Some("02"))).0, "unknown");
        let (kind, why) = status(served.lookup("b", Some("2")));
        assert_eq!(kind, "not ready");
        assert!(why.contains("failed to load: truncated weights"), "{why}");
        let (kind, why) = status(served.lookup("b", Some("1")));
        assert_eq!(kind, "not ready");
        assert!(why.contains("still loading"), "{why}");
        // No version ready: the highest says why.
        assert!(status(served.lookup("b", None)).1.contains("failed"));
        assert!(served.default_engine().is_err());
        // b 1 is still loading.
        assert!(!served.all_settled());
        assert_eq!(served.engines().count(), 0);
    }

    #[test]
    fn nothing_is_known_before_the_repository_is_read() {
        let (kind, why) = status(Served::default().lookup("a", None));
        assert_eq!(
            (kind, why.as_str()),
            ("not ready", "the model is still loading")
        );
    }
}
