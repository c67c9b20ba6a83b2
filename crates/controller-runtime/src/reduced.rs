//! For components that keep their own single-owner view of a few watched types instead of the
//! shared informers' stores (the service proxy and the network-policy enforcer on each node):
//! watch events forwarded into one channel, and a store of objects reduced to what the consumer
//! needs, with the initial list buffered so that a relist replaces the view at once.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Spawns a task that sends each event of `stream` (with backoff on errors), wrapped by `wrap`,
/// into `tx` until `shutdown` or until the receiver is gone; `what` names the watch in logs.
pub fn forward<K, S, U>(
    stream: S,
    tx: mpsc::UnboundedSender<U>,
    wrap: fn(watcher::Event<K>) -> U,
    what: &'static str,
    shutdown: &CancellationToken,
) where
    K: Send + 'static,
    U: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    if tx.send(wrap(event)).is_err() {
                        return;
                    }
                }
                Some(Err(err)) => tracing::warn!(%err, what, "watch failed; retrying"),
                None => return,
            }
        }
    });
}

/// Sleeps until `due`, or forever when nothing is due.
pub async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// `(namespace, name)`.
pub type Key = (String, String);

/// The watched objects of one type, keyed by namespace and name, each reduced to a `V`.
#[derive(Debug)]
pub struct Reduced<V> {
    objects: HashMap<Key, V>,
    buffer: Option<HashMap<Key, V>>,
    synced: bool,
}

impl<V> Default for Reduced<V> {
    fn default() -> Self {
        Reduced {
            objects: HashMap::new(),
            buffer: None,
            synced: false,
        }
    }
}

impl<V: Clone> Reduced<V> {
    /// Whether the first list has completed.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The current objects.
    pub fn objects(&self) -> &HashMap<Key, V> {
        &self.objects
    }

    /// Applies `event`, each object reduced by `reduce` (`None`: it does not count, as if
    /// deleted). Answers the values whose state may have changed: the old and the new value of
    /// an object, and after a relist everything before and after it.
    pub fn apply<K: Resource>(
        &mut self,
        event: watcher::Event<K>,
        reduce: impl Fn(&K) -> Option<V>,
    ) -> Vec<V> {
        let key = |o: &K| {
            let meta = o.meta();
            (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        };
        match event {
            watcher::Event::Apply(obj) => {
                let key = key(&obj);
                let new = reduce(&obj);
                let old = match &new {
                    Some(v) => self.objects.insert(key, v.clone()),
                    None => self.objects.remove(&key),
                };
                old.into_iter().chain(new).collect()
            }
            watcher::Event::Delete(obj) => {
                let old = self.objects.remove(&key(&obj));
                old.into_iter().chain(reduce(&obj)).collect()
            }
            watcher::Event::Init => {
                self.buffer = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                if let Some(v) = reduce(&obj) {
                    self.buffer.get_or_insert_default().insert(key(&obj), v);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let new = self.buffer.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.objects, new);
                self.synced = true;
                old.into_values()
                    .chain(self.objects.values().cloned())
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn cm(name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            data: Some([("v".to_string(), value.to_string())].into()),
            ..ConfigMap::default()
        }
    }

    /// Keeps the value, and drops objects whose value is "skip".
    fn value(cm: &ConfigMap) -> Option<String> {
        let v = cm.data.as_ref()?.get("v")?.clone();
        (v != "skip").then_some(v)
    }

    #[test]
    fn a_relist_replaces_the_view_at_once_and_reports_both_sides() {
        let mut store = Reduced::default();
        store.apply(watcher::Event::Init, value);
        store.apply(watcher::Event::InitApply(cm("a", "1")), value);
        store.apply(watcher::Event::InitApply(cm("skipped", "skip")), value);
        assert!(!store.synced() && store.objects().is_empty());
        let changed = store.apply(watcher::Event::<ConfigMap>::InitDone, value);
        assert!(store.synced());
        assert_eq!(changed, ["1"]);

        assert_eq!(
            store.apply(watcher::Event::Apply(cm("a", "2")), value),
            ["1", "2"]
        );
        assert_eq!(
            store.apply(watcher::Event::Apply(cm("a", "skip")), value),
            ["2"]
        );
        assert!(store.objects().is_empty(), "reduced away counts as deleted");
        store.apply(watcher::Event::Apply(cm("b", "3")), value);
        assert_eq!(
            store.apply(watcher::Event::Delete(cm("b", "3")), value),
            ["3", "3"]
        );

        store.apply(watcher::Event::Apply(cm("c", "4")), value);
        store.apply(watcher::Event::Init, value);
        store.apply(watcher::Event::InitApply(cm("d", "5")), value);
        let mut changed = store.apply(watcher::Event::<ConfigMap>::InitDone, value);
        changed.sort();
        assert_eq!(changed, ["4", "5"]);
        let keys: Vec<&Key> = store.objects().keys().collect();
        assert_eq!(keys, [&("ns".to_string(), "d".to_string())]);
    }
}
