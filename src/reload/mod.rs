//! Hot reload of the model repository. One task owns every change to the served set after
//! start-up: it rescans the repository on each `--repository-poll-interval` tick, on SIGHUP
//! and when asked through [`Control`] (the repository routes), loads new and changed versions
//! on a blocking thread (each load ends with a warm-up forward pass, see
//! [`Engine::load_version`]), and swaps them in only once loaded. A version that fails keeps
//! the previous one serving. Replaced versions are released by [`release`] once the requests
//! that hold them have finished.
//!
//! One task, one change at a time: scans never race each other, and a request for a rescan
//! that arrives while a version loads waits for it.

mod commands;
mod release;
mod scan;
mod triggers;

use crate::checkpoint::LoadError;
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::repository::VersionState;
use crate::state::{AppState, Command, Control};
use scan::{Fingerprint, Load, Scan};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use triggers::{hangup_signal, next_hangup, next_tick};

pub use scan::fingerprint;

/// Starts watching `--model-repository` (nothing without one) and registers the routes'
/// [`Control`] in `state`. The task ends when `stop` is cancelled.
pub fn start(
    config: &Config,
    state: &Arc<AppState>,
    metrics: &Arc<Metrics>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let root = config.model_repository.clone()?;
    let (sender, commands) = mpsc::channel(16);
    state.set_reload(Control(sender));
    let reloader = Reloader {
        config: config.clone(),
        root,
        state: state.clone(),
        metrics: metrics.clone(),
        loaded: HashMap::new(),
        unloaded: BTreeSet::new(),
        skipped: Vec::new(),
        default_missing: false,
    };
    Some(tokio::spawn(reloader.run(commands, stop)))
}

struct Reloader {
    config: Config,
    root: PathBuf,
    state: Arc<AppState>,
    metrics: Arc<Metrics>,
    /// The fingerprint of the files each served version was last loaded (or failed to load)
    /// from: a version is loaded again only when its files change, or when asked to.
    loaded: HashMap<(String, u64), Fingerprint>,
    /// Models taken out of service by an unload.
    unloaded: BTreeSet<String>,
    /// The skipped entries of the last scan, so that each is logged once, not every tick.
    skipped: Vec<(String, String)>,
    /// The default model was missing from the last scan (logged once, when it goes).
    default_missing: bool,
}

