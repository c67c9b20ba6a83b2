//! The scheduling queue (upstream's `PriorityQueue`): an active heap ordered by the QueueSort
//! plugin, a backoff heap (1 s doubling to 10 s per attempt), and a pool of unschedulable pods
//! that go back when a cluster event a rejecting plugin registered happens, or after 5 minutes.
//! PreEnqueue plugins (scheduling gates) keep pods out of the active heap.
//!
//! Events that happen while a pod is being scheduled are remembered, so a pod that fails because
//! of a state an event already changed goes to backoff instead of waiting for the next event.

mod heap;
mod nominator;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::framework::{ClusterEvent, Framework, NominatedPods, QueuedPodInfo};
use crate::podinfo::{PodInfo, pod_uid};
use heap::KeyedHeap;
use nominator::Nominator;

/// Timing of the queue (upstream's defaults).
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Backoff after the first failure.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// How long a pod waits in the unschedulable pool without a relevant event.
    pub max_in_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(5 * 60),
        }
    }
}

impl QueueConfig {
    /// Upstream's `calculateBackoffDuration`: initial, doubled per attempt after the first,
    /// capped at the maximum.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d > self.max_backoff {
                return self.max_backoff;
            }
        }
        d
    }

    fn backoff_expiry(&self, p: &QueuedPodInfo) -> Instant {
        p.timestamp + self.backoff(p.attempts)
    }
}

#[derive(Debug, Default)]
struct InFlight {
    since_event: u64,
    latest: Option<Arc<PodInfo>>,
    deleted: bool,
}

struct State {
    active: KeyedHeap<QueuedPodInfo>,
    backoff: KeyedHeap<QueuedPodInfo>,
    unschedulable: HashMap<String, QueuedPodInfo>,
    in_flight: HashMap<String, InFlight>,
    in_flight_events: Vec<(u64, ClusterEvent)>,
    event_seq: u64,
    seq: u64,
    nominator: Nominator,
    closed: bool,
}

/// Sizes of the queue's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Pods ready to be scheduled.
    pub active: usize,
    /// Pods waiting out a backoff.
    pub backoff: usize,
    /// Pods waiting for an event (gated pods included).
    pub unschedulable: usize,
    /// Pods being scheduled.
    pub in_flight: usize,
}

/// The queue.
pub struct SchedulingQueue {
    state: Mutex<State>,
    notify: Notify,
    framework: Arc<Framework>,
    events: Vec<(&'static str, ClusterEvent)>,
    config: QueueConfig,
}

impl std::fmt::Debug for SchedulingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulingQueue")
            .field("counts", &self.counts())
            .finish()
    }
}

/// Upstream's `isPodUpdated`: a change other than status and bookkeeping metadata.
fn pod_spec_changed(old: &Pod, new: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        p.status = None;
        p.metadata.resource_version = None;
        p.metadata.generation = None;
        p.metadata.managed_fields = None;
        p
    };
    strip(old) != strip(new)
}

