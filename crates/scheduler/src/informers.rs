//! The informers (upstream's `eventhandlers.go`): kube-runtime watchers over pods and nodes feed
//! the cache (bound pods, nodes) and the queue (pending pods of this scheduler, and cluster events
//! that may make unschedulable pods fit); reflectors fill the [`Listers`] stores.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::framework::{ActionType, ClusterEvent, EventResource};
use crate::listers::ListerWriters;
use crate::podinfo::{pod_labels, pod_node_name, pod_uid};
use crate::queue::SchedulingQueue;

fn object_key<K: Resource>(o: &K) -> String {
    let meta = o.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// What a handler does with one object kind.
pub trait Handler<K> {
    /// The object was created or changed.
    fn apply(&mut self, obj: K);
    /// The object was deleted (also for objects missing from a relist).
    fn delete(&mut self, obj: &K);
    /// The last seen version of every object.
    fn known(&self) -> Vec<(String, Arc<K>)>;
}

/// Feeds watcher events to a handler, turning objects missing after a relist into deletions.
pub struct EventFeeder<K, H> {
    handler: H,
    relist: Option<HashSet<String>>,
    _kind: std::marker::PhantomData<K>,
}

impl<K: Resource, H: Handler<K>> EventFeeder<K, H> {
    /// A feeder for `handler`.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            relist: None,
            _kind: std::marker::PhantomData,
        }
    }

    /// Handles one event; returns true when an initial (re)list completed.
    pub fn feed(&mut self, event: watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Init => self.relist = Some(HashSet::new()),
            watcher::Event::InitApply(o) => {
                if let Some(seen) = self.relist.as_mut() {
                    seen.insert(object_key(&o));
                }
                self.handler.apply(o);
            }
            watcher::Event::InitDone => {
                let seen = self.relist.take().unwrap_or_default();
                for (key, obj) in self.handler.known() {
                    if !seen.contains(&key) {
                        self.handler.delete(&obj);
                    }
                }
                return true;
            }
            watcher::Event::Apply(o) => self.handler.apply(o),
            watcher::Event::Delete(o) => self.handler.delete(&o),
        }
        false
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Pods: bound ones into the cache, pending ones of this scheduler into the queue.
pub struct PodHandler {
    cache: Arc<Cache>,
    queue: Arc<SchedulingQueue>,
    scheduler_name: String,
    known: HashMap<String, Arc<Pod>>,
}

impl PodHandler {
    /// A handler for pods with `spec.schedulerName == scheduler_name`.
    pub fn new(cache: Arc<Cache>, queue: Arc<SchedulingQueue>, scheduler_name: &str) -> Self {
        Self {
            cache,
            queue,
            scheduler_name: scheduler_name.to_owned(),
            known: HashMap::new(),
        }
    }

    fn responsible(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        name == self.scheduler_name
    }

    fn assigned_update_event(old: &Pod, new: &Pod) -> ClusterEvent {
        let action = if pod_labels(old) != pod_labels(new) {
            ActionType::UPDATE_POD_LABEL
        } else {
            ActionType::UPDATE
        };
        ClusterEvent::new(EventResource::Pod, action)
    }
}

impl Handler<Pod> for PodHandler {
    fn apply(&mut self, pod: Pod) {
        if terminal(&pod) {
            if let Some(old) = self.known.remove(&object_key(&pod)) {
                Handler::delete(self, &old);
            }
            return;
        }
        let pod = Arc::new(pod);
        let mut old = self.known.insert(object_key(&*pod), Arc::clone(&pod));
        if old.as_ref().is_some_and(|o| pod_uid(o) != pod_uid(&pod))
            && let Some(o) = old.take()
        {
            Handler::delete(self, &o);
        }
        let was_assigned = old.as_deref().and_then(pod_node_name).is_some();
        if pod_node_name(&pod).is_some() {
            self.cache.upsert_pod(Arc::clone(&pod));
            match old.as_deref() {
                Some(o) if was_assigned => {
                    self.queue.move_all(Self::assigned_update_event(o, &pod))
                }
                _ => {
                    self.queue.delete(&pod);
                    self.queue.move_all(ClusterEvent::ASSIGNED_POD_ADD);
                }
            }
        } else if self.responsible(&pod) {
            match old.as_deref() {
                None => self.queue.add(pod),
                Some(o) => self.queue.update(Some(o), pod),
            }
        }
    }

    fn delete(&mut self, pod: &Pod) {
        self.known.remove(&object_key(pod));
        if pod_node_name(pod).is_some() {
            self.cache.remove_pod(pod);
            self.queue.move_all(ClusterEvent::ASSIGNED_POD_DELETE);
        } else {
            self.queue.delete(pod);
        }
    }

