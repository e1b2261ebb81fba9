//! What starts a scan besides the routes: the poll interval's ticks and SIGHUP.

/// Completes on the next poll tick; never when polling is off.
pub(super) async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(tick) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The SIGHUP stream, where there is one.
#[cfg(unix)]
pub(super) type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangup = Option<()>;

/// SIGHUP, the conventional "reread your configuration" signal, when it can be listened to.
pub(super) fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    let hangup = {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
            .ok()
    };
    #[cfg(not(unix))]
    let hangup = None;
    hangup
}

/// Completes on the next SIGHUP; never when it cannot be listened to.
pub(super) async fn next_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    {
        if let Some(signal) = hangup {
            if signal.recv().await.is_some() {
                return;
            }
        }
    }
    let _ = hangup;
    std::future::pending().await
}