fn nominated_node(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .nominated_node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

impl SchedulingQueue {
    /// A queue for `framework`'s QueueSort and PreEnqueue plugins and registered events.
    pub fn new(framework: Arc<Framework>, config: QueueConfig) -> Self {
        let sort = Arc::clone(&framework.queue_sort);
        let state = State {
            active: KeyedHeap::new(Box::new(move |a, b| sort.less(a, b))),
            backoff: KeyedHeap::new(Box::new(move |a, b| {
                config.backoff_expiry(a) < config.backoff_expiry(b)
            })),
            unschedulable: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_events: Vec::new(),
            event_seq: 0,
            seq: 0,
            nominator: Nominator::default(),
            closed: false,
        };
        let events = framework.registered_events();
        Self {
            state: Mutex::new(state),
            notify: Notify::new(),
            framework,
            events,
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sizes of the queue's parts.
    pub fn counts(&self) -> QueueCounts {
        let s = self.lock();
        QueueCounts {
            active: s.active.len(),
            backoff: s.backoff.len(),
            unschedulable: s.unschedulable.len(),
            in_flight: s.in_flight.len(),
        }
    }

    /// Whether a pod with `uid` is waiting anywhere in the queue or being scheduled.
    pub fn contains(&self, uid: &str) -> bool {
        let s = self.lock();
        s.active.contains(uid)
            || s.backoff.contains(uid)
            || s.unschedulable.contains_key(uid)
            || s.in_flight.contains_key(uid)
    }

    /// Adds a new pending pod.
    pub fn add(&self, pod: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(pod));
        let mut s = self.lock();
        if s.active.contains(&info.uid)
            || s.backoff.contains(&info.uid)
            || s.unschedulable.contains_key(&info.uid)
        {
            drop(s);
            self.update(None, Arc::clone(&info.pod));
            return;
        }
        if let Some(node) = nominated_node(&info.pod) {
            s.nominator.add(Arc::clone(&info), node);
        }
        let now = Instant::now();
        s.seq += 1;
        let qp = QueuedPodInfo {
            pod: info,
            timestamp: now,
            initial_attempt: now,
            attempts: 0,
            unschedulable_plugins: BTreeSet::new(),
            gated_by: None,
            seq: s.seq,
        };
        if self.activate(&mut s, qp) {
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Runs PreEnqueue and puts the pod in the active heap, or keeps it gated. Returns whether it
    /// became active.
    fn activate(&self, s: &mut State, mut qp: QueuedPodInfo) -> bool {
        let status = self.framework.run_pre_enqueue(&qp.pod);
        let uid = qp.pod.uid.clone();
        if status.is_success() {
            qp.gated_by = None;
            s.active.push(uid, qp);
            true
        } else {
            qp.gated_by = Some(status.plugin);
            s.unschedulable.insert(uid, qp);
            false
        }
    }

    /// Moves a pod to backoff when it is still backing off, else to the active heap.
    fn requeue(&self, s: &mut State, qp: QueuedPodInfo) -> bool {
        if qp.attempts > 0 && self.config.backoff_expiry(&qp) > Instant::now() {
            s.backoff.push(qp.pod.uid.clone(), qp);
            false
        } else {
            self.activate(s, qp)
        }
    }

    /// A pending pod changed.
    pub fn update(&self, old: Option<&Pod>, new: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(new));
        let uid = info.uid.clone();
        let mut guard = self.lock();
        let s = &mut *guard;
        match (nominated_node(&info.pod), old.and_then(nominated_node)) {
            (Some(node), _) => s.nominator.add(Arc::clone(&info), node),
            (None, Some(_)) => s.nominator.delete(&uid),
            (None, None) => s.nominator.update_pod(Arc::clone(&info)),
        }
        if let Some(f) = s.in_flight.get_mut(&uid) {
            f.latest = Some(info);
            return;
        }
        for heap in [&mut s.active, &mut s.backoff] {
            if let Some(qp) = heap.get(&uid) {
                let mut qp = qp.clone();
                qp.pod = info;
                heap.push(uid, qp);
                return;
            }
        }
        let Some(mut qp) = s.unschedulable.remove(&uid) else {
            drop(guard);
            self.add(Arc::clone(&info.pod));
            return;
        };
        let changed = qp.gated_by.is_some() || old.is_none_or(|o| pod_spec_changed(o, &info.pod));
        qp.pod = info;
        if !changed {
            s.unschedulable.insert(uid, qp);
            return;
        }
        if self.requeue(s, qp) {
            drop(guard);
            self.notify.notify_one();
        }
    }

    /// A pending pod was deleted (or got bound).
    pub fn delete(&self, pod: &Pod) {
        let uid = pod_uid(pod);
        let mut s = self.lock();
        s.nominator.delete(&uid);
        s.active.remove(&uid);
        s.backoff.remove(&uid);
        s.unschedulable.remove(&uid);
        if let Some(f) = s.in_flight.get_mut(&uid) {
            f.deleted = true;
        }
    }

    /// Waits for the next pod to schedule; `None` once the queue is closed.
    pub async fn pop(&self) -> Option<QueuedPodInfo> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                if let Some(mut qp) = s.active.pop() {
                    qp.attempts += 1;
                    let since_event = s.event_seq;
                    s.in_flight.insert(
                        qp.pod.uid.clone(),
                        InFlight {
                            since_event,
                            ..Default::default()
                        },
                    );
                    return Some(qp);
                }
            }
            notified.await;
        }
    }

    /// The pod's scheduling cycle ended without a failure to report.
    pub fn done(&self, uid: &str) {
        let mut s = self.lock();
        s.in_flight.remove(uid);
        Self::prune_events(&mut s);
    }

    fn prune_events(s: &mut State) {
        match s.in_flight.values().map(|f| f.since_event).min() {
            None => s.in_flight_events.clear(),
            Some(oldest) => s.in_flight_events.retain(|(seq, _)| *seq > oldest),
        }
    }

    fn worth_requeuing(&self, qp: &QueuedPodInfo, event: &ClusterEvent) -> bool {
        qp.unschedulable_plugins.is_empty()
            || self
                .events
                .iter()
                .any(|(plugin, reg)| qp.unschedulable_plugins.contains(plugin) && reg.covers(event))
    }

    /// Returns a pod whose scheduling failed: to backoff when it failed with an error or an event
    /// relevant to its rejectors happened meanwhile, else to the unschedulable pool.
    pub fn add_unschedulable(&self, mut qp: QueuedPodInfo) {
        let uid = qp.pod.uid.clone();
        let mut s = self.lock();
        let flight = s.in_flight.remove(&uid).unwrap_or_default();
        let missed: Vec<ClusterEvent> = s
            .in_flight_events
            .iter()
            .filter(|(seq, _)| *seq > flight.since_event)
            .map(|(_, e)| *e)
            .collect();
        Self::prune_events(&mut s);
        if flight.deleted
            || s.active.contains(&uid)
            || s.backoff.contains(&uid)
            || s.unschedulable.contains_key(&uid)
        {
            return;
        }
        let updated = flight.latest.is_some();
        if let Some(latest) = flight.latest {
            qp.pod = latest;
        }
        qp.timestamp = Instant::now();
        let to_backoff = updated
            || qp.unschedulable_plugins.is_empty()
            || missed.iter().any(|e| self.worth_requeuing(&qp, e));
        if to_backoff {
            s.backoff.push(uid, qp);
        } else {
            s.unschedulable.insert(uid, qp);
        }
    }

    /// A cluster event happened: moves the unschedulable pods it may help.
    pub fn move_all(&self, event: ClusterEvent) {
        let mut s = self.lock();
        if !s.in_flight.is_empty() {
            s.event_seq += 1;
            let seq = s.event_seq;
            s.in_flight_events.push((seq, event));
        }
        let interested = event.resource == crate::framework::EventResource::Wildcard
            || self.events.iter().any(|(_, reg)| reg.covers(&event));
        if !interested || s.unschedulable.is_empty() {
            return;
        }
        let moving: Vec<String> = s
            .unschedulable
            .iter()
            .filter(|(_, qp)| qp.gated_by.is_none() && self.worth_requeuing(qp, &event))
            .map(|(uid, _)| uid.clone())
            .collect();
        let mut activated = false;
        for uid in moving {
            if let Some(qp) = s.unschedulable.remove(&uid) {
                activated |= self.requeue(&mut s, qp);
            }
        }
        drop(s);
        if activated {
            self.notify.notify_one();
        }
    }

    /// Moves pods whose backoff is over to the active heap (upstream runs this every second).
    pub fn flush_backoff_completed(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        let mut activated = false;
        while s
            .backoff
            .peek()
            .is_some_and(|p| self.config.backoff_expiry(p) <= now)
        {
            if let Some(qp) = s.backoff.pop() {
                activated |= self.activate(&mut s, qp);
            }
        }
        drop(s);
        if activated {
            self.notify.notify_one();
        }
    }

    /// Moves pods that waited longer than the limit in the unschedulable pool (upstream checks
    /// every 30 seconds).
    pub fn flush_unschedulable_leftover(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        let stale: Vec<String> = s
            .unschedulable
            .iter()
            .filter(|(_, qp)| now.duration_since(qp.timestamp) > self.config.max_in_unschedulable)
            .map(|(uid, _)| uid.clone())
            .collect();
        let mut activated = false;
        for uid in stale {
            if let Some(qp) = s.unschedulable.remove(&uid) {
                activated |= self.requeue(&mut s, qp);
            }
        }
        drop(s);
        if activated {
            self.notify.notify_one();
        }
    }

    /// Runs the two flush loops until `cancel`.
    pub async fn run_flush_loops(&self, cancel: CancellationToken) {
        let mut backoff = tokio::time::interval(Duration::from_secs(1));
        let mut leftover = tokio::time::interval(Duration::from_secs(30));
        backoff.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        leftover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = backoff.tick() => self.flush_backoff_completed(),
                _ = leftover.tick() => self.flush_unschedulable_leftover(),
            }
        }
    }

    /// Wakes `pop` for good.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Reopens a closed queue (a new leadership term).
    pub fn reopen(&self) {
        self.lock().closed = false;
    }

    /// Nominates `pod` to `node` (after preemption); an empty node clears the nomination.
    pub fn nominate(&self, pod: Arc<PodInfo>, node: &str) {
        let mut s = self.lock();
        if node.is_empty() {
            s.nominator.delete(&pod.uid);
        } else {
            s.nominator.add(pod, node);
        }
    }

    /// The node the pod is nominated to.
    pub fn nominated_node_of(&self, uid: &str) -> Option<String> {
        self.lock().nominator.node_of(uid).map(str::to_owned)
    }

    /// All nominations, shared.
    pub fn nominated_pods(&self) -> Arc<NominatedPods> {
        self.lock().nominator.shared()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
