//! Download progress: a bar on a terminal, a log line every few seconds otherwise (container
//! logs, CI), so that a first start that fetches hundreds of megabytes never looks hung.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a log line reports a download in progress when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Progress {
    file: String,
    total: u64,
    bar: Option<ProgressBar>,
    next_log: Instant,
}

impl Progress {
    /// Progress of `file`, `total` bytes long.
    pub(super) fn start(file: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(file.to_string());
            bar
        });
        Self {
            file: file.to_string(),
            total,
            bar,
            next_log: Instant::now() + LOG_EVERY,
        }
    }

    /// `done` bytes of the file are written.
    pub(super) fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if Instant::now() >= self.next_log {
            self.next_log = Instant::now() + LOG_EVERY;
            tracing::info!(
                file = %self.file,
                bytes = done,
                total = self.total,
                percent = format!("{:.0}", 100.0 * done as f64 / self.total.max(1) as f64),
                "downloading"
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // The "verified" log line that follows says the rest.
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
