//! Helpers shared by the HTTP benchmarks: the server process, health waits, memory sampling,
//! the SST-2 sentences and the JSON records.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Server {
    pub name: String,
    pub url: String,
    pub child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn wait_healthy(url: &str, limit: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + limit;
    runtime.block_on(async {
        loop {
            let healthy = reqwest::get(format!("{url}/health"))
                .await
                .map(|r| r.status().is_success());
            if healthy.unwrap_or(false) {
                return;
            }
            assert!(Instant::now() < deadline, "{url} never became healthy");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub fn load_data(path: &PathBuf) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| {
            let (label, text) = l.split_once('\t')?;
            Some((label.trim().parse().ok()?, text.to_string()))
        })
        .collect()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Prints one JSON record and appends it to `out` (one record a line) when given.
pub fn emit(record: &serde_json::Value, out: Option<&Path>) {
    use std::io::Write;
    println!("{record}");
    if let Some(out) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("open --out");
        writeln!(f, "{record}").expect("write --out");
    }
}

/// The measured window of a closed-loop run whose client `tasks` are already running and
/// record only while `recording` is set: `warmup` first, then `duration` of recording with the
/// server's resident memory (`pid`) sampled every 100 ms; then the clients are stopped and
/// awaited. Returns the seconds recorded and the peak RSS in MB (0 without a pid).
pub async fn measure(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    recording: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
    (warmup, duration): (Duration, Duration),
    pid: Option<u32>,
) -> (f64, f64) {
    use std::sync::atomic::Ordering;
    tokio::time::sleep(warmup).await;
    recording.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let mut peak = 0.0f64;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(pid.and_then(rss_mb).unwrap_or(0.0));
    }
    recording.store(false, Ordering::SeqCst);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = task.await;
    }
    (seconds, peak)
}
