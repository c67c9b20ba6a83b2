//! Node health and tainting, as upstream's node lifecycle controller, without IO: fed snapshots
//! of nodes, their Leases and pods with the current time, it answers with the API actions.
//!
//! A node is healthy while its Lease (or its Ready condition's heartbeat) keeps changing; after
//! the grace period its conditions become Unknown. NoExecute taints follow the Ready condition
//! (`not-ready` for False, `unreachable` for Unknown), added through one rate limiter per zone
//! whose rate follows the zone's state, removed at once; NoSchedule taints follow the conditions
//! and `spec.unschedulable`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::NodeLifecycleConfig;

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const CONDITION_TAINTS: &[(&str, &str)] = &[
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];
/// The conditions set to Unknown with Ready, as upstream.
const MONITORED: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// A zone's health, as upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// An API action of one sync.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Replace the node's status conditions.
    SetConditions {
        node: String,
        conditions: Vec<NodeCondition>,
    },
    /// Replace the node's taints.
    SetTaints { node: String, taints: Vec<Taint> },
    /// Set the pod's Ready condition to False (and record `NodeNotReady` on it).
    MarkPodNotReady { namespace: String, name: String },
    /// Record an event on the node.
    NodeEvent {
        node: String,
        uid: String,
        reason: String,
        message: String,
    },
}

/// What one sync decided, and when the next is due at the latest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub next: Option<Duration>,
}

impl Plan {
    fn wake_in(&mut self, d: Duration) {
        self.next = Some(self.next.map_or(d, |n| n.min(d)));
    }
}

#[derive(Clone, Debug)]
struct Health {
    probe: Instant,
    heartbeat: Option<Timestamp>,
    renew: Option<Timestamp>,
    ready: Option<String>,
}

/// A token bucket of burst 1 (upstream's eviction limiter).
#[derive(Clone, Debug)]
struct Bucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(qps: f64, now: Instant) -> Bucket {
        Bucket {
            qps,
            tokens: 1.0,
            last: now,
        }
    }
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(1.0);
        self.last = now;
    }
    /// Takes a token, or says how long until one is there (`None`: never).
    fn take(&mut self, now: Instant) -> Result<(), Option<Duration>> {
        if self.qps <= 0.0 {
            return Err(None);
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Some(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.qps,
        )))
    }
}

/// The controller's memory between syncs.
#[derive(Debug)]
pub struct Monitor {
    config: NodeLifecycleConfig,
    health: HashMap<String, Health>,
    zones: HashMap<String, ZoneState>,
    buckets: HashMap<String, Bucket>,
}

/// A node's zone key (region and zone labels), as upstream's `GetZoneKey`.
pub fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    format!(
        "{}:\u{0}:{}",
        get("topology.kubernetes.io/region"),
        get("topology.kubernetes.io/zone")
    )
}

fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

fn conditions(node: &Node) -> &[NodeCondition] {
    let s = node.status.as_ref().and_then(|s| s.conditions.as_deref());
    s.unwrap_or_default()
}

fn condition<'a>(conds: &'a [NodeCondition], kind: &str) -> Option<&'a NodeCondition> {
    conds.iter().find(|c| c.type_ == kind)
}

fn taints(node: &Node) -> Vec<Taint> {
    let t = node.spec.as_ref().and_then(|s| s.taints.clone());
    t.unwrap_or_default()
}

