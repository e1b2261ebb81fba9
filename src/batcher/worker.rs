//! The inference worker: one thread that owns the model, collects what is queued, plans it
//! into batches, runs each forward pass (a panic fails its batch, not the server) and answers
//! every sequence through its oneshot channel.

use super::plan::plan;
use super::{BatchLimits, Job};
use crate::metrics::ModelMetrics;
use crate::types::{Backend, Encoded};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

/// Sequences per round: the worker plans at most this many (times the batch size) at once,
/// the oldest first, so that under overload a new request waits for the queue ahead of it,
/// never for a whole round of everything queued when it arrived.
const ROUND_BATCHES: usize = 4;

pub(super) struct Worker<B> {
    pub(super) backend: B,
    pub(super) receiver: mpsc::Receiver<Job>,
    pub(super) limits: BatchLimits,
    pub(super) incoming: Arc<AtomicUsize>,
    pub(super) metrics: Arc<ModelMetrics>,
    pub(super) throughput: Arc<AtomicU64>,
}

impl<B: Backend> Worker<B> {
    pub(super) fn run(self) {
        while let Some(pool) = self.collect() {
            for batch in plan(pool, &self.limits) {
                self.run_batch(batch);
            }
        }
        tracing::debug!("inference worker stopped");
    }

    /// Blocks for the first job, then takes all that is queued and whatever arrives from
    /// requests already in tokenization, until the batch is full or the delay has passed.
    /// `None` once every sender is gone and the queue is empty.
    fn collect(&self) -> Option<Vec<Job>> {
        let first = self.receiver.recv().ok()?;
        let deadline = first.enqueued + self.limits.max_batch_delay;
        let round = self.limits.max_batch_size * ROUND_BATCHES;
        let mut pool = vec![first];
        pool.extend(self.receiver.try_iter().take(round - 1));
        while pool.len() < self.limits.max_batch_size && self.incoming.load(Ordering::SeqCst) > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.receiver.recv_timeout(left) {
                Ok(job) => {
                    pool.push(job);
                    pool.extend(
                        self.receiver
                            .try_iter()
                            .take(round.saturating_sub(pool.len())),
                    );
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        Some(pool)
    }

    fn run_batch(&self, mut jobs: Vec<Job>) {
        self.metrics.queue_depth.dec_by(jobs.len() as i64);
        // Clients that went away (timeout, disconnect) dropped their receivers: skip their work.
        let before = jobs.len();
        jobs.retain(|job| !job.reply.is_closed());
        self.metrics
            .sequences_cancelled
            .inc_by((before - jobs.len()) as u64);
        if jobs.is_empty() {
            return;
        }
        let now = Instant::now();
        for job in &jobs {
            self.metrics
                .queue_seconds
                .observe(now.duration_since(job.enqueued).as_secs_f64());
        }
        let longest = jobs.iter().map(|j| j.encoded.len()).max().unwrap_or(0);
        self.metrics.batch_size.observe(jobs.len() as f64);
        self.metrics
            .batch_tokens
            .observe((longest * jobs.len()) as f64);

        let inputs: Vec<&Encoded> = jobs.iter().map(|j| &j.encoded).collect();
        let result = catch_unwind(AssertUnwindSafe(|| self.backend.forward(&inputs)))
            .unwrap_or_else(|_| Err("inference panicked".to_string()));
        let seconds = now.elapsed().as_secs_f64();
        self.metrics.inference_seconds.observe(seconds);
        self.record_throughput(jobs.len(), seconds);
        match result {
            Ok(rows) if rows.len() == jobs.len() => {
                for (job, row) in jobs.into_iter().zip(rows) {
                    job.answer(Ok(row));
                }
            }
            Ok(rows) => {
                let error = format!(
                    "backend returned {} rows for {} sequences",
                    rows.len(),
                    jobs.len()
                );
                fail_all(jobs, error)
            }
            Err(e) => fail_all(jobs, e),
        }
    }
}

impl<B> Worker<B> {
    /// Folds one batch into the moving average of sequences per second that bounds the queue
    /// by time (--max-queue-wait).
    fn record_throughput(&self, sequences: usize, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        let rate = sequences as f64 / seconds;
        let old = f64::from_bits(self.throughput.load(Ordering::Relaxed));
        let new = if old > 0.0 {
            0.8 * old + 0.2 * rate
        } else {
            rate
        };
        self.throughput.store(new.to_bits(), Ordering::Relaxed);
    }
}

fn fail_all(jobs: Vec<Job>, error: String) {
    tracing::error!(%error, sequences = jobs.len(), "batch failed");
    for job in jobs {
        job.answer(Err(error.clone()));
    }
}
