//! The controller plumbing upstream's controllers share: informers (a reflector store plus a
//! change callback that sees the old and the new object) and a keyed work queue (a key is never
//! processed twice at once, re-added keys are coalesced, failures back off per key), with the
//! worker loop that drives a sync function.

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
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The first retry delay of a failing key; doubled on each failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(5);
/// The longest retry delay (client-go's default item rate limiter caps at 1000 s).
const MAX_BACKOFF: Duration = Duration::from_secs(1000);

/// A change seen by an informer: `(old, new)`; `old` is `None` on add, `new` is `None` on delete.
pub type Change<'a, K> = (Option<&'a K>, Option<&'a K>);

/// Starts watching `api` into a store, calling `on_change` after the store holds each change.
pub fn informer<K, F>(
    api: Api<K>,
    config: watcher::Config,
    shutdown: CancellationToken,
    on_change: F,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    F: Fn(Change<'_, K>) + Send + 'static,
{
    let (reader, mut writer) = reflector::store::<K>();
    let store = reader.clone();
    tokio::spawn(async move {
        let stream = watcher(api, config).default_backoff();
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
            let old = match &event {
                watcher::Event::Apply(obj) => reader.get(&ObjectRef::from_obj(obj)),
                _ => None,
            };
            writer.apply_watcher_event(&event);
            match &event {
                watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                    on_change((old.as_deref(), Some(obj)));
                }
                watcher::Event::Delete(obj) => on_change((Some(obj), None)),
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    });
    store
}

/// Waits until every store has listed once, or `shutdown`.
pub async fn wait_synced(
    shutdown: &CancellationToken,
    waits: Vec<futures::future::BoxFuture<'static, bool>>,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        all = futures::future::join_all(waits) => all.into_iter().all(|ok| ok),
    }
}

/// `Store::wait_until_ready` as a boxed future for [`wait_synced`].
pub fn ready<K>(store: &Store<K>) -> futures::future::BoxFuture<'static, bool>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let store = store.clone();
    Box::pin(async move { store.wait_until_ready().await.is_ok() })
}

#[derive(Default)]
struct QueueState<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

/// A keyed work queue with client-go's semantics.
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
            *n += 1;
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
}

/// What a sync asks of the queue when it succeeded.
pub type Requeue = Option<Duration>;

/// Runs `workers` workers that sync keys until `shutdown`: a failed sync is retried with
/// backoff, a successful one may ask to run again after a delay.
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
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, sync, shutdown) = (queue.clone(), sync.clone(), shutdown.clone());
        tasks.spawn(async move {
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
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(delay) = requeue {
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(?key, %err, "sync failed; retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// `namespace/name` of an object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Splits a `namespace/name` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Looks `namespace/name` up in a store.
pub fn lookup<K>(store: &Store<K>, key: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (ns, name) = split_key(key);
    store.get(&ObjectRef::new(name).within(ns))
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
        // Re-added while processing: not handed out until done.
        q.add("a".into());
        assert_eq!(q.next().await, "b");
        q.done(&"b".to_string());
        q.done(&first);
        assert_eq!(q.next().await, "a");
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
}