    fn known(&self) -> Vec<(String, Arc<Pod>)> {
        self.known
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }
}

/// Upstream's `nodeSchedulingPropertiesChange`: which scheduling-relevant parts changed.
pub fn node_update_action(old: &Node, new: &Node) -> ActionType {
    let mut action = ActionType::NONE;
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    if alloc(old) != alloc(new) {
        action = action | ActionType::UPDATE_NODE_ALLOCATABLE;
    }
    if old.metadata.labels != new.metadata.labels {
        action = action | ActionType::UPDATE_NODE_LABEL;
    }
    let taints = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    if taints(old) != taints(new) {
        action = action | ActionType::UPDATE_NODE_TAINT;
    }
    let conditions = |n: &Node| -> Vec<(String, String)> {
        let mut c: Vec<(String, String)> = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        c.sort();
        c
    };
    if conditions(old) != conditions(new) {
        action = action | ActionType::UPDATE_NODE_CONDITION;
    }
    if old.metadata.annotations != new.metadata.annotations {
        action = action | ActionType::UPDATE_NODE_ANNOTATION;
    }
    action
}

/// Nodes into the cache; their changes become queue events.
pub struct NodeHandler {
    cache: Arc<Cache>,
    queue: Arc<SchedulingQueue>,
    known: HashMap<String, Arc<Node>>,
}

impl NodeHandler {
    /// A handler feeding `cache` and `queue`.
    pub fn new(cache: Arc<Cache>, queue: Arc<SchedulingQueue>) -> Self {
        Self {
            cache,
            queue,
            known: HashMap::new(),
        }
    }
}

impl Handler<Node> for NodeHandler {
    fn apply(&mut self, node: Node) {
        let node = Arc::new(node);
        let old = self.known.insert(object_key(&*node), Arc::clone(&node));
        self.cache.upsert_node(Arc::clone(&node));
        let action = match old {
            None => ActionType::ADD,
            Some(o) => node_update_action(&o, &node),
        };
        if !action.is_empty() {
            self.queue
                .move_all(ClusterEvent::new(EventResource::Node, action));
        }
    }

    fn delete(&mut self, node: &Node) {
        self.known.remove(&object_key(node));
        self.cache
            .remove_node(node.metadata.name.as_deref().unwrap_or_default());
        self.queue.move_all(ClusterEvent::NODE_DELETE);
    }

    fn known(&self) -> Vec<(String, Arc<Node>)> {
        self.known
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }
}

/// Watches `K` cluster-wide into `handler`; `synced` turns true after the first list.
pub async fn run_informer<K, H>(
    client: kube::Client,
    handler: H,
    synced: watch::Sender<bool>,
    cancel: CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    H: Handler<K>,
{
    let api: Api<K> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut feeder = EventFeeder::new(handler);
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            n = stream.next() => n,
        };
        match next {
            Some(Ok(event)) => {
                if feeder.feed(event) {
                    let _ = synced.send(true);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "scheduler watch failed; retrying")
            }
            None => return,
        }
    }
}

/// Reflects `K` into `writer`; every change becomes a queue event for `resource`, if any.
pub async fn run_reflector<K>(
    client: kube::Client,
    writer: Writer<K>,
    events: Option<(Arc<SchedulingQueue>, EventResource)>,
    cancel: CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            n = stream.next() => n,
        };
        let action = match next {
            None => return,
            Some(Err(e)) => {
                tracing::debug!(kind = %K::kind(&()), error = %e, "scheduler lister watch failed; retrying");
                continue;
            }
            Some(Ok(watcher::Event::Apply(_))) => ActionType::ADD | ActionType::UPDATE,
            Some(Ok(watcher::Event::Delete(_))) => ActionType::DELETE,
            Some(Ok(watcher::Event::InitDone)) => {
                ActionType::ADD | ActionType::UPDATE | ActionType::DELETE
            }
            Some(Ok(_)) => continue,
        };
        if let Some((queue, resource)) = &events {
            queue.move_all(ClusterEvent::new(*resource, action));
        }
    }
}

