//! A keyed work queue with client-go's semantics (a key waits at most once, a key being processed
//! is not handed out again until [`Queue::done`], failures back off per key) and the worker loop
//! that drives a sync function over it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The first retry delay of a failing key; doubled on each failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(5);
/// The longest retry delay (client-go's default item rate limiter caps at 1000 s).
const MAX_BACKOFF: Duration = Duration::from_secs(1000);

/// The longest one sync may take: a sync still running then is abandoned and its key retried
/// with backoff, so that a hung API call cannot hold a key (whose updates are only marked dirty
/// while it is processed) or a worker forever.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// After a sync that kept its worker busy (computing, not waiting) for `b`, its key is not
/// handed out again for `b` times this; changes meanwhile coalesce into one more sync. An
/// object whose sync walks 30,000 pods and whose pods change all the time would otherwise be
/// synced back to back and keep a core busy by itself; with this it takes at most a quarter of
/// one. Cheap syncs (see [`COOLDOWN_FROM`]) are not held back.
pub const COOLDOWN_FACTOR: u32 = 3;
/// Syncs busy for less than this are handed out again at once.
pub const COOLDOWN_FROM: Duration = Duration::from_millis(1);

struct QueueState<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

/// A keyed work queue with client-go's semantics; cheap to clone.
pub struct Queue<T> {
    state: Arc<Mutex<QueueState<T>>>,
    notify: Arc<Notify>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            state: self.state.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Arc::new(Mutex::new(QueueState {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            })),
            notify: Arc::new(Notify::new()),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it is already waiting; a key being processed runs again after.
    pub fn add(&self, key: T) {
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` after its next backoff delay.
    pub fn add_rate_limited(&self, key: T) {
        let failures = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
        let delay = BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF);
        self.add_after(key, delay);
    }

    /// Clears `key`'s failure count.
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    /// Takes the next key, marking it processing; call [`Queue::done`] after.
    pub async fn next(&self) -> T {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Ends processing of `key`; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &T) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// As [`Queue::done`], `delay` from now (the key stays processing until then).
    pub fn done_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.done(&key);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.done(&key);
        });
    }

    /// How many keys wait to be handed out.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a sync asks of the queue when it succeeded: `Some(delay)` to run again after `delay`.
pub type Requeue = Option<Duration>;

/// Runs `workers` workers that sync keys until `shutdown`: a failed sync is retried with
/// backoff, a successful one may ask to run again after a delay. A sync that panics or takes
/// longer than [`SYNC_TIMEOUT`] is retried with backoff too; neither takes its worker (or its
/// key) with it. The workers log within the caller's current span.
pub async fn run_workers<T, F, Fut, E>(
    queue: Queue<T>,
    workers: usize,
    shutdown: CancellationToken,
    sync: F,
) where
    T: Clone + Eq + Hash + Send + Sync + Debug + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Requeue, E>> + Send,
    E: std::fmt::Display,
{
    let span = tracing::Span::current();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, shutdown, sync) = (queue.clone(), shutdown.clone(), sync.clone());
        // An async block, not `work(..)` itself: a task need only own its captures.
        let worker = async move { work(queue, shutdown, sync).await };
        tasks.spawn(worker.instrument(span.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// One worker: takes keys and syncs them until `shutdown`.
async fn work<T, F, Fut, E>(queue: Queue<T>, shutdown: CancellationToken, sync: F)
where
    T: Clone + Eq + Hash + Send + Sync + Debug + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<Requeue, E>>,
    E: std::fmt::Display,
{
    loop {
        let key = tokio::select! {
            _ = shutdown.cancelled() => return,
            key = queue.next() => key,
        };
        let mut guarded = std::pin::pin!(AssertUnwindSafe(sync(key.clone())).catch_unwind());
        // The time spent inside the sync's polls: what it cost the worker, without its waits.
        let mut busy = Duration::ZERO;
        let timed = std::future::poll_fn(|cx| {
            let started = std::time::Instant::now();
            let poll = guarded.as_mut().poll(cx);
            busy += started.elapsed();
            poll
        });
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = tokio::time::timeout(SYNC_TIMEOUT, timed) => outcome,
        };
        match outcome {
            Ok(Ok(Ok(requeue))) => {
                queue.forget(&key);
                if let Some(delay) = requeue {
                    queue.add_after(key.clone(), delay);
                }
            }
            Ok(Ok(Err(err))) => {
                tracing::warn!(?key, %err, "sync failed; retrying");
                queue.add_rate_limited(key.clone());
            }
            Ok(Err(_panic)) => {
                tracing::error!(?key, "sync panicked; retrying");
                queue.add_rate_limited(key.clone());
            }
            Err(_elapsed) => {
                tracing::warn!(?key, timeout = ?SYNC_TIMEOUT, "sync timed out; retrying");
                queue.add_rate_limited(key.clone());
            }
        }
        if busy < COOLDOWN_FROM {
            queue.done(&key);
        } else {
            queue.done_after(key, busy.saturating_mul(COOLDOWN_FACTOR));
        }
    }
}

/// Queues `keys()` every `period` until `shutdown` (upstream's informer resync).
pub fn resync<T, F>(queue: Queue<T>, period: Duration, shutdown: CancellationToken, keys: F)
where
    T: Clone + Eq + Hash + Send + 'static,
    F: Fn() -> Vec<T> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            for key in keys() {
                queue.add(key);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn coalesces_and_serialises_keys() {
        let q: Queue<String> = Queue::default();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        let first = q.next().await;
        assert_eq!(first, "a");
        // Re-added while processing: not handed out until done.
        q.add("a".into());
        assert_eq!(q.next().await, "b");
        q.done(&"b".to_string());
        assert!(q.is_empty());
        q.done(&first);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_costly_sync_holds_its_key_for_a_multiple_of_its_busy_time() {
        const WORK: Duration = Duration::from_millis(5);
        let q: Queue<&'static str> = Queue::default();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let (s, again) = (starts.clone(), q.clone());
        let workers = tokio::spawn(run_workers(q.clone(), 2, shutdown.clone(), move |k| {
            let (s, again) = (s.clone(), again.clone());
            async move {
                let first = {
                    let mut starts = s.lock().unwrap();
                    starts.push((k, tokio::time::Instant::now()));
                    starts.iter().filter(|(key, _)| *key == k).count() == 1
                };
                if k == "costly" {
                    // Busy, not waiting: the worker computes for WORK.
                    std::thread::sleep(WORK);
                }
                if first {
                    // A change arrives during the sync.
                    again.add(k);
                }
                Ok::<_, String>(None)
            }
        }));
        q.add("costly");
        q.add("cheap");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let starts = starts.lock().unwrap().clone();
        let times = |key: &str| -> Vec<tokio::time::Instant> {
            starts
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, t)| *t)
                .collect()
        };
        let costly = times("costly");
        assert_eq!(
            costly.len(),
            2,
            "a change during the sync runs it once more"
        );
        assert!(
            costly[1] - costly[0] >= WORK * COOLDOWN_FACTOR,
            "held back for {:?}",
            costly[1] - costly[0]
        );
        let cheap = times("cheap");
        assert_eq!(cheap.len(), 2);
        assert!(cheap[1] - cheap[0] < WORK, "a cheap sync is not held back");
        shutdown.cancel();
        let _ = workers.await;
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_per_key() {
        let q: Queue<String> = Queue::default();
        q.add_rate_limited("a".into());
        q.add_rate_limited("a".into());
        let start = tokio::time::Instant::now();
        assert_eq!(q.next().await, "a");
        assert!(start.elapsed() >= Duration::from_millis(5));
    }

    /// Counts the syncs of each outcome; the first sync of "panic" panics, the first of "hang"
    /// never returns, later ones succeed.
    async fn flaky(key: &'static str, calls: Arc<AtomicUsize>) -> Result<Requeue, String> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        match (key, n) {
            ("panic", 0) => panic!("sync bug"),
            ("hang", 0) => std::future::pending().await,
            _ => Ok(None),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_or_hung_sync_is_retried_and_keeps_its_worker() {
        for key in ["panic", "hang"] {
            let q: Queue<&'static str> = Queue::default();
            let calls = Arc::new(AtomicUsize::new(0));
            let shutdown = CancellationToken::new();
            let c = calls.clone();
            let workers = tokio::spawn(run_workers(q.clone(), 1, shutdown.clone(), move |k| {
                flaky(k, c.clone())
            }));
            q.add(key);
            tokio::time::sleep(SYNC_TIMEOUT + Duration::from_secs(1)).await;
            assert_eq!(calls.load(Ordering::SeqCst), 2, "{key}: retried once");
            // The one worker still serves, and the key is no longer held.
            q.add(key);
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(calls.load(Ordering::SeqCst), 3, "{key}: worker alive");
            shutdown.cancel();
            let _ = workers.await;
        }
    }
}
