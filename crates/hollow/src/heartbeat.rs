//! Keeps every hollow node alive as a kubelet does: its Lease in `kube-node-lease` renewed every
//! 10 s, its conditions' heartbeat written every minute (or at once when another component
//! changed them). One task for all nodes: a tick every 100 ms renews the nodes due at that tick,
//! so each period's writes are spread evenly over it, with bounded concurrency.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::Request;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::{conditions, micro_time, time};

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `spec.leaseDurationSeconds` of each node's Lease, as upstream's kubelet.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often each Lease is renewed.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often each node's status heartbeat is written.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(60);
/// The granularity of the schedule.
pub const TICK: Duration = Duration::from_millis(100);
/// Heartbeat writes in flight at once.
const CONCURRENCY: usize = 32;
/// At most one warning per this period, however many writes fail.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Which nodes are due at a tick: node `i` is due when `i ≡ tick (mod ticks per period)`, so
/// each node is written once per period and the period's writes are spread evenly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    ticks: u64,
}

impl Schedule {
    /// A schedule repeating every `period`, in steps of `tick`.
    pub fn new(period: Duration, tick: Duration) -> Schedule {
        let ticks = period.as_millis() / tick.as_millis().max(1);
        Schedule {
            ticks: u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
        }
    }

    /// The indices, among `count` nodes, due at `tick`.
    pub fn due(&self, tick: u64, count: usize) -> impl Iterator<Item = usize> + use<> {
        let first = usize::try_from(tick % self.ticks).unwrap_or(usize::MAX);
        let step = usize::try_from(self.ticks).unwrap_or(usize::MAX);
        (first..count).step_by(step)
    }
}

/// A registered node the heartbeat keeps alive.
#[derive(Clone, Debug)]
pub struct HeartbeatNode {
    pub name: String,
    pub uid: String,
}

/// What the heartbeat remembers per node.
#[derive(Clone, Debug)]
struct Beat {
    lease_exists: bool,
    /// When the conditions last changed (written as `lastTransitionTime`).
    transition: DateTime<Utc>,
}

enum Outcome {
    Lease {
        index: usize,
        exists: bool,
        ok: bool,
    },
    Status {
        ok: bool,
    },
}

/// Renews every node's Lease and status until `shutdown`. `urgent` carries the indices of nodes
/// whose conditions another component changed: their status is written at the next tick.
pub async fn run(
    client: kube::Client,
    nodes: Vec<HeartbeatNode>,
    mut urgent: mpsc::UnboundedReceiver<usize>,
    shutdown: CancellationToken,
) {
    let now = Utc::now();
    let mut beats = vec![
        Beat {
            lease_exists: false,
            transition: now,
        };
        nodes.len()
    ];
    let (leases, statuses) = (
        Schedule::new(RENEW_INTERVAL, TICK),
        Schedule::new(STATUS_INTERVAL, TICK),
    );
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warn: Option<Instant> = None;
    for tick in 0u64.. {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = Utc::now();
        let mut status_due: BTreeSet<usize> = statuses.due(tick, nodes.len()).collect();
        while let Ok(i) = urgent.try_recv() {
            if let Some(beat) = beats.get_mut(i) {
                beat.transition = now;
                status_due.insert(i);
            }
        }
        let lease_due: Vec<usize> = leases.due(tick, nodes.len()).collect();
        let writes = batch(&client, &nodes, &beats, &lease_due, &status_due, now);
        let outcomes = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcomes = stream::iter(writes).buffer_unordered(CONCURRENCY).collect::<Vec<_>>() => outcomes,
        };
        let failed = record(&mut beats, outcomes);
        if failed > 0 && last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(failed, "hollow nodes: lease or status heartbeats failed");
            last_warn = Some(Instant::now());
        }
    }
}

/// Remembers which Leases exist; returns how many writes failed.
fn record(beats: &mut [Beat], outcomes: Vec<Outcome>) -> usize {
    let mut failed = 0;
    for outcome in outcomes {
        match outcome {
            Outcome::Lease { index, exists, ok } => {
                beats[index].lease_exists = exists;
                failed += usize::from(!ok);
            }
            Outcome::Status { ok } => failed += usize::from(!ok),
        }
    }
    failed
}

