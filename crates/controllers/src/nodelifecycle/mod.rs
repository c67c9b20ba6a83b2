//! The node lifecycle controller and the taint-eviction controller, as upstream's: node health
//! from Lease renewals and the Ready heartbeat, conditions set to Unknown after the grace period,
//! NoExecute and NoSchedule taints following the conditions (rate-limited per zone, see
//! [`monitor`]), pods of unhealthy nodes marked not Ready at once, and pods evicted from
//! NoExecute-tainted nodes when their tolerations run out (see [`eviction`]).

pub mod eviction;
pub mod monitor;

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};
use monitor::{Action, Monitor};

/// The node Leases' namespace.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Writes in flight at once during one sync.
const CONCURRENCY: usize = 16;

/// Upstream's flags of the node lifecycle controller, with their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked (`--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// How long a node may go without heartbeats before it is Unknown
    /// (`--node-monitor-grace-period`, 50 s).
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never posted its status (`--node-startup-grace-period`, 60 s).
    pub node_startup_grace_period: Duration,
    /// Nodes tainted per second in a healthy zone (`--node-eviction-rate`, 0.1).
    pub node_eviction_rate: f64,
    /// The same in an unhealthy large zone (`--secondary-node-eviction-rate`, 0.01).
    pub secondary_node_eviction_rate: f64,
    /// Zones with at most this many nodes stop evicting when unhealthy
    /// (`--large-cluster-size-threshold`, 50).
    pub large_cluster_size_threshold: usize,
    /// The fraction of not-Ready nodes (at least 3) making a zone unhealthy
    /// (`--unhealthy-zone-threshold`, 0.55).
    pub unhealthy_zone_threshold: f64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

impl NodeLifecycleConfig {
    fn validate(&self) -> Result<(), Error> {
        let bad = |message: &str| {
            Err(Error::InvalidConfig {
                controller: "node-lifecycle",
                message: message.into(),
            })
        };
        if self.node_monitor_period.is_zero() {
            return bad("--node-monitor-period must be positive");
        }
        if !(self.node_eviction_rate >= 0.0 && self.secondary_node_eviction_rate >= 0.0) {
            return bad("eviction rates must not be negative");
        }
        if !(0.0..=1.0).contains(&self.unhealthy_zone_threshold) {
            return bad("--unhealthy-zone-threshold must be between 0 and 1");
        }
        Ok(())
    }
}

/// Runs the node lifecycle and taint-eviction controllers until `shutdown`.
pub async fn run(
    informers: SharedInformers,
    config: NodeLifecycleConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate()?;
    let period = config.node_monitor_period;
    let client = informers.client().clone();
    let (nodes, node_changes) = informers.changes::<Node>();
    // All Leases (shared; the node Leases are most of them), those of kube-node-lease used.
    // A renewal never calls for a sync by itself: health is judged against the grace period at
    // every monitor period, as upstream's `monitorNodeHealth` does, so 5,000 nodes renewing 500
    // Leases a second do not drive a pass over every node and pod twice a second.
    let leases = informers.store::<Lease>();
    let (pods, pod_changes) = informers.changes::<Pod>();
    let ready = vec![
        k8rs_controller_runtime::ready(&nodes),
        k8rs_controller_runtime::ready(&leases),
        k8rs_controller_runtime::ready(&pods),
    ];
    let shell = Shell::new(client);
    let mut monitor = Monitor::new(config);
    let changes = vec![node_changes, pod_changes];
    informer::run_loop(changes, ready, period, shutdown, || {
        let (node_snap, lease_snap, pod_snap) = (nodes.state(), leases.state(), pods.state());
        let node_refs: Vec<&Node> = node_snap.iter().map(AsRef::as_ref).collect();
        let pod_refs: Vec<&Pod> = pod_snap.iter().map(AsRef::as_ref).collect();
        let lease_map: HashMap<String, &Lease> = lease_snap
            .iter()
            .filter(|l| l.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE))
            .filter_map(|l| Some((l.metadata.name.clone()?, l.as_ref())))
            .collect();
        let wall = Timestamp::now();
        let plan = monitor.sync(Instant::now(), wall, &node_refs, &lease_map, &pod_refs);
        let evictions = eviction::plan(wall, &node_refs, &pod_refs);
        let next = [plan.next, evictions.next].into_iter().flatten().min();
        let shell = shell.clone();
        async move {
            let ok = shell.perform(plan.actions, evictions.now).await;
            match (ok, next) {
                (false, _) => Next::Retry,
                (true, Some(d)) => Next::After(d.min(period)),
                (true, None) => Next::After(period),
            }
        }
    })
    .await;
    Ok(())
}

