//! The watch cache: every stored object in memory, kept current by one watch on the store, so
//! that gets, lists and watches are served from memory. Consistent reads wait until the cache
//! has caught up with the store's current revision, as upstream does since 1.31.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8rs_store::{Event, KeyValue, Revision, Store};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;

/// The most past events the cache keeps for watches that start from an older revision.
const HISTORY: usize = 50_000;
/// How long a past event is kept once the history holds more than [`MIN_HISTORY`] (upstream's
/// watch cache keeps 75 s of events: clients with bookmarks re-watch well within it).
const FRESH: Duration = Duration::from_secs(75);
/// Past events kept however old they are.
const MIN_HISTORY: usize = 1_000;
/// How often stale history is dropped when nothing is written.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
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
    history: VecDeque<(Arc<CacheEvent>, Instant)>,
    /// Watches may start from any revision at or after this one (set by re-lists and
    /// compaction).
    oldest: Revision,
    /// For each key directory (`/registry/pods/`, `/registry/pods/ns/`, ...), the newest
    /// revision whose event under it left the history: a watch of that directory must start at
    /// or after it. As upstream's per-resource watch caches, dropping Lease events never sends
    /// pod watchers back to re-list.
    dropped: HashMap<String, Revision>,
    events: broadcast::Sender<Arc<CacheEvent>>,
}

impl State {
    /// Drops past events beyond [`HISTORY`], and those older than [`FRESH`] beyond
    /// [`MIN_HISTORY`].
    fn prune(&mut self, now: Instant) {
        while let Some((event, at)) = self.history.front() {
            let stale = self.history.len() > MIN_HISTORY && now.duration_since(*at) > FRESH;
            if self.history.len() <= HISTORY && !stale {
                break;
            }
            let (revision, key) = (event.revision, event.obj.key.clone());
            self.history.pop_front();
            for (i, _) in key.match_indices('/').skip(1) {
                let dir = &key[..=i];
                match self.dropped.get_mut(dir) {
                    Some(r) => *r = (*r).max(revision),
                    None => {
                        self.dropped.insert(dir.to_string(), revision);
                    }
                }
            }
        }
    }

    /// The oldest revision a watch of `prefix` may start from.
    fn oldest_for(&self, prefix: &str) -> Revision {
        let dropped = self.dropped.get(prefix).copied().unwrap_or(0);
        self.oldest.max(dropped)
    }
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
                dropped: HashMap::new(),
                events,
            }),
            revision: watch::channel(0).0,
            registry,
            store,
        });
        let revision = cache.relist().await?;
        let follower = cache.clone();
        let pruner = cache.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { follower.follow(revision, shutdown).await });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => pruner.write().prune(Instant::now()),
                }
            }
        });
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
        state.dropped.clear();
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
            let now = Instant::now();
            state.history.push_back((ev.clone(), now));
            state.prune(now);
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
            .is_some_and(|(e, _)| e.revision <= revision)
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

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.objects.get(key).cloned()
    }

    /// Starts a watch of the keys under `prefix` at `from`: events after it, then live ones.
    /// `None` starts at the current revision with no backlog.
    pub fn watch(&self, prefix: &str, from: Option<Revision>) -> ApiResult<CacheWatch> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let live = state.events.subscribe();
        let from = from.unwrap_or(state.revision);
        let oldest = state.oldest_for(prefix);
        if from < oldest {
            return Err(ApiError::Gone(format!(
                "too old resource version: {from} ({oldest})"
            )));
        }
        let start = state.history.partition_point(|(e, _)| e.revision <= from);
        let backlog = state
            .history
            .range(start..)
            .filter(|(e, _)| e.obj.key.starts_with(prefix))
            .map(|(e, _)| e.clone())
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, revision: Revision) -> Arc<CacheEvent> {
        let (rest, name) = key.rsplit_once('/').unwrap_or(("", key));
        Arc::new(CacheEvent {
            kind: EventType::Added,
            revision,
            obj: Arc::new(CachedObject {
                key: key.into(),
                json: Bytes::new(),
                revision,
                namespace: rest.rsplit('/').next().unwrap_or_default().into(),
                name: name.into(),
                labels: BTreeMap::new(),
                fields: Vec::new(),
            }),
            prev: None,
        })
    }

    fn state() -> State {
        State {
            objects: Objects::new(),
            revision: 0,
            history: VecDeque::new(),
            oldest: 0,
            dropped: HashMap::new(),
            events: broadcast::channel(4).0,
        }
    }

    #[test]
    fn stale_history_goes_but_only_its_directories_turn_gone() {
        let mut s = state();
        let t0 = Instant::now();
        for r in 1..=1_500 {
            let key = format!("/registry/leases/kube-node-lease/n{r}");
            s.history.push_back((event(&key, r), t0));
        }
        s.history
            .push_back((event("/registry/pods/default/web", 1_501), t0));
        s.prune(t0 + Duration::from_secs(10));
        assert_eq!(s.history.len(), 1_501, "fresh events stay");

        s.prune(t0 + FRESH + Duration::from_secs(1));
        assert_eq!(
            s.history.len(),
            MIN_HISTORY,
            "stale events beyond the minimum go"
        );
        assert_eq!(s.oldest_for("/registry/leases/"), 501);
        assert_eq!(s.oldest_for("/registry/leases/kube-node-lease/"), 501);
        assert_eq!(
            s.oldest_for("/registry/pods/"),
            0,
            "no pod event was dropped"
        );
        assert_eq!(s.oldest_for("/registry/"), 501);
    }

    #[test]
    fn history_is_capped() {
        let mut s = state();
        let now = Instant::now();
        for r in 1..=(HISTORY as i64 + 10) {
            s.history
                .push_back((event(&format!("/registry/pods/ns/p{r}"), r), now));
            s.prune(now);
        }
        assert_eq!(s.history.len(), HISTORY);
        assert_eq!(s.oldest_for("/registry/pods/ns/"), 10);
    }
}
