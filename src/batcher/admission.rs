//! Admission: what the queue takes. A request's sequences are admitted all or none, bounded
//! by `--max-queue-size` places and by `--max-queue-wait` of work at the measured throughput,
//! before they are tokenized; then queued in the places taken.

use super::{Batcher, Incoming, Job, Reply};
use crate::types::{Encoded, InferenceError};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Queue places taken for one request's sequences before they are tokenized, so that
/// tokenization counts toward admission; given back when dropped unused.
pub struct Admitted(OwnedSemaphorePermit);

impl Batcher {
    /// Takes queue places for `n` sequences, or refuses the whole request (429) when the queue
    /// holds `--max-queue-size` sequences, or `--max-queue-wait` of work at the measured
    /// throughput. Places taken count as queued until the sequences are answered.
    pub(crate) fn admit(&self, n: usize) -> Result<Admitted, InferenceError> {
        let queued = self.limits.max_queue_size - self.permits.available_permits();
        if let Some(limit) = self.wait_limit() {
            if queued + n > limit {
                let rate = f64::from_bits(self.throughput.load(Ordering::Relaxed));
                return Err(InferenceError::Overloaded(format!(
                    "the queue holds about {:.1}s of work ({queued} sequences at {rate:.0}/s; --max-queue-wait {:?})",
                    queued as f64 / rate,
                    self.limits.max_queue_wait
                )));
            }
        }
        let full = || {
            InferenceError::Overloaded(format!(
                "the queue is full ({queued} of --max-queue-size {} sequences waiting)",
                self.limits.max_queue_size
            ))
        };
        let permit = u32::try_from(n)
            .ok()
            .and_then(|n| self.permits.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(full)?;
        Ok(Admitted(permit))
    }

    /// Takes `n` more queue places for a request that `admitted` holds places for (inputs
    /// whose number is known only once tokenized: token classification's windows), refused as
    /// [`Batcher::admit`] refuses.
    pub(crate) fn admit_more(
        &self,
        admitted: &mut Admitted,
        n: usize,
    ) -> Result<(), InferenceError> {
        let more = self.admit(n)?;
        // Both from this batcher's semaphore, so merging cannot panic; an `Admitted` of
        // another batcher (a reload's other engine) is refused instead.
        if !std::sync::Arc::ptr_eq(admitted.0.semaphore(), &self.permits) {
            return Err(InferenceError::Internal(
                "queue places of another queue".into(),
            ));
        }
        admitted.0.merge(more.0);
        Ok(())
    }

    /// [`Batcher::admit`], then [`Batcher::enqueue`].
    pub fn submit(
        &self,
        sequences: Vec<Encoded>,
        incoming: Incoming,
    ) -> Result<Vec<oneshot::Receiver<Reply>>, InferenceError> {
        let admitted = self.admit(sequences.len())?;
        self.enqueue(admitted, sequences, incoming)
    }

    /// Queues every sequence of one request in the places `admitted` holds for them.
    /// `incoming` is the request's mark from [`Batcher::announce`], withdrawn just before its
    /// last sequence is queued.
    pub(crate) fn enqueue(
        &self,
        admitted: Admitted,
        sequences: Vec<Encoded>,
        incoming: Incoming,
    ) -> Result<Vec<oneshot::Receiver<Reply>>, InferenceError> {
        let n = sequences.len();
        let mut permit = admitted.0;
        if n != permit.num_permits() {
            return Err(InferenceError::Internal(
                "queue places taken for another number of sequences".into(),
            ));
        }
        let guard = self
            .sender
            .lock()
            .map_err(|_| InferenceError::Internal("queue lock poisoned".into()))?;
        let sender = guard
            .as_ref()
            .ok_or_else(|| InferenceError::Stopped("the server is shutting down".into()))?;
        let now = Instant::now();
        let mut receivers = Vec::with_capacity(sequences.len());
        let mut incoming = Some(incoming);
        for (i, encoded) in sequences.into_iter().enumerate() {
            let (reply, rx) = oneshot::channel();
            let one = permit
                .split(1)
                .ok_or_else(|| InferenceError::Internal("queue permit accounting".into()))?;
            let job = Job {
                encoded,
                enqueued: now,
                reply,
                _permit: one,
            };
            if i + 1 == n {
                // Withdrawn before, not after, the last send: a worker woken by this job
                // would otherwise still count the request as coming and wait
                // --max-batch-delay for sequences it has no more of.
                drop(incoming.take());
            }
            sender
                .send(job)
                .map_err(|_| InferenceError::Stopped("the inference worker has stopped".into()))?;
            self.metrics.queue_depth.inc();
            receivers.push(rx);
        }
        Ok(receivers)
    }

    /// Most sequences the queue may hold for --max-queue-wait at the measured throughput (at
    /// least one full batch); `None` until there is a measurement, or when disabled.
    fn wait_limit(&self) -> Option<usize> {
        let rate = f64::from_bits(self.throughput.load(Ordering::Relaxed));
        if self.limits.max_queue_wait.is_zero() || rate <= 0.0 {
            return None;
        }
        let limit = (rate * self.limits.max_queue_wait.as_secs_f64()) as usize;
        Some(limit.max(self.limits.max_batch_size))
    }
}