/// Performs the actions.
#[derive(Clone)]
struct Shell {
    client: kube::Client,
    nodes: Api<Node>,
    node_recorder: Recorder,
    taint_recorder: Recorder,
}

fn reporter(name: &str) -> Reporter {
    Reporter {
        controller: name.into(),
        instance: None,
    }
}

impl Shell {
    fn new(client: kube::Client) -> Shell {
        Shell {
            nodes: Api::all(client.clone()),
            node_recorder: Recorder::new(client.clone(), reporter("node-controller")),
            taint_recorder: Recorder::new(client.clone(), reporter("taint-eviction-controller")),
            client,
        }
    }

    /// Performs everything; answers whether all of it succeeded.
    async fn perform(&self, actions: Vec<Action>, evict: Vec<(String, String, String)>) -> bool {
        let mut work: Vec<BoxFuture<'static, bool>> = Vec::new();
        for a in actions {
            let s = self.clone();
            work.push(async move { s.act(a).await }.boxed());
        }
        for (ns, name, uid) in evict {
            let s = self.clone();
            work.push(async move { s.evict(ns, name, uid).await }.boxed());
        }
        let results: Vec<bool> = stream::iter(work)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().all(|ok| ok)
    }

    async fn act(&self, action: Action) -> bool {
        let pp = PatchParams::default();
        let result = match action {
            Action::SetConditions { node, conditions } => {
                tracing::info!(
                    node,
                    "node lifecycle: node stopped posting status; conditions Unknown"
                );
                let body = json!({"status": {"conditions": conditions}});
                self.nodes
                    .patch_status(&node, &pp, &Patch::Merge(&body))
                    .await
                    .map(|_| ())
            }
            Action::SetTaints { node, taints } => {
                let body = json!({"spec": {"taints": taints}});
                self.nodes
                    .patch(&node, &pp, &Patch::Merge(&body))
                    .await
                    .map(|_| ())
            }
            Action::MarkPodNotReady { namespace, name } => {
                return self.mark_not_ready(&namespace, &name).await;
            }
            Action::NodeEvent {
                node,
                uid,
                reason,
                message,
            } => {
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    uid: Some(uid),
                    ..Default::default()
                };
                let event = Event {
                    type_: EventType::Normal,
                    reason,
                    note: Some(message),
                    action: "NodeHealth".into(),
                    secondary: None,
                };
                if let Err(err) = self.node_recorder.publish(&event, &reference).await {
                    tracing::warn!(%err, node, "node lifecycle: recording an event failed");
                }
                return true;
            }
        };
        ok_or_log(result, "node lifecycle: writing a node failed")
    }

    async fn mark_not_ready(&self, ns: &str, name: &str) -> bool {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let body = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": Timestamp::now()}]}});
        let result = pods
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&body))
            .await;
        let event = Event {
            type_: EventType::Warning,
            reason: "NodeNotReady".into(),
            note: Some("Node is not ready".into()),
            action: "MarkPodNotReady".into(),
            secondary: None,
        };
        if let Ok(pod) = &result {
            let _ = self.node_recorder.publish(&event, &pod_ref(pod)).await;
        }
        ok_or_log(
            result.map(|_| ()),
            "node lifecycle: marking a pod not ready failed",
        )
    }

    async fn evict(&self, ns: String, name: String, uid: String) -> bool {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let body = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Timestamp::now()}]}});
        let marked = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&body))
            .await;
        if let Ok(pod) = &marked {
            let event = Event {
                type_: EventType::Normal,
                reason: "TaintManagerEviction".into(),
                note: Some(format!("Marking for deletion Pod {ns}/{name}")),
                action: "Evict".into(),
                secondary: None,
            };
            let _ = self.taint_recorder.publish(&event, &pod_ref(pod)).await;
        }
        tracing::info!(namespace = ns, pod = name, "taint eviction: deleting pod");
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        ok_or_log(
            pods.delete(&name, &dp).await.map(|_| ()),
            "taint eviction: deleting a pod failed",
        )
    }
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn ok_or_log(result: Result<(), kube::Error>, what: &str) -> bool {
    match result {
        Ok(()) => true,
        // Gone or changed meanwhile: the next sync sees the news.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
        Err(err) => {
            tracing::warn!(%err, "{what}; retrying");
            false
        }
    }
}
