//! The garbage collector, as upstream's: a graph of ownerReferences over every resource discovery
//! lists that supports list, watch and delete (built-ins and custom resources, re-discovered
//! periodically and when a CustomResourceDefinition changes; metadata-only watches, see
//! [`monitors`] and [`resources`]), deleting dependents whose owners are gone (background),
//! emptying foreground deletions (`foregroundDeletion` finalizer, dependents with
//! `blockOwnerDeletion` first) and orphaning (`orphan` finalizer). The decisions live in
//! [`graph::Graph::plan`]; this module feeds it watch events and performs its actions.
//!
//! It records no events, as upstream. It uses no typed informer: its watches carry metadata
//! only, which the shared (typed) informers cannot share.

mod execute;
pub mod graph;
pub mod monitors;
pub mod resources;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use kube::runtime::watcher;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use execute::Outcome;
use graph::{Action, Graph, Item};
use monitors::{MetaEvent, Tagged};
use resources::Resource;

/// Settings of the collector, upstream's `--concurrent-gc-syncs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GarbageCollectorConfig {
    /// Writes in flight at once (default 20).
    pub concurrent_gc_syncs: usize,
}

impl Default for GarbageCollectorConfig {
    fn default() -> Self {
        GarbageCollectorConfig {
            concurrent_gc_syncs: 20,
        }
    }
}

/// How often accumulated changes are planned.
const PLAN_PERIOD: Duration = Duration::from_millis(50);
/// How long a failed action waits before its object is planned again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a performed action is not repeated for the same resourceVersion.
const REMEMBER: Duration = Duration::from_secs(30);
/// How long planning waits for a new watch's first list (upstream waits 30 s for its caches
/// before it proceeds anyway).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Watch events buffered between the watches and the graph.
const EVENT_BUFFER: usize = 256;

/// Runs the collector until `shutdown`.
pub async fn run(
    informers: SharedInformers,
    config: GarbageCollectorConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.concurrent_gc_syncs == 0 {
        return Err(Error::InvalidConfig {
            controller: "garbagecollector",
            message: "--concurrent-gc-syncs must be positive".into(),
        });
    }
    let client = informers.client().clone();
    let (found_tx, found_rx) = mpsc::channel(1);
    let rediscover = Arc::new(Notify::new());
    tokio::spawn(monitors::discovery_loop(
        client.clone(),
        found_tx,
        rediscover.clone(),
        shutdown.child_token(),
    ));
    let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut gc = Collector {
        client,
        graph: Graph::default(),
        monitors: HashMap::new(),
        generation: 0,
        events_tx,
        rediscover,
        dirty: HashSet::new(),
        retry: Vec::new(),
        recent: HashMap::new(),
        writes: JoinSet::new(),
        permits: Arc::new(Semaphore::new(config.concurrent_gc_syncs)),
        tx,
        rx,
    };
    gc.run(shutdown, found_rx, events_rx).await;
    Ok(())
}

/// The watch of one resource.
struct Monitor {
    /// Tags this watch's events: events of an earlier watch of the resource are stale.
    generation: u64,
    stop: CancellationToken,
    /// The UIDs seen while it (re)lists; `None` once listed.
    listing: Option<HashSet<String>>,
    /// Until its first list ends, planning waits for it up to this instant.
    first_sync_until: Option<Instant>,
}

struct Collector {
    client: kube::Client,
    graph: Graph,
    monitors: HashMap<usize, Monitor>,
    generation: u64,
    events_tx: mpsc::Sender<Tagged>,
    rediscover: Arc<Notify>,
    dirty: HashSet<String>,
    retry: Vec<(Instant, String)>,
    recent: HashMap<String, Instant>,
    writes: JoinSet<()>,
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Outcome>,
    rx: mpsc::UnboundedReceiver<Outcome>,
}

