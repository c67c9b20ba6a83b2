//! Shared informers: one watch and one store per resource type for every controller in the
//! process, as upstream's SharedInformerFactory. Ten controllers that all cache pods hold one copy
//! of each pod (the store keeps `Arc`s), not ten, and the API server serves one watch, not ten.
//!
//! A controller subscribes with a change handler; the handler first sees every object already in
//! the store as an add, then every change, so a controller started late misses nothing. After a
//! relist (the watch fell too far behind) objects that disappeared meanwhile are reported as
//! deletes, as client-go's `DeletedFinalStateUnknown`.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Change;
use crate::index::{self, Index, IndexData, IndexKeys};

/// A resource type the shared informers can watch: a typed, cluster-wide-listable object.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

type Handler<K> = Box<dyn Fn(Change<'_, K>) + Send>;

/// An informer's resource type and selectors.
type InformerKey = (TypeId, String);

/// The handlers of one informer, and those that joined before its first list finished (they
/// are replayed the whole store when it does).
struct Handlers<K> {
    all: Vec<Handler<K>>,
    joined_during_list: Vec<usize>,
    /// The first list has finished. (Polling `Store::wait_until_ready` here would steal the
    /// wake-up of a task really waiting on it: kube's store wakes only its last poller.)
    listed: bool,
    /// Indexes over the store, kept current with it.
    indexes: Vec<Arc<IndexData<K>>>,
}

struct Informer<K: Watched> {
    store: Store<K>,
    handlers: Mutex<Handlers<K>>,
}

impl<K: Watched> Informer<K> {
    fn handlers(&self) -> MutexGuard<'_, Handlers<K>> {
        self.handlers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The process's shared informers; cheap to clone.
#[derive(Clone)]
pub struct SharedInformers {
    client: Client,
    shutdown: CancellationToken,
    informers: Arc<Mutex<HashMap<InformerKey, Arc<dyn Any + Send + Sync>>>>,
}

impl SharedInformers {
    /// Informers that watch through `client` until `shutdown`.
    pub fn new(client: Client, shutdown: CancellationToken) -> Self {
        SharedInformers {
            client,
            shutdown,
            informers: Arc::default(),
        }
    }

    /// The client the informers watch with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The store of every `K` in the cluster; `on_change` sees each object already cached as an
    /// add, then every change after the store holds it.
    pub fn subscribe<K, F>(&self, on_change: F) -> Store<K>
    where
        K: Watched,
        F: Fn(Change<'_, K>) + Send + 'static,
    {
        self.subscribe_with(watcher::Config::default(), on_change)
    }

    /// As [`SharedInformers::subscribe`], for the objects `config` selects; subscribers with the
    /// same selectors share one watch.
    pub fn subscribe_with<K, F>(&self, config: watcher::Config, on_change: F) -> Store<K>
    where
        K: Watched,
        F: Fn(Change<'_, K>) + Send + 'static,
    {
        let informer = self.informer::<K>(config);
        let mut handlers = informer.handlers();
        let store = &informer.store;
        if handlers.listed {
            for obj in store.state() {
                on_change((None, Some(&*obj)));
            }
        } else {
            let index = handlers.all.len();
            handlers.joined_during_list.push(index);
        }
        handlers.all.push(Box::new(on_change));
        store.clone()
    }

    /// The store of every `K`, without a handler.
    pub fn store<K: Watched>(&self) -> Store<K> {
        self.informer::<K>(watcher::Config::default()).store.clone()
    }

    /// The index named `name` over the store of every `K`, created with the keys `keys`
    /// computes if no subscriber has asked for it yet (a later caller shares it, whatever
    /// `keys` it passes).
    pub fn index<K: Watched>(&self, name: &'static str, keys: IndexKeys<K>) -> Index<K> {
        let informer = self.informer::<K>(watcher::Config::default());
        let mut handlers = informer.handlers();
        if let Some(data) = handlers.indexes.iter().find(|d| d.name == name) {
            return Index::new(Arc::clone(data));
        }
        let data = Arc::new(IndexData::new(name, keys));
        if handlers.listed {
            data.rebuild(&informer.store.state());
        }
        handlers.indexes.push(Arc::clone(&data));
        Index::new(data)
    }

    /// Every `K` by the uid of its controller, and the orphans of a namespace under
    /// [`orphan_key`](index::orphan_key): what a controller may claim, without walking the
    /// namespace.
    pub fn by_controller<K: Watched>(&self) -> Index<K> {
        self.index(index::BY_CONTROLLER, index::controller_keys::<K>)
    }

    /// The store of every `K` and a stream with one item per change (bursts coalesce into one
    /// item while nobody polls), for controllers that resync a whole snapshot.
    pub fn changes<K: Watched>(&self) -> (Store<K>, BoxStream<'static, ()>) {
        let (tx, rx) = mpsc::channel::<()>(1);
        let store = self.subscribe::<K, _>(move |_| {
            let _ = tx.try_send(());
        });
        let stream =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|()| ((), rx)) },
            );
        (store, stream.boxed())
    }

    fn informer<K: Watched>(&self, config: watcher::Config) -> Arc<Informer<K>> {
        let key = (TypeId::of::<K>(), config_key(&config));
        let mut informers = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = informers.get(&key)
            && let Ok(informer) = Arc::clone(found).downcast::<Informer<K>>()
        {
            return informer;
        }
        let (reader, writer) = reflector::store::<K>();
        let informer = Arc::new(Informer {
            store: reader,
            handlers: Mutex::new(Handlers {
                all: Vec::new(),
                joined_during_list: Vec::new(),
                listed: false,
                indexes: Vec::new(),
            }),
        });
        let api = Api::<K>::all(self.client.clone());
        tokio::spawn(run(
            api,
            config,
            writer,
            Arc::clone(&informer),
            self.shutdown.clone(),
        ));
        informers.insert(key, informer.clone());
        informer
    }
}

/// Identifies a watch's selection: informers with equal keys are shared.
fn config_key(config: &watcher::Config) -> String {
    format!(
        "{:?}|{:?}",
        config.label_selector.as_deref().unwrap_or_default(),
        config.field_selector.as_deref().unwrap_or_default()
    )
}

/// Feeds the store from the watch and tells the handlers, until `shutdown`.
async fn run<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<K>,
    informer: Arc<Informer<K>>,
    shutdown: CancellationToken,
) {
    let stream = watcher(api, config).default_backoff();
    let mut stream = pin!(stream);
    // Keys cached when a relist began: those the relist does not bring back were deleted.
    let mut before_relist: Option<HashSet<ObjectRef<K>>> = None;
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
        // Handlers run under the lock that subscribing takes, so a new subscriber's replay and
        // the changes it then sees neither overlap nor leave a gap.
        let mut handlers = informer.handlers();
        let store = &informer.store;
        match &event {
            watcher::Event::Init => {
                before_relist = Some(
                    store
                        .state()
                        .iter()
                        .map(|o| ObjectRef::from_obj(&**o))
                        .collect(),
                );
                writer.apply_watcher_event(&event);
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let key = ObjectRef::from_obj(obj);
                let old = store.get(&key);
                writer.apply_watcher_event(&event);
                if let Some(seen) = before_relist.as_mut() {
                    seen.remove(&key);
                }
                // A relist's objects reach the store (and so the indexes) only at InitDone.
                if matches!(event, watcher::Event::Apply(_)) && !handlers.indexes.is_empty() {
                    let new = store.get(&key);
                    for index in &handlers.indexes {
                        index.update(old.as_deref(), new.as_ref());
                    }
                }
                for handler in &handlers.all {
                    handler((old.as_deref(), Some(obj)));
                }
            }
            watcher::Event::Delete(obj) => {
                // Unindexed under the keys of the version the indexes hold.
                let cached = store.get(&ObjectRef::from_obj(obj));
                writer.apply_watcher_event(&event);
                for index in &handlers.indexes {
                    index.update(Some(cached.as_deref().unwrap_or(obj)), None);
                }
                for handler in &handlers.all {
                    handler((Some(obj), None));
                }
            }
            watcher::Event::InitDone => {
                let gone: Vec<Arc<K>> = before_relist
                    .take()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|key| store.get(key))
                    .collect();
                writer.apply_watcher_event(&event);
                if !handlers.indexes.is_empty() {
                    let objects = store.state();
                    for index in &handlers.indexes {
                        index.rebuild(&objects);
                    }
                }
                for obj in &gone {
                    for handler in &handlers.all {
                        handler((Some(&**obj), None));
                    }
                }
                handlers.listed = true;
                let late = std::mem::take(&mut handlers.joined_during_list);
                for obj in store.state() {
                    for &index in &late {
                        handlers.all[index]((None, Some(&*obj)));
                    }
                }
            }
        }
        drop(handlers);
    }
}
