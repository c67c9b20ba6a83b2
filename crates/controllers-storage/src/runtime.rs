//! Controller plumbing: informers (a reflector store plus a change callback) and a keyed work
//! queue with client-go's semantics (a key is never processed twice at once, re-added keys are
//! coalesced, failures back off per key), driven by one worker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const BASE_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Starts watching `api` into a store, calling `on_change(obj)` after the store holds each
/// applied or deleted object.
pub fn informer<K, F>(api: Api<K>, shutdown: CancellationToken, on_change: F) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    F: Fn(&K) + Send + 'static,
{
    let (reader, mut writer) = reflector::store::<K>();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = pin!(stream);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = stream.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(err)) => {
                    tracing::warn!(%err, kind = %K::kind(&()), "watch failed; retrying");
                    continue;
                }
                None => return,
            };
            writer.apply_watcher_event(&event);
            match &event {
                watcher::Event::Apply(obj)
                | watcher::Event::InitApply(obj)
                | watcher::Event::Delete(obj) => on_change(obj),
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    });
    reader
}

/// Waits until `store` has listed once; `false` on shutdown first.
pub async fn wait_ready<K>(shutdown: &CancellationToken, store: &Store<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    tokio::select! {
        _ = shutdown.cancelled() => false,
        ready = store.wait_until_ready() => ready.is_ok(),
    }
}

struct QueueState<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

/// A keyed work queue.
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
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` after its next backoff delay (5 ms doubling, at most 300 s).
    pub fn add_rate_limited(&self, key: T) {
        let failures = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
        self.add_after(key, BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF));
    }

    fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    async fn next(&self) -> T {
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

    fn done(&self, key: &T) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }
}

/// Syncs keys one at a time until `shutdown`; a failed sync is retried with backoff.
pub async fn run_worker<T, F, Fut, E>(queue: Queue<T>, shutdown: CancellationToken, sync: F)
where
    T: Clone + Eq + Hash + Send + Debug + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    loop {
        let key = tokio::select! {
            _ = shutdown.cancelled() => return,
            key = queue.next() => key,
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = sync(key.clone()) => result,
        };
        match result {
            Ok(()) => queue.forget(&key),
            Err(err) => {
                tracing::warn!(?key, %err, "sync failed; retrying");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}

/// Enqueues `keys()` every `period` until `shutdown` (upstream's informer resync).
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
    use super::*;

    #[tokio::test]
    async fn coalesces_and_serialises_keys() {
        let q: Queue<String> = Queue::default();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        let first = q.next().await;
        assert_eq!(first, "a");
        q.add("a".into());
        assert_eq!(q.next().await, "b");
        q.done(&"b".to_string());
        q.done(&first);
        assert_eq!(q.next().await, "a");
    }
}