/// Starts every reflector of the listers.
pub fn spawn_reflectors(
    client: &kube::Client,
    w: ListerWriters,
    queue: &Arc<SchedulingQueue>,
    cancel: &CancellationToken,
) {
    let q = |r| Some((Arc::clone(queue), r));
    let c = || client.clone();
    let t = || cancel.clone();
    tokio::spawn(run_reflector(c(), w.services, None, t()));
    tokio::spawn(run_reflector(c(), w.replica_sets, None, t()));
    tokio::spawn(run_reflector(c(), w.replication_controllers, None, t()));
    tokio::spawn(run_reflector(c(), w.stateful_sets, None, t()));
    tokio::spawn(run_reflector(c(), w.pdbs, None, t()));
    tokio::spawn(run_reflector(
        c(),
        w.namespaces,
        q(EventResource::Namespace),
        t(),
    ));
    tokio::spawn(run_reflector(
        c(),
        w.pvcs,
        q(EventResource::PersistentVolumeClaim),
        t(),
    ));
    tokio::spawn(run_reflector(
        c(),
        w.pvs,
        q(EventResource::PersistentVolume),
        t(),
    ));
    tokio::spawn(run_reflector(
        c(),
        w.storage_classes,
        q(EventResource::StorageClass),
        t(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fake::FakeApi;
    use crate::listers::Listers;
    use crate::plugins::default_framework;
    use crate::queue::{QueueConfig, QueueCounts};
    use crate::testing::{NodeBuilder, PodBuilder};

    fn parts() -> (Arc<Cache>, Arc<SchedulingQueue>) {
        let fw = default_framework(Listers::empty(), Arc::new(FakeApi::default()));
        (
            Arc::new(Cache::new()),
            Arc::new(SchedulingQueue::new(Arc::new(fw), QueueConfig::default())),
        )
    }

    #[tokio::test]
    async fn pods_go_to_the_queue_or_the_cache() {
        let (cache, queue) = parts();
        let mut f = EventFeeder::new(PodHandler::new(
            cache.clone(),
            queue.clone(),
            "default-scheduler",
        ));
        f.feed(watcher::Event::Apply(PodBuilder::new("pending").build()));
        f.feed(watcher::Event::Apply(
            PodBuilder::new("other").scheduler("my-scheduler").build(),
        ));
        f.feed(watcher::Event::Apply(
            PodBuilder::new("bound").node("n").build(),
        ));
        assert_eq!(
            queue.counts().active,
            1,
            "only pods of this scheduler are queued"
        );
        assert!(cache.contains_pod("bound-uid"));
        // The pending pod gets bound: it leaves the queue and enters the cache.
        f.feed(watcher::Event::Apply(
            PodBuilder::new("pending").node("n").build(),
        ));
        assert_eq!(queue.counts(), QueueCounts::default());
        assert!(cache.contains_pod("pending-uid"));
        // A finished pod no longer takes resources.
        let done = PodBuilder::new("bound").node("n").build();
        let mut done_status = done.clone();
        done_status
            .status
            .get_or_insert_with(Default::default)
            .phase = Some("Succeeded".into());
        f.feed(watcher::Event::Apply(done_status));
        assert!(!cache.contains_pod("bound-uid"));
    }

    #[tokio::test]
    async fn relists_delete_what_disappeared() {
        let (cache, queue) = parts();
        let mut f = EventFeeder::new(PodHandler::new(
            cache.clone(),
            queue.clone(),
            "default-scheduler",
        ));
        f.feed(watcher::Event::Apply(
            PodBuilder::new("gone").node("n").build(),
        ));
        f.feed(watcher::Event::Apply(
            PodBuilder::new("stays").node("n").build(),
        ));
        f.feed(watcher::Event::Init);
        f.feed(watcher::Event::InitApply(
            PodBuilder::new("stays").node("n").build(),
        ));
        assert!(f.feed(watcher::Event::InitDone));
        assert!(!cache.contains_pod("gone-uid"));
        assert!(cache.contains_pod("stays-uid"));
    }

    #[test]
    fn node_updates_are_classified() {
        let base = NodeBuilder::new("n");
        let old = base.clone().build();
        assert!(
            node_update_action(&old, &base.clone().build()).is_empty(),
            "heartbeats are not events"
        );
        let tainted = base.clone().taint("k", "v", "NoSchedule").build();
        assert_eq!(
            node_update_action(&old, &tainted),
            ActionType::UPDATE_NODE_TAINT
        );
        let cordoned = base.clone().unschedulable().build();
        assert_eq!(
            node_update_action(&old, &cordoned),
            ActionType::UPDATE_NODE_TAINT
        );
        let labeled = base.clone().label("a", "b").build();
        assert_eq!(
            node_update_action(&old, &labeled),
            ActionType::UPDATE_NODE_LABEL
        );
        let bigger = base.alloc("cpu", "8").build();
        assert_eq!(
            node_update_action(&old, &bigger),
            ActionType::UPDATE_NODE_ALLOCATABLE
        );
    }
}
