//! Releasing a replaced or unloaded version: its requests finish on it first.

use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;

/// How often a retired engine checks whether its last request has finished.
const POLL: Duration = Duration::from_millis(50);

/// Waits until nothing but `engine` itself holds the engine (every in-flight and queued
/// request holds it, directly or through the served-set snapshot it took), then stops its
/// worker and frees its model on a blocking thread, and returns freed heap to the system.
pub(super) fn release(engine: Arc<Engine>, model: String, version: u64) {
    tokio::spawn(async move {
        // Once out of the served set no new reference can appear: a request takes its engine
        // from a snapshot, and a snapshot that still holds this one counts here.
        while Arc::strong_count(&engine) > 1 {
            tokio::time::sleep(POLL).await;
        }
        let freed = tokio::task::spawn_blocking(move || {
            engine.shutdown();
            drop(engine);
            trim_heap();
        })
        .await;
        match freed {
            Ok(()) => tracing::info!(model = %model, version, "released a retired model version"),
            Err(error) => {
                tracing::error!(model = %model, version, %error, "releasing a model version failed")
            }
        }
    });
}

/// glibc keeps freed memory in its arenas for reuse: a model's packed weights (tens to
/// hundreds of MB, freed in pieces) would keep the process's resident size at its peak after
/// a reload. `malloc_trim` hands the free pages back. Other allocators return memory on
/// their own terms; nothing to do there.
#[allow(unsafe_code)]
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers of ours.
    let _released = unsafe { libc::malloc_trim(0) };
}