impl Reloader {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        let interval = self.config.repository_poll_interval;
        let mut tick = (!interval.is_zero()).then(|| {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            // A scan that took longer than the interval is not followed by a burst of scans.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        let mut hangup = hangup_signal();
        tracing::info!(repository = %self.root.display(), poll_interval = ?interval, "watching the model repository (also on SIGHUP and POST /v2/repository/index)");
        // At once: the versions start-up loaded get their fingerprints, and whatever changed
        // while they loaded is picked up.
        self.rescan(None).await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = next_tick(&mut tick) => {
                    self.rescan(None).await;
                }
                () = next_hangup(&mut hangup) => {
                    tracing::info!("SIGHUP received: rescanning the model repository");
                    self.rescan(None).await;
                }
                command = commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => break,
                },
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Rescan(reply) => {
                self.rescan(Some(reply)).await;
            }
            Command::Load(name, reply) => {
                let _ = reply.send(self.load(&name).await);
            }
            Command::Unload(name, reply) => {
                let _ = reply.send(self.unload(&name));
            }
        }
    }

    /// One scan: publish what it found, load what is new or changed, then retire what was
    /// replaced. `published` is answered as soon as the scan is published. Returns the
    /// models on disk (none when the repository cannot be read).
    async fn rescan(&mut self, published: Option<oneshot::Sender<()>>) -> Option<BTreeSet<String>> {
        self.rescan_forcing(None, published).await
    }

    async fn rescan_forcing(
        &mut self,
        force: Option<&str>,
        published: Option<oneshot::Sender<()>>,
    ) -> Option<BTreeSet<String>> {
        let (root, policy) = (self.root.clone(), self.config.version_policy);
        let scanned = tokio::task::spawn_blocking(move || scan::scan(&root, policy))
            .await
            .unwrap_or_else(|join| Err(format!("the scan panicked: {join}")));
        let scan = match scanned {
            Ok(scan) if !scan.models.is_empty() => scan,
            // An unmounted volume leaves an empty directory: never a reason to unload all.
            Ok(_) => {
                tracing::error!(repository = %self.root.display(), "the model repository holds no model now; serving what is loaded");
                return None;
            }
            Err(error) => {
                // The served models stay as they are: a repository volume that blinks out
                // must not take every model down with it.
                tracing::error!(repository = %self.root.display(), %error, "cannot scan the model repository; serving what is loaded");
                return None;
            }
        };
        self.log_skipped(&scan);
        self.adopt(&scan);
        let mut planned = None;
        self.state.update_served(|current| {
            let plan = scan::plan(current, &scan, &self.loaded, &self.unloaded, force);
            let next = plan.next.clone();
            planned = Some(plan);
            next
        });
        if let Some(reply) = published {
            let _ = reply.send(());
        }
        let plan = planned?;
        for load in plan.loads {
            self.load_version(load).await;
        }
        let mut retired = Vec::new();
        self.state.update_served(|current| {
            let (next, gone) = scan::retire(current, &plan.targets);
            retired = gone;
            next
        });
        for (name, version, engine) in retired {
            tracing::info!(model = %name, version, "version retired; released once its requests finish");
            self.loaded.remove(&(name.clone(), version));
            release::release(engine, name, version);
        }
        // Forget versions that are no longer served at all (so that one coming back loads).
        let served = self.state.served();
        self.loaded.retain(|(name, version), _| {
            served
                .model(name)
                .is_some_and(|m| m.versions.iter().any(|v| v.version == *version))
        });
        Some(scan.models.keys().cloned().collect())
    }

    /// Versions served without a recorded fingerprint (loaded at start-up) take the one just
    /// scanned: they were loaded from these files unless the files changed while start-up
    /// loaded them, a window this accepts rather than loading every model twice.
    fn adopt(&mut self, scan: &Scan) {
        let served = self.state.served();
        for model in &served.models {
            let Some(found) = scan.models.get(&model.name) else {
                continue;
            };
            for v in &model.versions {
                let settled = matches!(v.state, VersionState::Ready(_) | VersionState::Failed(_));
                let on_disk = found
                    .iter()
                    .find(|f| f.version == v.version && f.dir == v.dir);
                if let (true, Some(f)) = (settled, on_disk) {
                    self.loaded
                        .entry((model.name.clone(), v.version))
                        .or_insert_with(|| f.fingerprint.clone());
                }
            }
        }
    }

    fn log_skipped(&mut self, scan: &Scan) {
        let default = self.state.served().default.clone();
        let missing = default
            .as_ref()
            .is_some_and(|d| !scan.models.contains_key(d));
        if missing && !self.default_missing {
            tracing::warn!(model = ?default, "the default model left the repository; it keeps serving the versions it has loaded");
        }
        self.default_missing = missing;
        for (entry, reason) in &scan.skipped {
            if !self.skipped.contains(&(entry.clone(), reason.clone())) {
                tracing::warn!(%entry, %reason, "model repository: skipping an entry");
            }
        }
        self.skipped = scan.skipped.clone();
    }

    /// Loads one version off the runtime and swaps it in; a failure is logged, counted and
    /// recorded, and whatever served before keeps serving.
    async fn load_version(&mut self, load: Load) {
        let Load {
            name,
            version,
            dir,
            fingerprint,
        } = load;
        let loaded = {
            let (config, metrics, name, dir) = (
                self.config.clone(),
                self.metrics.clone(),
                name.clone(),
                dir.clone(),
            );
            tokio::task::spawn_blocking(move || {
                Engine::load_version(&config, &dir, Some(name.as_str()), version, metrics)
            })
            .await
            .unwrap_or_else(|join| {
                Err(LoadError::new("model", format!("loading panicked: {join}")))
            })
        };
        self.loaded.insert((name.clone(), version), fingerprint);
        let mut replaced = None;
        match loaded {
            Ok(engine) => {
                tracing::info!(model = %name, version, model_dir = %dir.display(), load_seconds = format!("{:.2}", engine.info.load_seconds), weights_sha256 = %engine.info.weights_sha256, "model version loaded; serving it");
                self.metrics.model_reloaded(&name, version);
                let engine = Arc::new(engine);
                self.state.update_served(|current| {
                    let mut next = current.clone();
                    if let Some(slot) = next.version_mut(&name, version) {
                        let old = std::mem::replace(&mut slot.state, VersionState::Ready(engine));
                        if let VersionState::Ready(old) = old {
                            replaced = Some(old);
                        }
                        slot.dir = dir.clone();
                        slot.reload_error = None;
                    }
                    next
                });
            }
            Err(error) => {
                self.metrics.model_load_failed(&name, version);
                let serving = matches!(
                    self.state
                        .served()
                        .model(&name)
                        .and_then(|m| m.versions.iter().find(|v| v.version == version))
                        .map(|v| &v.state),
                    Some(VersionState::Ready(_))
                );
                if serving {
                    tracing::error!(model = %name, version, model_dir = %dir.display(), %error, "changed model version failed to load; its earlier files keep serving");
                } else {
                    tracing::error!(model = %name, version, model_dir = %dir.display(), %error, "model version failed to load; the versions loaded before keep serving");
                }
                self.state.update_served(|current| {
                    let mut next = current.clone();
                    if let Some(slot) = next.version_mut(&name, version) {
                        if serving {
                            slot.reload_error = Some(error.to_string());
                        } else {
                            slot.state = VersionState::Failed(error.to_string());
                        }
                    }
                    next
                });
            }
        }
        if let Some(old) = replaced {
            tracing::info!(model = %name, version, "the version's earlier files are released once their requests finish");
            release::release(old, name, version);
        }
    }
}
