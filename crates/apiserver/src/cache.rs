//! The watch cache: every stored object in memory, kept current by one watch on the store, so
//! that gets, lists and watches are served from memory. Consistent reads wait until the cache
//! has caught up with the store's current revision, as upstream does since 1.31.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8rs_store::{Event, KeyValue, Revision, Store};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;

/// How many past events the cache keeps for watches that start from an older revision.
const HISTORY: usize = 50_000;
/// How far a live watcher may fall behind before it is closed (it then re-watches).
const CHANNEL: usize = 16_384;
/// How long a consistent read waits for the cache to catch up.
const CATCH_UP: Duration = Duration::from_secs(3);

/// One object as the cache holds it: its encoded form with `resourceVersion` set, and what
/// selectors need, so that filtering never decodes JSON.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub json: Bytes,
    pub revision: Revision,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Values of the resource's extra field selectors, in the registry's order.
    pub fields: Vec<String>,
}

impl CachedObject {
    /// Decodes a stored value and stamps `resourceVersion` = `revision`.
    pub fn decode(
        registry: &Registry,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Option<Self> {
        let mut v: Value = serde_json::from_slice(value).ok()?;
        Some(Self::from_value(registry, key, &mut v, revision))
    }

    pub fn from_value(registry: &Registry, key: &str, v: &mut Value, revision: Revision) -> Self {
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                Value::String(revision.to_string()),
            );
        }
        let meta = &v["metadata"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let labels = meta["labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default();
        let fields = registry
            .for_key(key)
            .map(|(def, _, _)| {
                def.field_selectors
                    .iter()
                    .map(|(_, path)| field_value(v, path))
                    .collect()
            })
            .unwrap_or_default();
        CachedObject {
            key: key.to_string(),
            json: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            revision,
            namespace: text(&meta["namespace"]),
            name: text(&meta["name"]),
            labels,
            fields,
        }
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// The string form of the field at a dotted path, as field selectors compare it.
pub fn field_value(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        cur = &cur[part];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => match path {
            "spec.unschedulable" | "spec.hostNetwork" => "false".into(),
            _ => String::new(),
        },
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers receive it.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub revision: Revision,
    pub obj: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

pub type Objects = imbl::OrdMap<String, Arc<CachedObject>>;

struct State {
    objects: Objects,
    revision: Revision,
    history: VecDeque<Arc<CacheEvent>>,
    /// Watches may start from any revision at or after this one.
    oldest: Revision,
    events: broadcast::Sender<Arc<CacheEvent>>,
}

/// A watch started from the cache: the events after the requested revision already known, and
/// the live channel for those that follow.
pub struct CacheWatch {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    pub revision: Revision,
}

pub struct WatchCache {
    state: RwLock<State>,
    revision: watch::Sender<Revision>,
    registry: &'static Registry,
    store: Arc<dyn Store>,
}

impl WatchCache {
    /// Loads every object and starts following the store.
    pub async fn start(
        store: Arc<dyn Store>,
        registry: &'static Registry,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, k8rs_store::Error> {
        let (events, _) = broadcast::channel(CHANNEL);
        let cache = Arc::new(WatchCache {
            state: RwLock::new(State {
                objects: Objects::new(),
                revision: 0,
                history: VecDeque::new(),
                oldest: 0,
                events,
            }),
            revision: watch::channel(0).0,
            registry,
            store,
        });
        let revision = cache.relist().await?;
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(revision, shutdown).await });
        Ok(cache)
    }

    /// Replaces the cache's contents with a fresh list; live watchers are closed so that
    /// clients re-watch (and re-list if their revision is now too old).
    async fn relist(&self) -> Result<Revision, k8rs_store::Error> {
        let range = self.store.range("/registry/", None, 0, None).await?;
        let mut objects = Objects::new();
        for kv in &range.kvs {
            if let Some(obj) =
                CachedObject::decode(self.registry, &kv.key, &kv.value, kv.mod_revision)
            {
                objects.insert(kv.key.clone(), Arc::new(obj));
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.objects = objects;
        state.revision = range.revision;
        state.history.clear();
        state.oldest = range.revision;
        state.events = broadcast::channel(CHANNEL).0;
        drop(state);
        self.revision.send_replace(range.revision);
        Ok(range.revision)
    }

    async fn follow(self: Arc<Self>, mut revision: Revision, shutdown: CancellationToken) {
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.follow_from(revision) => r,
            };
            if let Err(err) = result {
                tracing::warn!(%err, "watch cache lost its store watch; re-listing");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            match self.relist().await {
                Ok(r) => revision = r,
                Err(err) => tracing::warn!(%err, "watch cache re-list failed"),
            }
        }
    }

    async fn follow_from(&self, revision: Revision) -> Result<(), k8rs_store::Error> {
        let mut stream = self.store.watch("/registry/", revision + 1).await?;
        while let Some(event) = stream.next().await {
            self.apply(event?);
        }
        Err(k8rs_store::Error::Closed)
    }

    fn apply(&self, event: Event) {
        let decode = |kv: &KeyValue, rev| {
            CachedObject::decode(self.registry, &kv.key, &kv.value, rev).map(Arc::new)
        };
        let revision = event.revision();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let cached = match &event {
            Event::Put { kv, .. } => decode(kv, kv.mod_revision).map(|obj| {
                let prev = state.objects.insert(kv.key.clone(), obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent {
                    kind,
                    revision,
                    obj,
                    prev,
                }
            }),
            Event::Delete { prev, .. } => {
                let last = state.objects.remove(&prev.key);
                decode(prev, revision).map(|obj| CacheEvent {
                    kind: EventType::Deleted,
                    revision,
                    obj,
                    prev: last,
                })
            }
        };
        state.revision = revision;
        if let Some(ev) = cached {
            let ev = Arc::new(ev);
            if state.history.len() >= HISTORY
                && let Some(old) = state.history.pop_front()
            {
                state.oldest = old.revision;
            }
            state.history.push_back(ev.clone());
            let _ = state.events.send(ev);
        }
        drop(state);
        self.revision.send_replace(revision);
    }

    /// Forgets the history at and below `revision` (the store compacted it): watches from
    /// older revisions get 410 Gone, as from a compacted store.
    pub fn compact(&self, revision: Revision) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        while state
            .history
            .front()
            .is_some_and(|e| e.revision <= revision)
        {
            state.history.pop_front();
        }
        state.oldest = state.oldest.max(revision);
    }

    /// The revision the cache has reached.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has seen `revision` (at most a few seconds).
    pub async fn wait_for(&self, revision: Revision) -> ApiResult<()> {
        let mut rx = self.revision.subscribe();
        match tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::Timeout(format!(
                "Timeout: Too large resource version: {revision}, current: {}",
                self.revision()
            ))),
        }
    }

    /// Waits until the cache holds everything written to the store so far.
    pub async fn sync(&self) -> ApiResult<Revision> {
        let current = self.store.current_revision().await?;
        self.wait_for(current).await?;
        Ok(current.max(self.revision()))
    }

    /// A consistent snapshot of every object, and its revision.
    pub fn snapshot(&self) -> (Objects, Revision) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (state.objects.clone(), state.revision)
    }

