//! The pod side of every hollow kubelet in the process, as one state machine without IO: fed the
//! pods and nodes the watches see, the timers that fire and the writes that failed, it keeps
//! each pod's fake run and queues the API writes a kubelet would make. The driver performs them.
//!
//! Timers (containers exiting, retries) live in one [`DelayQueue`], a timer wheel: thousands of
//! pods cost no task each.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::annotations::{self, Exit};
use crate::ip::PodIpPool;
use crate::status::{PodRun, PodShape};
use crate::usage::UsageTable;

/// A pod's namespace and name.
pub type PodKey = (String, String);

/// How long a failed write waits before it is made again.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// An API write the kubelet asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// A strategic merge patch of `pods/{name}/status` with this status.
    Status {
        key: PodKey,
        uid: String,
        status: Value,
    },
    /// A delete with `gracePeriodSeconds=0` and a UID precondition.
    Delete { key: PodKey, uid: String },
}

impl Write {
    pub fn key(&self) -> &PodKey {
        match self {
            Write::Status { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

/// A timer the kubelet set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The pod's containers exit now.
    Exit { key: PodKey, uid: String },
    /// Make the pod's last write again.
    Retry { key: PodKey, uid: String },
}

/// Where a pod is in its fake life.
#[derive(Debug)]
enum Phase {
    /// Waiting for its node's podCIDR or a free address.
    Waiting,
    /// Containers running; `exit` is the timer that ends them, if the pod asked for one.
    Running {
        run: PodRun,
        exit: Option<delay_queue::Key>,
    },
    /// Containers exited for good (`None`: found finished when listed).
    Finished(Option<PodRun>),
    /// Deletion requested; the pod has been deleted with grace 0.
    Deleting,
}

#[derive(Debug)]
struct PodState {
    uid: String,
    node: String,
    shape: PodShape,
    exit: Option<Exit>,
    phase: Phase,
}

impl PodState {
    fn ip(&self) -> Option<Ipv4Addr> {
        match &self.phase {
            Phase::Running { run, .. } if !self.shape.host_network => Some(run.pod_ip),
            _ => None,
        }
    }
}

/// One hollow node as the pod side sees it.
#[derive(Debug)]
struct NodeSlot {
    ip: Ipv4Addr,
    pool: Option<PodIpPool>,
    pods: HashSet<PodKey>,
    waiting: BTreeSet<PodKey>,
}

/// Every pod bound to this process's hollow nodes.
pub struct Kubelet {
    nodes: HashMap<String, NodeSlot>,
    pods: HashMap<PodKey, PodState>,
    timers: DelayQueue<Timer>,
    writes: Vec<Write>,
    listing: Option<HashSet<PodKey>>,
    usage: UsageTable,
}

impl Kubelet {
    /// The kubelet of `nodes`: name, InternalIP and podCIDR if known.
    pub fn new(
        nodes: impl IntoIterator<Item = (String, Ipv4Addr, Option<String>)>,
        usage: UsageTable,
    ) -> Kubelet {
        let nodes = nodes
            .into_iter()
            .map(|(name, ip, cidr)| {
                let slot = NodeSlot {
                    ip,
                    pool: cidr.as_deref().and_then(PodIpPool::new),
                    pods: HashSet::new(),
                    waiting: BTreeSet::new(),
                };
                (name, slot)
            })
            .collect();
        Kubelet {
            nodes,
            pods: HashMap::new(),
            timers: DelayQueue::new(),
            writes: Vec::new(),
            listing: None,
            usage,
        }
    }

    /// Whether `node` is one of this process's nodes.
    pub fn has_node(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// The writes queued since the last call.
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    /// Whether a timer is pending.
    pub fn has_timers(&self) -> bool {
        !self.timers.is_empty()
    }

    /// The next timer to fire; `None` at once when none is set (see [`Kubelet::has_timers`]).
    pub async fn next_timer(&mut self) -> Option<Timer> {
        self.timers.next().await.map(|expired| expired.into_inner())
    }

    /// The pod watch starts listing again.
    pub fn list_started(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// The list is complete: pods that went away meanwhile are forgotten.
    pub fn list_done(&mut self, now: DateTime<Utc>) {
        let Some(seen) = self.listing.take() else {
            return;
        };
        let gone: Vec<PodKey> = self
            .pods
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.forget(&key, now);
        }
    }

    /// A node of this process was seen with this podCIDR.
    pub fn node_seen(&mut self, node: &str, pod_cidr: Option<&str>, now: DateTime<Utc>) {
        let Some(cidr) = pod_cidr.filter(|c| !c.is_empty()) else {
            return;
        };
        let Some(slot) = self.nodes.get_mut(node) else {
            return;
        };
        if slot.pool.as_ref().is_some_and(|p| p.cidr() == cidr) {
            return;
        }
        let Some(mut pool) = PodIpPool::new(cidr) else {
            tracing::warn!(node, cidr, "hollow node: unparsable podCIDR");
            return;
        };
        for key in &slot.pods {
            if let Some(ip) = self.pods.get(key).and_then(PodState::ip) {
                pool.occupy(ip);
            }
        }
        slot.pool = Some(pool);
        self.start_waiting(node, now);
    }

    /// A pod was added or changed.
    pub fn pod_applied(&mut self, pod: &Pod, now: DateTime<Utc>) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        if !self.nodes.contains_key(node) {
            return;
        }
        let key = pod_key(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(listing) = self.listing.as_mut() {
            listing.insert(key.clone());
        }
        if self.pods.get(&key).is_some_and(|s| s.uid != uid) {
            self.forget(&key, now);
        }
        let containers: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
            .collect();
        self.usage
            .set(&key, node, annotations::usage(pod), &containers);
        if pod.metadata.deletion_timestamp.is_some() {
            self.delete(&key, pod, node, now);
        } else if !self.pods.contains_key(&key) {
            self.first_sight(key, uid, node, pod, now);
        }
    }

    /// A pod was deleted.
    pub fn pod_deleted(&mut self, pod: &Pod, now: DateTime<Utc>) {
        let key = pod_key(pod);
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if self.pods.get(&key).is_some_and(|s| s.uid == uid) {
            self.forget(&key, now);
        }
    }

    /// A timer fired.
    pub fn timer_fired(&mut self, timer: Timer, now: DateTime<Utc>) {
        match timer {
            Timer::Exit { key, uid } => self.exit(&key, &uid, now),
            Timer::Retry { key, uid } => self.rewrite(&key, &uid),
        }
    }

    /// A write failed; unless the pod is gone it is made again after [`RETRY_AFTER`].
    pub fn write_failed(&mut self, key: PodKey, uid: String, pod_gone: bool) {
        if !pod_gone && self.pods.get(&key).is_some_and(|s| s.uid == uid) {
            self.timers.insert(Timer::Retry { key, uid }, RETRY_AFTER);
        }
    }

    fn first_sight(&mut self, key: PodKey, uid: String, node: &str, pod: &Pod, now: DateTime<Utc>) {
        let shape = PodShape::of(pod);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let mut state = PodState {
            uid,
            node: node.to_string(),
            exit: annotations::exit(pod),
            shape,
            phase: Phase::Waiting,
        };
        if let Some(slot) = self.nodes.get_mut(node) {
            slot.pods.insert(key.clone());
        }
        if matches!(phase, Some("Succeeded" | "Failed")) {
            state.phase = Phase::Finished(None);
            self.pods.insert(key, state);
        } else if let Some(run) = PodRun::adopt(pod, &state.shape) {
            self.adopt(key, state, run, now);
        } else {
            self.pods.insert(key.clone(), state);
            self.start(&key, now);
        }
    }

    /// Takes over a pod this process started before a restart.
    fn adopt(&mut self, key: PodKey, mut state: PodState, run: PodRun, now: DateTime<Utc>) {
        if let Some(pool) = self
            .nodes
            .get_mut(&state.node)
            .and_then(|s| s.pool.as_mut())
            && !state.shape.host_network
        {
            pool.occupy(run.pod_ip);
        }
        let ran = (now
            - run
                .containers
                .first()
                .map_or(run.start_time, |c| c.started_at))
        .to_std()
        .unwrap_or_default();
        let exit = state
            .exit
            .map(|e| self.set_exit_timer(&key, &state.uid, e.after.saturating_sub(ran)));
        state.phase = Phase::Running { run, exit };
        self.pods.insert(key, state);
    }

    /// Starts the pod's containers if its node can give it an address; else it waits.
    fn start(&mut self, key: &PodKey, now: DateTime<Utc>) {
        let Some(state) = self.pods.get_mut(key) else {
            return;
        };
        let Some(slot) = self.nodes.get_mut(&state.node) else {
            return;
        };
        let ip = if state.shape.host_network {
            Some(slot.ip)
        } else {
            slot.pool.as_mut().and_then(PodIpPool::allocate)
        };
        let Some(ip) = ip else {
            slot.waiting.insert(key.clone());
            state.phase = Phase::Waiting;
            return;
        };
        let run = PodRun::start(&state.shape, slot.ip, ip, now);
        let (uid, exit) = (state.uid.clone(), state.exit);
        self.writes.push(Write::Status {
            key: key.clone(),
            uid: uid.clone(),
            status: run.status(),
        });
        let exit = exit.map(|e| self.set_exit_timer(key, &uid, e.after));
        if let Some(state) = self.pods.get_mut(key) {
            state.phase = Phase::Running { run, exit };
        }
    }

    fn set_exit_timer(&mut self, key: &PodKey, uid: &str, after: Duration) -> delay_queue::Key {
        let timer = Timer::Exit {
            key: key.clone(),
            uid: uid.to_string(),
        };
        self.timers.insert(timer, after)
    }

    /// The containers exit: they restart, or the pod ends as its restart policy says.
    fn exit(&mut self, key: &PodKey, uid: &str, now: DateTime<Utc>) {
        let Some(state) = self.pods.get_mut(key).filter(|s| s.uid == uid) else {
            return;
        };
        let Phase::Running { run, exit } = &mut state.phase else {
            return;
        };
        *exit = None;
        let code = state.exit.map_or(0, |e| e.exit_code);
        let restart = state.shape.restarts_after(code);
        if restart {
            run.restart(code, now);
        } else {
            run.exit(code, now);
        }
        let status = run.status();
        let after = state.exit.map(|e| e.after);
        self.writes.push(Write::Status {
            key: key.clone(),
            uid: uid.to_string(),
            status,
        });
        if restart {
            let timer = after.map(|after| self.set_exit_timer(key, uid, after));
            if let Some(Phase::Running { exit, .. }) = self.pods.get_mut(key).map(|s| &mut s.phase)
            {
                *exit = timer;
            }
        } else {
            self.finish(key, now);
        }
    }

    /// The pod's containers ended for good: its address goes back to the node.
    fn finish(&mut self, key: &PodKey, now: DateTime<Utc>) {
        let Some(state) = self.pods.get_mut(key) else {
            return;
        };
        let ip = state.ip();
        let node = state.node.clone();
        state.phase = match std::mem::replace(&mut state.phase, Phase::Waiting) {
            Phase::Running { run, .. } => Phase::Finished(Some(run)),
            other => other,
        };
        self.release(&node, ip, now);
    }

    /// Deletion was requested: the containers stop at once and the pod is deleted with grace 0.
    fn delete(&mut self, key: &PodKey, pod: &Pod, node: &str, now: DateTime<Utc>) {
        if matches!(self.pods.get(key).map(|s| &s.phase), Some(Phase::Deleting)) {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.writes.push(Write::Delete {
            key: key.clone(),
            uid: uid.clone(),
        });
        self.stop(key, now);
        let state = self.pods.entry(key.clone()).or_insert_with(|| PodState {
            uid: uid.clone(),
            node: node.to_string(),
            shape: PodShape::default(),
            exit: None,
            phase: Phase::Deleting,
        });
        state.phase = Phase::Deleting;
        if let Some(slot) = self.nodes.get_mut(node) {
            slot.pods.insert(key.clone());
        }
    }

    /// Makes the pod's current write again (after a failure).
    fn rewrite(&mut self, key: &PodKey, uid: &str) {
        let Some(state) = self.pods.get(key).filter(|s| s.uid == uid) else {
            return;
        };
        let write = match &state.phase {
            Phase::Running { run, .. } | Phase::Finished(Some(run)) => Write::Status {
                key: key.clone(),
                uid: uid.to_string(),
                status: run.status(),
            },
            Phase::Deleting => Write::Delete {
                key: key.clone(),
                uid: uid.to_string(),
            },
            Phase::Waiting | Phase::Finished(None) => return,
        };
        self.writes.push(write);
    }

    /// Stops the pod's containers: cancels its timer and frees its address.
    fn stop(&mut self, key: &PodKey, now: DateTime<Utc>) {
        let Some(state) = self.pods.get_mut(key) else {
            return;
        };
        let ip = state.ip();
        let node = state.node.clone();
        if let Phase::Running {
            exit: Some(timer), ..
        } = &state.phase
        {
            self.timers.try_remove(timer);
        }
        state.phase = Phase::Waiting;
        if let Some(slot) = self.nodes.get_mut(&node) {
            slot.waiting.remove(key);
        }
        self.release(&node, ip, now);
    }

    /// Forgets a pod that is gone.
    fn forget(&mut self, key: &PodKey, now: DateTime<Utc>) {
        self.stop(key, now);
        if let Some(state) = self.pods.remove(key)
            && let Some(slot) = self.nodes.get_mut(&state.node)
        {
            slot.pods.remove(key);
        }
        self.usage.remove(key);
    }

    fn release(&mut self, node: &str, ip: Option<Ipv4Addr>, now: DateTime<Utc>) {
        let Some(ip) = ip else {
            return;
        };
        if let Some(pool) = self.nodes.get_mut(node).and_then(|s| s.pool.as_mut()) {
            pool.release(ip);
        }
        self.start_waiting(node, now);
    }

    /// Starts the node's waiting pods, in name order, while addresses last.
    fn start_waiting(&mut self, node: &str, now: DateTime<Utc>) {
        let waiting = match self.nodes.get_mut(node) {
            Some(slot) if !slot.waiting.is_empty() => std::mem::take(&mut slot.waiting),
            _ => return,
        };
        for key in waiting {
            self.start(&key, now);
        }
    }
}

fn pod_key(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
#[path = "kubelet_tests.rs"]
mod tests;