/// Upstream's `ComputeZoneState` over the Ready statuses of a zone's nodes.
pub fn zone_state(ready: &[bool], threshold: f64) -> ZoneState {
    let not_ready = ready.iter().filter(|r| !**r).count();
    let ready_count = ready.len() - not_ready;
    if ready_count == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / ready.len() as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

impl Monitor {
    pub fn new(config: NodeLifecycleConfig) -> Monitor {
        Monitor {
            config,
            health: HashMap::new(),
            zones: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// One pass over every node.
    pub fn sync(
        &mut self,
        now: Instant,
        wall: Timestamp,
        nodes: &[&Node],
        leases: &HashMap<String, &Lease>,
        pods: &[&Pod],
    ) -> Plan {
        let mut plan = Plan::default();
        let present: HashSet<&str> = nodes.iter().map(|node| name(node)).collect();
        self.health.retain(|n, _| present.contains(n.as_str()));
        let mut ready: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut conds_now: HashMap<String, Vec<NodeCondition>> = HashMap::new();
        for node in nodes {
            let conds = self.update_health(now, wall, node, leases, &mut plan);
            let status = condition(&conds, "Ready").map(|c| c.status.clone());
            self.note_transition(node, status.as_deref(), &mut plan);
            ready.insert(name(node).to_string(), status);
            conds_now.insert(name(node).to_string(), conds);
        }
        mark_pods_not_ready(&ready, pods, &mut plan);
        let all_down = self.update_zones(now, nodes, &ready);
        for node in nodes {
            let n = name(node);
            let status = ready.get(n).cloned().flatten();
            let conds = conds_now.get(n).map(Vec::as_slice).unwrap_or_default();
            self.taint(
                now,
                wall,
                node,
                status.as_deref(),
                conds,
                all_down,
                &mut plan,
            );
        }
        plan
    }

    /// Observes the node's heartbeats; past the grace period, answers its conditions set to
    /// Unknown (and asks to write them).
    fn update_health(
        &mut self,
        now: Instant,
        wall: Timestamp,
        node: &Node,
        leases: &HashMap<String, &Lease>,
        plan: &mut Plan,
    ) -> Vec<NodeCondition> {
        let n = name(node);
        let conds = conditions(node).to_vec();
        let ready = condition(&conds, "Ready");
        let heartbeat = ready
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0);
        let renew = leases
            .get(n)
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
            .map(|t| t.0);
        let h = self.health.entry(n.to_string()).or_insert(Health {
            probe: now,
            heartbeat,
            renew,
            ready: None,
        });
        if heartbeat > h.heartbeat || renew > h.renew {
            h.probe = now;
        }
        h.heartbeat = h.heartbeat.max(heartbeat);
        h.renew = h.renew.max(renew);
        let grace = if ready.is_none() {
            self.config.node_startup_grace_period
        } else {
            self.config.node_monitor_grace_period
        };
        let deadline = h.probe + grace;
        if now <= deadline {
            plan.wake_in(deadline - now + Duration::from_millis(1));
            return conds;
        }
        let (updated, changed) = unknown_conditions(conds, wall, node);
        if changed {
            plan.actions.push(Action::SetConditions {
                node: n.to_string(),
                conditions: updated.clone(),
            });
        }
        updated
    }

    fn note_transition(&mut self, node: &Node, status: Option<&str>, plan: &mut Plan) {
        let Some(h) = self.health.get_mut(name(node)) else {
            return;
        };
        let was_ready = h.ready.as_deref() == Some("True");
        h.ready = status.map(str::to_string);
        if was_ready && status != Some("True") {
            plan.actions.push(Action::NodeEvent {
                node: name(node).to_string(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                reason: "NodeNotReady".into(),
                message: format!("Node {} status is now: NodeNotReady", name(node)),
            });
        }
    }

    /// Recomputes the zone states and their limiters' rates; answers whether every zone is
    /// fully disrupted (then nothing is evicted).
    fn update_zones(
        &mut self,
        now: Instant,
        nodes: &[&Node],
        ready: &BTreeMap<String, Option<String>>,
    ) -> bool {
        let mut per_zone: HashMap<String, Vec<bool>> = HashMap::new();
        for node in nodes {
            let r = ready.get(name(node)).cloned().flatten();
            per_zone
                .entry(zone_of(node))
                .or_default()
                .push(r.as_deref() == Some("True"));
        }
        let states: HashMap<String, ZoneState> = per_zone
            .iter()
            .map(|(z, r)| {
                (
                    z.clone(),
                    zone_state(r, self.config.unhealthy_zone_threshold),
                )
            })
            .collect();
        let all_down = |s: &HashMap<String, ZoneState>| {
            !s.is_empty() && s.values().all(|z| *z == ZoneState::FullDisruption)
        };
        if all_down(&self.zones) && !all_down(&states) {
            // Back from a total outage: every node gets a fresh grace period, as upstream.
            for h in self.health.values_mut() {
                h.probe = now;
            }
        }
        for (zone, state) in &states {
            if self.zones.get(zone) != Some(state) {
                tracing::info!(zone, ?state, "node lifecycle: zone state changed");
            }
            let size = per_zone.get(zone).map_or(0, Vec::len);
            let qps = match state {
                ZoneState::Normal | ZoneState::FullDisruption => self.config.node_eviction_rate,
                ZoneState::PartialDisruption if size > self.config.large_cluster_size_threshold => {
                    self.config.secondary_node_eviction_rate
                }
                ZoneState::PartialDisruption => 0.0,
            };
            let bucket = self
                .buckets
                .entry(zone.clone())
                .or_insert_with(|| Bucket::new(qps, now));
            if bucket.qps != qps {
                *bucket = Bucket::new(qps, now);
            }
        }
        self.buckets.retain(|z, _| states.contains_key(z));
        let down = all_down(&states);
        self.zones = states;
        down
    }

    #[allow(clippy::too_many_arguments)]
    fn taint(
        &mut self,
        now: Instant,
        wall: Timestamp,
        node: &Node,
        ready: Option<&str>,
        conds: &[NodeCondition],
        all_down: bool,
        plan: &mut Plan,
    ) {
        let current = taints(node);
        let mut next = no_schedule_taints(node, &current, ready, conds, wall);
        let want = match ready {
            _ if all_down => None,
            Some("False") => Some(TAINT_NOT_READY),
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => None,
        };
        let ours = |t: &Taint| {
            t.effect == "NoExecute" && (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY)
        };
        let had: Vec<Taint> = current.iter().filter(|t| ours(t)).cloned().collect();
        next.retain(|t| !ours(t));
        match want {
            Some(key) if had.iter().any(|t| t.key == key) => {
                next.extend(had.into_iter().filter(|t| t.key == key));
            }
            Some(key) => {
                let allowed = !had.is_empty() || self.take_token(now, node, plan);
                if allowed {
                    next.push(new_taint(key, "NoExecute", wall));
                } else {
                    next.extend(had);
                }
            }
            None => {}
        }
        if next != current {
            plan.actions.push(Action::SetTaints {
                node: name(node).to_string(),
                taints: next,
            });
        }
    }

    fn take_token(&mut self, now: Instant, node: &Node, plan: &mut Plan) -> bool {
        let Some(bucket) = self.buckets.get_mut(&zone_of(node)) else {
            return false;
        };
        match bucket.take(now) {
            Ok(()) => true,
            Err(wait) => {
                if let Some(w) = wait {
                    plan.wake_in(w);
                }
                false
            }
        }
    }
}

fn new_taint(key: &str, effect: &str, wall: Timestamp) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: (effect == "NoExecute").then_some(Time(wall)),
    }
}

/// The node's taints with the NoSchedule ones this controller owns made to follow the
/// conditions and `spec.unschedulable` (those kept keep their time).
fn no_schedule_taints(
    node: &Node,
    current: &[Taint],
    ready: Option<&str>,
    conds: &[NodeCondition],
    wall: Timestamp,
) -> Vec<Taint> {
    let mut want: Vec<&str> = Vec::new();
    match ready {
        Some("False") => want.push(TAINT_NOT_READY),
        Some("Unknown") => want.push(TAINT_UNREACHABLE),
        _ => {}
    }
    for (kind, key) in CONDITION_TAINTS {
        if condition(conds, kind).is_some_and(|c| c.status == "True") {
            want.push(key);
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push(TAINT_UNSCHEDULABLE);
    }
    let managed = |k: &str| {
        k == TAINT_NOT_READY
            || k == TAINT_UNREACHABLE
            || k == TAINT_UNSCHEDULABLE
            || CONDITION_TAINTS.iter().any(|(_, key)| *key == k)
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !(t.effect == "NoSchedule" && managed(&t.key)) || want.contains(&t.key.as_str())
        })
        .cloned()
        .collect();
    for key in want {
        if !out.iter().any(|t| t.effect == "NoSchedule" && t.key == key) {
            out.push(new_taint(key, "NoSchedule", wall));
        }
    }
    out
}

/// The monitored conditions set to Unknown (added when missing), as upstream's
/// `tryUpdateNodeHealth`; the flag says whether anything changed.
fn unknown_conditions(
    mut conds: Vec<NodeCondition>,
    wall: Timestamp,
    node: &Node,
) -> (Vec<NodeCondition>, bool) {
    let mut changed = false;
    for kind in MONITORED {
        match conds.iter_mut().find(|c| c.type_ == *kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(wall));
                changed = true;
            }
            None => {
                conds.push(NodeCondition {
                    type_: (*kind).into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(wall)),
                });
                changed = true;
            }
        }
    }
    (conds, changed)
}

/// Pods on nodes whose Ready condition is not True lose their own Ready condition at once.
fn mark_pods_not_ready(ready: &BTreeMap<String, Option<String>>, pods: &[&Pod], plan: &mut Plan) {
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        let node_ready = ready.get(node).cloned().flatten();
        if !matches!(node_ready.as_deref(), Some("False" | "Unknown")) {
            continue;
        }
        let status = pod.status.as_ref();
        let terminal = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let pod_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if pod_ready && !terminal && pod.metadata.deletion_timestamp.is_none() {
            plan.actions.push(Action::MarkPodNotReady {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
            });
        }
    }
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
