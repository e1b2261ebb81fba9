//! Queue and batching stage: a bounded queue feeding one inference worker thread per device.
//! [`admission`] decides what the queue takes, [`worker`] runs the thread that owns the model,
//! [`plan`] splits what is queued into batches.
//!
//! Callers submit tokenized sequences and await one oneshot reply per sequence. The worker
//! thread owns the model; it takes everything queued, waits briefly for requests that are
//! already being tokenized, sorts by length so that batches carry little padding, and runs
//! batches bounded by `max_batch_size` sequences and `max_batch_tokens` padded tokens.

mod admission;
mod plan;
mod worker;

use crate::types::{Backend, Reply};
pub use admission::Admitted;
pub use plan::split_sizes;

use crate::metrics::ModelMetrics;
use crate::types::Encoded;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use worker::Worker;

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_batch_delay: Duration,
    pub max_queue_size: usize,
    /// Refuse work beyond this much estimated queueing time (zero: no such limit).
    pub max_queue_wait: Duration,
}

struct Job {
    encoded: Encoded,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
    /// Holds one place in the bounded queue until the job is answered or dropped.
    _permit: OwnedSemaphorePermit,
}

impl Job {
    /// Frees the job's queue place, then replies: the other way round, a client that sends its
    /// next request as soon as it has the answer could find its own old place still taken and
    /// get a spurious 429 (found by the fuzzer).
    fn answer(self, reply: Reply) {
        let Job {
            reply: sender,
            _permit,
            ..
        } = self;
        drop(_permit);
        let _ = sender.send(reply);
    }
}

pub struct Batcher {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    permits: Arc<Semaphore>,
    /// Requests being tokenized: the worker waits for these (up to the delay), never for
    /// requests that may or may not come.
    incoming: Arc<AtomicUsize>,
    limits: BatchLimits,
    metrics: Arc<ModelMetrics>,
    /// Sequences per second of inference, a moving average the worker keeps (f64 bits).
    throughput: Arc<AtomicU64>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Marks a request on its way to the queue; dropping it withdraws the mark.
pub struct Incoming(Arc<AtomicUsize>);

impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Batcher {
    pub fn start(backend: impl Backend, limits: BatchLimits, metrics: Arc<ModelMetrics>) -> Self {
        let (sender, receiver) = mpsc::channel();
        let incoming = Arc::new(AtomicUsize::new(0));
        let throughput = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            backend,
            receiver,
            limits,
            incoming: incoming.clone(),
            metrics: metrics.clone(),
            throughput: throughput.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || worker.run())
            .expect("cannot spawn the inference thread");
        Self {
            sender: Mutex::new(Some(sender)),
            permits: Arc::new(Semaphore::new(limits.max_queue_size)),
            incoming,
            limits,
            metrics,
            throughput,
            worker: Mutex::new(Some(handle)),
        }
    }

    pub(crate) fn limits(&self) -> BatchLimits {
        self.limits
    }

    pub fn announce(&self) -> Incoming {
        self.incoming.fetch_add(1, Ordering::SeqCst);
        Incoming(self.incoming.clone())
    }