/// The writes due at one tick: leases to renew, statuses to write.
fn batch<'a>(
    client: &'a kube::Client,
    nodes: &'a [HeartbeatNode],
    beats: &[Beat],
    lease_due: &[usize],
    status_due: &BTreeSet<usize>,
    now: DateTime<Utc>,
) -> Vec<BoxFuture<'a, Outcome>> {
    let mut writes: Vec<BoxFuture<'a, Outcome>> = Vec::new();
    for &index in lease_due {
        let (node, exists) = (&nodes[index], beats[index].lease_exists);
        writes.push(
            async move {
                let (exists, ok) = renew_lease(client, node, exists, now).await;
                Outcome::Lease { index, exists, ok }
            }
            .boxed(),
        );
    }
    for &index in status_due {
        let (node, transition) = (&nodes[index], beats[index].transition);
        writes.push(
            async move {
                let ok = write_status(client, &node.name, transition, now).await;
                Outcome::Status { ok }
            }
            .boxed(),
        );
    }
    writes
}

/// Renews the node's Lease, creating it when missing. Returns whether the Lease exists
/// afterwards and whether the renewal succeeded.
async fn renew_lease(
    client: &kube::Client,
    node: &HeartbeatNode,
    exists: bool,
    now: DateTime<Utc>,
) -> (bool, bool) {
    let leases = Request::new(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
    ));
    let spec = json!({"holderIdentity": node.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                      "renewTime": micro_time(now)});
    let patch = json!({ "spec": spec });
    let renew = || {
        send(
            client,
            leases.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
    };
    if exists {
        match renew().await {
            Ok(()) => return (true, true),
            Err(404) => {}
            Err(code) => {
                tracing::debug!(node = node.name, code, "renewing the node lease failed");
                return (true, false);
            }
        }
    }
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                          "name": node.name, "uid": node.uid}]},
        "spec": spec,
    });
    let body = serde_json::to_vec(&lease).unwrap_or_default();
    match send(client, leases.create(&PostParams::default(), body)).await {
        Ok(()) => (true, true),
        // Created by an earlier run of this process: renew it.
        Err(409) => (true, renew().await.is_ok()),
        Err(code) => {
            tracing::debug!(node = node.name, code, "creating the node lease failed");
            (false, false)
        }
    }
}

/// Writes the node's conditions with a fresh heartbeat.
async fn write_status(
    client: &kube::Client,
    node: &str,
    transition: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let patch = json!({"status": {"conditions": conditions(&time(transition), &time(now))}});
    let request = Request::new("/api/v1/nodes").patch_subresource(
        "status",
        node,
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    );
    match send(client, request).await {
        Ok(()) => true,
        Err(code) => {
            tracing::debug!(node, code, "writing the node status heartbeat failed");
            false
        }
    }
}

/// Sends a request, dropping the response; an error is its HTTP code (0 when there is none).
async fn send(
    client: &kube::Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<(), u16> {
    let request = request.map_err(|_| 0u16)?;
    match client.request::<IgnoredAny>(request).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(_) => Err(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_is_due_once_per_period() {
        let s = Schedule::new(RENEW_INTERVAL, TICK);
        let count = 5_003;
        let mut seen = vec![0u32; count];
        let mut sizes = Vec::new();
        for tick in 0..100 {
            let batch: Vec<usize> = s.due(tick, count).collect();
            sizes.push(batch.len());
            for i in batch {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        assert_eq!((min, max), (Some(&50), Some(&51)), "spread evenly");
        let again: Vec<usize> = s.due(100, count).collect();
        assert_eq!(
            again,
            s.due(0, count).collect::<Vec<_>>(),
            "the next period repeats"
        );
    }

    #[test]
    fn few_nodes_leave_most_ticks_idle() {
        let s = Schedule::new(RENEW_INTERVAL, TICK);
        let busy = (0..100).filter(|&t| s.due(t, 3).next().is_some()).count();
        assert_eq!(busy, 3);
        assert_eq!(s.due(1, 3).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn status_period_is_six_lease_periods() {
        let s = Schedule::new(STATUS_INTERVAL, TICK);
        let total: usize = (0..600).map(|t| s.due(t, 1_200).count()).sum();
        assert_eq!(total, 1_200);
        assert_eq!(s.due(0, 1_200).collect::<Vec<_>>(), vec![0, 600]);
    }

    #[test]
    fn degenerate_periods_still_work() {
        let s = Schedule::new(Duration::from_millis(10), TICK);
        assert_eq!(s.due(7, 3).collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}