    /// A snapshot and a subscription to the changes after it, taken atomically.
    pub fn snapshot_and_subscribe(
        &self,
    ) -> (Objects, Revision, broadcast::Receiver<Arc<CacheEvent>>) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (
            state.objects.clone(),
            state.revision,
            state.events.subscribe(),
        )
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.objects.get(key).cloned()
    }

    /// Starts a watch at `from`: events after it, then live ones. `None` starts at the current
    /// revision with no backlog.
    pub fn watch(&self, from: Option<Revision>) -> ApiResult<CacheWatch> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let live = state.events.subscribe();
        let from = from.unwrap_or(state.revision);
        if from < state.oldest {
            return Err(ApiError::Gone(format!(
                "too old resource version: {from} ({})",
                state.oldest
            )));
        }
        let start = state.history.partition_point(|e| e.revision <= from);
        let backlog = state.history.range(start..).cloned().collect();
        Ok(CacheWatch {
            backlog,
            live,
            revision: state.revision,
        })
    }

    pub fn registry(&self) -> &Registry {
        self.registry
    }
}

/// The objects of `snapshot` whose keys start with `prefix`, from the first key after
/// `start_after`.
pub fn range<'a>(
    snapshot: &'a Objects,
    prefix: &'a str,
    start_after: Option<&str>,
) -> impl Iterator<Item = &'a Arc<CachedObject>> + 'a {
    let start = match start_after {
        Some(s) => std::ops::Bound::Excluded(s.to_string()),
        None => std::ops::Bound::Included(prefix.to_string()),
    };
    snapshot
        .range((start, std::ops::Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}
