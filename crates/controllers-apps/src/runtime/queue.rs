//! A work queue as client-go's rate-limited queue: a key waits at most once, a key being worked
//! on is not handed out again until [`WorkQueue::done`] (if re-added meanwhile it is queued
//! then), and failures back off exponentially per key.

use futures::FutureExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The first retry delay after a failure (doubled on each further failure).
const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    processing: HashSet<String>,
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// A deduplicating queue of object keys; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.lock();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` after its backoff, which doubles with each failure until [`Self::forget`].
    pub fn add_rate_limited(&self, key: impl Into<String>) {
        let key = key.into();
        let failures = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        let delay = BASE_DELAY.saturating_mul(factor).min(MAX_DELAY);
        self.add_after(key, delay);
    }

    /// Clears the failure count of `key`.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next key; `None` on shutdown.
    pub async fn next(&self, shutdown: &CancellationToken) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    /// Marks `key` finished; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &str) {
        let requeue = {
            let mut s = self.lock();
            s.processing.remove(key);
            s.dirty.remove(key)
        };
        if requeue {
            self.add(key);
        }
    }

    /// Number of keys waiting (for tests).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a sync asks of the queue after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Done until something changes.
    No,
    /// Look again after this delay (e.g. for minReadySeconds).
    After(Duration),
}

/// The longest one sync may take before it is abandoned and retried.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `workers` workers taking keys from `queue` and calling `sync` until `shutdown`. An error
/// requeues the key with backoff; success forgets its failures.
pub async fn run_workers<F, Fut, E>(
    name: &'static str,
    queue: WorkQueue,
    workers: usize,
    sync: F,
    shutdown: CancellationToken,
) where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Requeue, E>> + Send,
    E: std::fmt::Display,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, sync, shutdown) = (queue.clone(), sync.clone(), shutdown.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.next(&shutdown).await {
                // A sync that never returns would hold its key forever (updates to the object
                // are only marked dirty while it is processed): bound it and retry instead.
                // A panic must not take the worker (and the key it holds) with it.
                let guarded = std::panic::AssertUnwindSafe(sync(key.clone())).catch_unwind();
                let result = match tokio::time::timeout(SYNC_TIMEOUT, guarded).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => {
                        tracing::error!(controller = name, key, "sync panicked; requeued");
                        queue.add_rate_limited(key.clone());
                        queue.done(&key);
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(controller = name, key, "sync timed out; requeued");
                        queue.add_rate_limited(key.clone());
                        queue.done(&key);
                        continue;
                    }
                };
                match result {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Requeue::After(delay) = requeue {
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    Err(err) => {
                        tracing::info!(controller = name, key, %err, "sync failed; requeued");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_once_and_is_exclusive_while_processed() {
        let q = WorkQueue::default();
        let token = CancellationToken::new();
        q.add("a");
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.next(&token).await.as_deref(), Some("a"));
        q.add("a");
        assert_eq!(q.len(), 0, "a key being processed is not queued twice");
        q.done("a");
        assert_eq!(q.len(), 1, "re-added while processed: queued on done");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off() {
        let q = WorkQueue::default();
        let token = CancellationToken::new();
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        tokio::time::sleep(Duration::from_millis(6)).await;
        let got = tokio::time::timeout(Duration::from_millis(20), q.next(&token)).await;
        assert_eq!(got.ok().flatten().as_deref(), Some("a"));
    }
}