    /// Stops taking work; the worker finishes what is queued and exits.
    pub(crate) fn shutdown(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let handle = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plan::plan;
    use super::*;
    use crate::types::InferenceError;

    fn job(len: usize, permits: &Arc<Semaphore>) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            encoded: Encoded {
                ids: vec![0; len],
                type_ids: vec![0; len],
                truncated: false,
            },
            enqueued: Instant::now(),
            reply,
            _permit: permits.clone().try_acquire_owned().unwrap(),
        };
        (job, rx)
    }

    fn limits(max_batch_size: usize, max_batch_tokens: usize) -> BatchLimits {
        BatchLimits {
            max_batch_size,
            max_batch_tokens,
            max_batch_delay: Duration::ZERO,
            max_queue_size: 1024,
            max_queue_wait: Duration::ZERO,
        }
    }

    #[test]
    fn one_long_text_does_not_pad_many_short_ones() {
        let mut lens: Vec<usize> = (0..31).map(|i| 5 + i).collect();
        lens.push(512);
        let sizes = split_sizes(&lens, &limits(32, 16384));
        assert_eq!(sizes.last(), Some(&1), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 32);
    }

    #[test]
    fn similar_lengths_share_a_batch_within_both_limits() {
        let lens: Vec<usize> = (0..64).map(|i| 20 + i % 5).collect::<Vec<_>>();
        let mut sorted = lens.clone();
        sorted.sort();
        let sizes = split_sizes(&sorted, &limits(32, 16384));
        assert_eq!(sizes, vec![32, 32]);
        // The token budget splits too.
        let sizes = split_sizes(&sorted[..16], &limits(32, 200));
        let mut start = 0;
        for size in &sizes {
            assert!(sorted[start + size - 1] * size <= 200, "{sizes:?}");
            start += size;
        }
        assert_eq!(start, 16);
    }

    #[test]
    fn plan_keeps_every_job_sorted_by_length() {
        let permits = Arc::new(Semaphore::new(100));
        let lens = [5, 100, 7, 6, 90, 8, 95];
        let (pool, _rx): (Vec<_>, Vec<_>) = lens.iter().map(|&l| job(l, &permits)).unzip();
        let batches = plan(pool, &limits(3, 200));
        let flat: Vec<usize> = batches.iter().flatten().map(|j| j.encoded.len()).collect();
        assert_eq!(flat, vec![5, 6, 7, 8, 90, 95, 100]);
        for b in &batches {
            assert!(b.len() <= 3 && b.last().unwrap().encoded.len() * b.len() <= 200);
        }
    }

    #[test]
    fn a_sequence_longer_than_the_token_budget_still_runs_alone() {
        let permits = Arc::new(Semaphore::new(10));
        let (pool, _rx): (Vec<_>, Vec<_>) = [300, 4].iter().map(|&l| job(l, &permits)).unzip();
        let sizes: Vec<usize> = plan(pool, &limits(8, 256))
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![1, 1]);
    }

    fn test_batcher(backend: impl Backend, limits: BatchLimits) -> Batcher {
        Batcher::start(
            backend,
            limits,
            crate::metrics::Metrics::new().for_model("test", 1),
        )
    }

    /// Takes 10 ms per sequence: about 100 sequences per second.
    struct Slow;

    impl Backend for Slow {
        fn forward(&self, batch: &[&Encoded]) -> Result<Vec<Vec<f32>>, String> {
            std::thread::sleep(Duration::from_millis(10) * batch.len() as u32);
            Ok(batch.iter().map(|e| vec![e.len() as f32]).collect())
        }
    }

    fn sequences(n: usize) -> Vec<Encoded> {
        (0..n)
            .map(|i| Encoded {
                ids: vec![0; 3 + i % 5],
                type_ids: vec![0; 3 + i % 5],
                truncated: false,
            })
            .collect()
    }

    #[tokio::test]
    async fn the_queue_holds_at_most_max_queue_wait_of_measured_work() {
        let limits = BatchLimits {
            max_batch_size: 4,
            max_batch_tokens: 1000,
            max_batch_delay: Duration::ZERO,
            max_queue_size: 1000,
            max_queue_wait: Duration::from_millis(200),
        };
        let batcher = test_batcher(Slow, limits);
        // Before any measurement only --max-queue-size applies.
        for rx in batcher.submit(sequences(8), batcher.announce()).unwrap() {
            rx.await.unwrap().unwrap();
        }
        // About 100 sequences/s measured: 200 ms of work is about 20 sequences.
        let accepted = batcher.submit(sequences(12), batcher.announce()).unwrap();
        match batcher.submit(sequences(12), batcher.announce()) {
            Err(InferenceError::Overloaded(message)) => {
                assert!(message.contains("--max-queue-wait"), "{message}")
            }
            other => panic!("expected 429, got {:?}", other.map(|r| r.len())),
        }
        for (rx, expected) in accepted.into_iter().zip(sequences(12)) {
            assert_eq!(rx.await.unwrap().unwrap(), vec![expected.len() as f32]);
        }
        // Drained: accepted again.
        assert_eq!(
            batcher
                .submit(sequences(12), batcher.announce())
                .unwrap()
                .len(),
            12
        );
        batcher.shutdown();
    }

    /// Answers at once.
    struct Echo;

    impl Backend for Echo {
        fn forward(&self, batch: &[&Encoded]) -> Result<Vec<Vec<f32>>, String> {
            Ok(batch.iter().map(|e| vec![e.len() as f32]).collect())
        }
    }

    #[tokio::test]
    async fn a_queue_place_is_free_before_its_answer_arrives() {
        let limits = BatchLimits {
            max_batch_size: 2,
            max_batch_tokens: 1000,
            max_batch_delay: Duration::ZERO,
            max_queue_size: 4,
            max_queue_wait: Duration::ZERO,
        };
        let batcher = test_batcher(Echo, limits);
        // A client that fills the queue and asks again the moment it has its answers must
        // always find room: it holds no place any more.
        for round in 0..2000 {
            let replies = batcher
                .submit(sequences(4), batcher.announce())
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            for rx in replies {
                rx.await.unwrap().unwrap();
            }
        }
        batcher.shutdown();
    }

    #[tokio::test]
    async fn a_lone_request_does_not_wait_the_batch_delay() {
        let limits = BatchLimits {
            max_batch_size: 8,
            max_batch_tokens: 1000,
            max_batch_delay: Duration::from_secs(1),
            max_queue_size: 64,
            max_queue_wait: Duration::ZERO,
        };
        let batcher = test_batcher(Echo, limits);
        // One client, one request at a time: nothing else is coming, so no round may wait
        // for the delay (a mark still counted after the last send made some wait 1 s).
        let started = Instant::now();
        for round in 0..500 {
            let replies = batcher
                .submit(sequences(1 + round % 3), batcher.announce())
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            for rx in replies {
                rx.await.unwrap().unwrap();
            }
        }
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "500 lone requests took {:?}",
            started.elapsed()
        );
        batcher.shutdown();
    }
}
