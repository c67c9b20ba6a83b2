//! An informer: one watch of a kind keeps a [`Store`] and reports each change (with the old
//! object on updates, which kube's reflector does not give) to a callback.

use std::collections::HashMap;
use std::fmt::Debug;
use std::pin::pin;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::key_of;

/// A change seen by an informer.
#[derive(Debug)]
pub enum Change<K> {
    /// A new object (also each object of the first list).
    Added(Arc<K>),
    /// An object changed.
    Updated { old: Arc<K>, new: Arc<K> },
    /// An object is gone.
    Deleted(Arc<K>),
}

/// A cache of one kind, filled by [`Store::run`]; cheap to clone and read.
#[derive(Debug)]
pub struct Store<K> {
    objects: Arc<RwLock<HashMap<String, Arc<K>>>>,
    synced_tx: Arc<watch::Sender<bool>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            objects: self.objects.clone(),
            synced_tx: self.synced_tx.clone(),
        }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: Arc::default(),
            synced_tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl<K: Resource + Clone> Store<K> {
    /// A store holding `objects`, already synced (for tests).
    pub fn from_objects(objects: impl IntoIterator<Item = K>) -> Self {
        let store = Store::default();
        {
            let mut map = store.write();
            for obj in objects {
                map.insert(key_of(&obj), Arc::new(obj));
            }
        }
        store.synced_tx.send_replace(true);
        store
    }

    /// The object under `key` (`namespace/name`).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Every object of namespace `ns`.
    pub fn list_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        self.read()
            .values()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns))
            .cloned()
            .collect()
    }

    /// Waits until the first list has been stored (or `shutdown`); false on shutdown.
    pub async fn wait_synced(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.synced_tx.subscribe();
        tokio::select! {
            r = rx.wait_for(|s| *s) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<K>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<K>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Watches `api` until `shutdown`, keeping the store and calling `on_change` for each change
    /// after the store holds it. Watch errors are retried with backoff.
    pub async fn run(
        self,
        api: Api<K>,
        on_change: impl Fn(Change<K>) + Send,
        shutdown: CancellationToken,
    ) {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = pin!(stream);
        let mut relist: Option<HashMap<String, Arc<K>>> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                None => return,
                Some(Err(err)) => tracing::debug!(%err, "watch failed; retrying"),
                Some(Ok(event)) => self.apply(event, &mut relist, &on_change),
            }
        }
    }

    fn apply(
        &self,
        event: watcher::Event<K>,
        relist: &mut Option<HashMap<String, Arc<K>>>,
        on_change: &impl Fn(Change<K>),
    ) {
        match event {
            watcher::Event::Init => *relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let Some(map) = relist.as_mut() {
                    map.insert(key_of(&obj), Arc::new(obj));
                }
            }
            watcher::Event::InitDone => {
                let fresh = relist.take().unwrap_or_default();
                let changes = self.replace(fresh);
                self.synced_tx.send_replace(true);
                changes.into_iter().for_each(on_change);
            }
            watcher::Event::Apply(obj) => {
                let new = Arc::new(obj);
                let old = self.write().insert(key_of(new.as_ref()), new.clone());
                on_change(match old {
                    Some(old) => Change::Updated { old, new },
                    None => Change::Added(new),
                });
            }
            watcher::Event::Delete(obj) => {
                let old = self.write().remove(&key_of(&obj));
                on_change(Change::Deleted(old.unwrap_or_else(|| Arc::new(obj))));
            }
        }
    }

    /// Swaps in a fresh list, returning what changed.
    fn replace(&self, fresh: HashMap<String, Arc<K>>) -> Vec<Change<K>> {
        let mut map = self.write();
        let mut changes = Vec::new();
        for (key, old) in map.iter() {
            if !fresh.contains_key(key) {
                changes.push(Change::Deleted(old.clone()));
            }
        }
        for (key, new) in &fresh {
            match map.get(key) {
                None => changes.push(Change::Added(new.clone())),
                Some(old) if old.resource_version() != new.resource_version() => {
                    changes.push(Change::Updated {
                        old: old.clone(),
                        new: new.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        *map = fresh;
        changes
    }
}
