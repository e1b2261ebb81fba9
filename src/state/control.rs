//! The handle to the hot-reload task (src/reload) that the repository routes hold: defined
//! here, below both, so the state that carries it does not import the task.

use crate::error::ApiError;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the repository routes ask of the reload task.
pub(crate) enum Command {
    /// Rescan; the reply comes once the scan's outcome is published (new versions `LOADING`),
    /// before they load.
    Rescan(oneshot::Sender<()>),
    /// Load (again) every version of a model on disk, even if unchanged, and serve it if it
    /// was unloaded; the reply comes once loading ended.
    Load(String, oneshot::Sender<Result<(), ApiError>>),
    /// Take a model out of service until it is loaded again.
    Unload(String, oneshot::Sender<Result<(), ApiError>>),
}

/// The handle the HTTP routes hold to the reload task.
#[derive(Clone)]
pub struct Control(pub(crate) mpsc::Sender<Command>);

impl Control {
    /// Rescans, waiting at most `patience` for the scan (not the loads) to be published.
    pub async fn rescan(&self, patience: Duration) {
        let (reply, done) = oneshot::channel();
        if self.0.send(Command::Rescan(reply)).await.is_ok() {
            let _ = tokio::time::timeout(patience, done).await;
        }
    }

    pub async fn load(&self, name: &str) -> Result<(), ApiError> {
        self.ask(|reply| Command::Load(name.to_string(), reply))
            .await
    }

    pub async fn unload(&self, name: &str) -> Result<(), ApiError> {
        self.ask(|reply| Command::Unload(name.to_string(), reply))
            .await
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), ApiError>>) -> Command,
    ) -> Result<(), ApiError> {
        let gone = || ApiError::Unavailable("the model repository is no longer watched".into());
        let (reply, answer) = oneshot::channel();
        self.0.send(command(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