impl Collector {
    async fn run(
        &mut self,
        shutdown: CancellationToken,
        mut found: mpsc::Receiver<Vec<Resource>>,
        mut events: mpsc::Receiver<Tagged>,
    ) {
        let mut tick = tokio::time::interval(PLAN_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(list) = found.recv() => self.on_discovery(list),
                Some((res, generation, event)) = events.recv() => {
                    self.on_watch(res, generation, event);
                }
                Some(outcome) = self.rx.recv() => self.on_outcome(outcome),
                _ = tick.tick() => self.plan(),
                Some(_) = self.writes.join_next(), if !self.writes.is_empty() => {}
            }
        }
        for m in self.monitors.values() {
            m.stop.cancel();
        }
        self.writes.shutdown().await;
    }

    /// Starts watching the resources discovery added, stops the removed ones.
    fn on_discovery(&mut self, list: Vec<Resource>) {
        let changes = self.graph.resources_mut().update(list);
        for res in changes.removed {
            if let Some(m) = self.monitors.remove(&res) {
                m.stop.cancel();
            }
            let dirty = self.graph.forget_resource(res);
            self.dirty.extend(dirty);
        }
        if changes.added.is_empty() {
            return;
        }
        for &res in &changes.added {
            self.start(res);
        }
        // Owners of kinds unknown until now can be judged.
        let owned = self.graph.owned();
        self.dirty.extend(owned);
    }

    fn start(&mut self, res: usize) {
        let Some(r) = self.graph.resources().get(res) else {
            return;
        };
        tracing::debug!(resource = r.group_resource(), "garbage collector: watching");
        self.generation += 1;
        let stop = CancellationToken::new();
        monitors::spawn_watch(
            self.client.clone(),
            (res, self.generation),
            r,
            self.events_tx.clone(),
            stop.clone(),
        );
        let monitor = Monitor {
            generation: self.generation,
            stop,
            listing: Some(HashSet::new()),
            first_sync_until: Some(Instant::now() + SYNC_TIMEOUT),
        };
        if let Some(old) = self.monitors.insert(res, monitor) {
            old.stop.cancel();
        }
    }

    fn on_watch(&mut self, res: usize, generation: u64, event: watcher::Result<MetaEvent>) {
        if self.monitors.get(&res).map(|m| m.generation) != Some(generation) {
            return;
        }
        let r = self.graph.resources().get(res);
        let crd = r.is_some_and(monitors::is_crd);
        match event {
            Ok(event) => {
                // A (re)list of the definitions may have brought new ones: discovery runs too.
                let changed = matches!(
                    event,
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone
                );
                if crd && changed {
                    self.rediscover.notify_one();
                }
                self.on_event(res, event);
            }
            Err(err) => {
                let resource = r.map(Resource::group_resource).unwrap_or_default();
                tracing::warn!(%err, resource, "garbage collector: watch failed; retrying");
            }
        }
    }

    fn on_event(&mut self, res: usize, event: MetaEvent) {
        let Some(monitor) = self.monitors.get_mut(&res) else {
            return;
        };
        let dirty = match event {
            watcher::Event::Init => {
                monitor.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let item = item(res, obj);
                if let Some(seen) = monitor.listing.as_mut() {
                    seen.insert(item.uid.clone());
                }
                self.graph.upsert(item)
            }
            watcher::Event::InitDone => {
                let seen = monitor.listing.take().unwrap_or_default();
                monitor.first_sync_until = None;
                let gone = self.graph.uids_of(res).into_iter();
                let gone: Vec<String> = gone.filter(|u| !seen.contains(u)).collect();
                gone.iter().flat_map(|u| self.graph.remove(u)).collect()
            }
            watcher::Event::Delete(obj) => {
                let uid = obj.metadata.uid.unwrap_or_default();
                self.graph.remove(&uid)
            }
        };
        self.dirty.extend(dirty);
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Absent(uid) => {
                let dirty = self.graph.confirm_absent(&uid);
                self.dirty.extend(dirty);
            }
            Outcome::Failed(uid) => self.retry.push((Instant::now() + RETRY_AFTER, uid)),
        }
    }

    /// Whether a watch is still in its first list (for less than [`SYNC_TIMEOUT`]).
    fn syncing(&self, now: Instant) -> bool {
        let first = self.monitors.values().filter(|m| m.listing.is_some());
        first
            .filter_map(|m| m.first_sync_until)
            .any(|until| now < until)
    }

    fn plan(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.retry.drain(..).partition(|(at, _)| *at <= now);
        self.retry = later;
        self.dirty.extend(due.into_iter().map(|(_, uid)| uid));
        if self.dirty.is_empty() || self.syncing(now) {
            return;
        }
        self.recent
            .retain(|_, at| now.duration_since(*at) < REMEMBER);
        let dirty = std::mem::take(&mut self.dirty);
        for action in self.graph.plan(&dirty) {
            if self.recent.insert(action.key(), now).is_none() {
                self.perform(action);
            }
        }
    }

    fn perform(&mut self, action: Action) {
        let Some(r) = self.graph.resources().get(execute::resource_of(&action)) else {
            return;
        };
        let r = r.clone();
        let (client, permits, tx) = (self.client.clone(), self.permits.clone(), self.tx.clone());
        self.writes.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            if let Some(outcome) = execute::execute(&client, &r, &action).await {
                let _ = tx.send(outcome);
            }
        });
    }
}

fn item(res: usize, obj: kube::core::PartialObjectMeta<kube::api::DynamicObject>) -> Item {
    let m = obj.metadata;
    Item {
        res,
        namespace: m.namespace,
        name: m.name.unwrap_or_default(),
        uid: m.uid.unwrap_or_default(),
        resource_version: m.resource_version.unwrap_or_default(),
        owners: m.owner_references.unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
        finalizers: m.finalizers.unwrap_or_default(),
    }
}
