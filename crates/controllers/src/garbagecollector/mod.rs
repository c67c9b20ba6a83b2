//! The garbage collector, as upstream's: a graph of ownerReferences over every watched resource
//! (metadata-only watches, see [`resources`]), deleting dependents whose owners are gone
//! (background), emptying foreground deletions (`foregroundDeletion` finalizer, dependents with
//! `blockOwnerDeletion` first) and orphaning (`orphan` finalizer). The decisions live in
//! [`graph::Graph::plan`]; this module feeds it watch events and performs its actions.
//!
//! It records no events, as upstream.

pub mod graph;
pub mod resources;

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use graph::{Action, Graph, Item, Policy, Target};
use resources::RESOURCES;

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

/// What a performed action reports back.
enum Outcome {
    Absent(String),
    Failed(String),
}

/// Runs the collector until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: GarbageCollectorConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.concurrent_gc_syncs == 0 {
        return Err(Error::InvalidConfig {
            controller: "garbagecollector",
            message: "--concurrent-gc-syncs must be positive".into(),
        });
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut gc = Collector {
        client: client.clone(),
        graph: Graph::default(),
        dirty: HashSet::new(),
        retry: Vec::new(),
        recent: HashMap::new(),
        listing: vec![Some(HashSet::new()); RESOURCES.len()],
        writes: JoinSet::new(),
        permits: Arc::new(Semaphore::new(config.concurrent_gc_syncs)),
        tx,
        rx,
    };
    gc.run(shutdown).await;
    Ok(())
}

type MetaEvent = watcher::Event<PartialObjectMeta<DynamicObject>>;

/// One metadata-only watch per resource, merged.
fn watches(
    client: &kube::Client,
) -> impl futures::Stream<Item = (usize, watcher::Result<MetaEvent>)> {
    let all = RESOURCES.iter().enumerate().map(|(i, r)| {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(client.clone(), &r.api_resource());
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| (i, e))
            .boxed()
    });
    stream::select_all(all)
}

struct Collector {
    client: kube::Client,
    graph: Graph,
    dirty: HashSet<String>,
    retry: Vec<(Instant, String)>,
    recent: HashMap<String, Instant>,
    /// Per resource, the UIDs seen while it (re)lists; `None` once listed.
    listing: Vec<Option<HashSet<String>>>,
    writes: JoinSet<()>,
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Outcome>,
    rx: mpsc::UnboundedReceiver<Outcome>,
}

impl Collector {
    async fn run(&mut self, shutdown: CancellationToken) {
        let client = self.client.clone();
        let mut events = pin!(watches(&client));
        let mut tick = tokio::time::interval(PLAN_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((res, event)) = events.next() => match event {
                    Ok(event) => self.on_event(res, event),
                    Err(err) => tracing::warn!(%err, resource = RESOURCES[res].plural,
                        "garbage collector: watch failed; retrying"),
                },
                Some(outcome) = self.rx.recv() => self.on_outcome(outcome),
                _ = tick.tick() => self.plan(),
                Some(_) = self.writes.join_next(), if !self.writes.is_empty() => {}
            }
        }
        self.writes.shutdown().await;
    }

    fn on_event(&mut self, res: usize, event: MetaEvent) {
        let dirty = match event {
            watcher::Event::Init => {
                self.listing[res] = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let item = item(res, obj);
                if let Some(seen) = self.listing[res].as_mut() {
                    seen.insert(item.uid.clone());
                }
                self.graph.upsert(item)
            }
            watcher::Event::InitDone => {
                let seen = self.listing[res].take().unwrap_or_default();
                let gone = self
                    .graph
                    .uids_of(res)
                    .into_iter()
                    .filter(|u| !seen.contains(u));
                let gone: Vec<String> = gone.collect();
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

    fn plan(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.retry.drain(..).partition(|(at, _)| *at <= now);
        self.retry = later;
        self.dirty.extend(due.into_iter().map(|(_, uid)| uid));
        if self.dirty.is_empty() || self.listing.iter().any(Option::is_some) {
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
        let (client, permits, tx) = (self.client.clone(), self.permits.clone(), self.tx.clone());
        self.writes.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            if let Some(outcome) = execute(&client, &action).await {
                let _ = tx.send(outcome);
            }
        });
    }
}

fn item(res: usize, obj: PartialObjectMeta<DynamicObject>) -> Item {
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

fn api(client: &kube::Client, res: usize, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = RESOURCES[res].api_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Performs one action; reports a confirmed absent owner or a failure to retry.
async fn execute(client: &kube::Client, action: &Action) -> Option<Outcome> {
    let result = match action {
        Action::Verify {
            res,
            namespace,
            name,
            uid,
        } => {
            let found = api(client, *res, namespace.as_deref())
                .get_metadata_opt(name)
                .await;
            return match found {
                Ok(Some(o)) if o.metadata.uid.as_deref() == Some(uid.as_str()) => None,
                Ok(_) => Some(Outcome::Absent(uid.clone())),
                Err(err) => {
                    tracing::warn!(%err, name, "garbage collector: looking up an owner failed");
                    Some(Outcome::Failed(uid.clone()))
                }
            };
        }
        Action::Delete { target, policy } => delete(client, target, *policy).await,
        Action::SetOwners { target, owners } => {
            let body = serde_json::json!({"metadata": {
                "ownerReferences": owners, "resourceVersion": target.resource_version}});
            patch(client, target, body).await
        }
        Action::SetFinalizers { target, finalizers } => {
            let body = serde_json::json!({"metadata": {
                "finalizers": finalizers, "resourceVersion": target.resource_version}});
            patch(client, target, body).await
        }
    };
    let target = match action {
        Action::Delete { target, .. }
        | Action::SetOwners { target, .. }
        | Action::SetFinalizers { target, .. } => target,
        Action::Verify { .. } => return None,
    };
    match result {
        Ok(()) => None,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            // Gone, or changed since it was seen: the watch brings the news.
            None
        }
        Err(err) => {
            tracing::warn!(%err, name = target.name, resource = RESOURCES[target.res].plural,
                "garbage collector: write failed; retrying");
            Some(Outcome::Failed(target.uid.clone()))
        }
    }
}

async fn delete(client: &kube::Client, t: &Target, policy: Policy) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        propagation_policy: Some(match policy {
            Policy::Background => PropagationPolicy::Background,
            Policy::Foreground => PropagationPolicy::Foreground,
            Policy::Orphan => PropagationPolicy::Orphan,
        }),
        preconditions: Some(Preconditions {
            uid: Some(t.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    tracing::debug!(
        name = t.name,
        resource = RESOURCES[t.res].plural,
        ?policy,
        "garbage collector: deleting a dependent"
    );
    api(client, t.res, t.namespace.as_deref())
        .delete(&t.name, &dp)
        .await
        .map(|_| ())
}

async fn patch(
    client: &kube::Client,
    t: &Target,
    body: serde_json::Value,
) -> Result<(), kube::Error> {
    api(client, t.res, t.namespace.as_deref())
        .patch_metadata(&t.name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
}
