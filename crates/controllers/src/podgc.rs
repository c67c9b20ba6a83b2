//! The pod garbage collector, as upstream's PodGC: pods bound to nodes that no longer exist
//! (after a quarantine and a live check), terminated pods beyond the threshold (oldest first),
//! and unscheduled pods being deleted are deleted for good (grace period 0).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};

/// Upstream's PodGC settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodGcConfig {
    /// Terminated pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`,
    /// 12500; 0 disables).
    pub terminated_pod_gc_threshold: usize,
    /// How often the collector runs (upstream's `gcCheckPeriod`, 20 s).
    pub gc_check_period: Duration,
    /// How long a node must be missing before its pods go (upstream's quarantine, 40 s).
    pub quarantine: Duration,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        PodGcConfig {
            terminated_pod_gc_threshold: 12500,
            gc_check_period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

/// Why a pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its node is gone: marked Failed with a DisruptionTarget condition first.
    Orphaned,
    /// Beyond the terminated-pod threshold.
    Terminated,
    /// Being deleted and never scheduled.
    UnscheduledTerminating,
}

/// A pod to delete (namespace, name, uid) and why; orphans name their node, which the shell
/// checks is still gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    pub reason: Reason,
}

fn delete(pod: &Pod, reason: Reason) -> Delete {
    Delete {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        reason,
    }
}

fn terminated(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn node_of(pod: &Pod) -> Option<&str> {
    let n = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    n.filter(|n| !n.is_empty())
}

/// The collector's memory: since when each missing node has been missing.
#[derive(Debug, Default)]
pub struct PodGc {
    missing_since: HashMap<String, Instant>,
}

impl PodGc {
    /// One pass: the pods to delete.
    pub fn plan(
        &mut self,
        now: Instant,
        config: &PodGcConfig,
        nodes: &HashSet<String>,
        pods: &[&Pod],
    ) -> Vec<Delete> {
        let mut out = Vec::new();
        let mut done: Vec<&Pod> = pods.iter().copied().filter(|p| terminated(p)).collect();
        let threshold = config.terminated_pod_gc_threshold;
        if threshold > 0 && done.len() > threshold {
            done.sort_by_key(|p| {
                (
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    p.metadata.name.clone(),
                )
            });
            let excess = done.len() - threshold;
            out.extend(
                done.iter()
                    .take(excess)
                    .map(|p| delete(p, Reason::Terminated)),
            );
        }
        let missing: HashSet<&str> = pods
            .iter()
            .filter_map(|p| node_of(p))
            .filter(|n| !nodes.contains(*n))
            .collect();
        self.missing_since
            .retain(|n, _| missing.contains(n.as_str()));
        for n in &missing {
            self.missing_since.entry((*n).to_string()).or_insert(now);
        }
        for pod in pods {
            let listed = out
                .iter()
                .any(|d| d.uid == pod.metadata.uid.clone().unwrap_or_default());
            if listed {
                continue;
            }
            match node_of(pod) {
                Some(n) if !nodes.contains(n) => {
                    let since = self.missing_since.get(n).copied().unwrap_or(now);
                    if now.saturating_duration_since(since) >= config.quarantine {
                        out.push(delete(pod, Reason::Orphaned));
                    }
                }
                None if pod.metadata.deletion_timestamp.is_some() => {
                    out.push(delete(pod, Reason::UnscheduledTerminating));
                }
                _ => {}
            }
        }
        out
    }

    /// How long until a missing node's quarantine ends.
    pub fn next_due(&self, now: Instant, config: &PodGcConfig) -> Option<Duration> {
        let ends = self.missing_since.values().map(|s| *s + config.quarantine);
        ends.min().map(|e| e.saturating_duration_since(now))
    }
}

/// Runs PodGC until `shutdown`.
pub async fn run(
    informers: SharedInformers,
    config: PodGcConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.gc_check_period.is_zero() {
        return Err(Error::InvalidConfig {
            controller: "pod-garbage-collector",
            message: "the check period must be positive".into(),
        });
    }
    let client = informers.client().clone();
    let (nodes, node_changes) = informers.changes::<Node>();
    let (pods, pod_changes) = informers.changes::<Pod>();
    let ready = vec![
        k8rs_controller_runtime::ready(&nodes),
        k8rs_controller_runtime::ready(&pods),
    ];
    let mut gc = PodGc::default();
    let period = config.gc_check_period;
    informer::run_loop(
        vec![node_changes, pod_changes],
        ready,
        period,
        shutdown,
        || {
            let names: HashSet<String> = nodes
                .state()
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let snapshot = pods.state();
            let refs: Vec<&Pod> = snapshot.iter().map(AsRef::as_ref).collect();
            let now = Instant::now();
            let deletes = gc.plan(now, &config, &names, &refs);
            let next = gc.next_due(now, &config);
            let client = client.clone();
            async move {
                let mut ok = true;
                for d in deletes {
                    ok &= perform(&client, d).await;
                }
                match (ok, next) {
                    (false, _) => Next::Retry,
                    (true, Some(d)) => Next::After(d.min(period)),
                    (true, None) => Next::After(period),
                }
            }
        },
    )
    .await;
    Ok(())
}

async fn perform(client: &kube::Client, d: Delete) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &d.namespace);
    if d.reason == Reason::Orphaned {
        let node = d.node.clone().unwrap_or_default();
        // The informer may lag: make sure the node is really gone.
        match Api::<Node>::all(client.clone()).get_opt(&node).await {
            Ok(None) => {}
            Ok(Some(_)) => return true,
            Err(err) => {
                tracing::warn!(%err, node, "pod GC: checking a node failed");
                return false;
            }
        }
        let body = json!({"status": {"phase": "Failed", "conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists", "lastTransitionTime": Timestamp::now()}]}});
        let _ = pods
            .patch_status(&d.name, &PatchParams::default(), &Patch::Strategic(&body))
            .await;
    }
    tracing::info!(namespace = d.namespace, pod = d.name, reason = ?d.reason, "pod GC: deleting pod");
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(d.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(&d.name, &dp).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
        Err(err) => {
            tracing::warn!(%err, pod = d.name, "pod GC: deleting a pod failed; retrying");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::pod;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_oldest_first() {
        let config = PodGcConfig {
            terminated_pod_gc_threshold: 1,
            ..Default::default()
        };
        let old = pod("old").on("n").phase("Succeeded").created(at(1)).build();
        let new = pod("new").on("n").phase("Failed").created(at(2)).build();
        let running = pod("run").on("n").created(at(0)).build();
        let nodes = HashSet::from(["n".to_string()]);
        let out = PodGc::default().plan(Instant::now(), &config, &nodes, &[&new, &running, &old]);
        assert_eq!(out, vec![delete(&old, Reason::Terminated)]);
    }

    #[test]
    fn pods_of_missing_nodes_go_after_the_quarantine() {
        let config = PodGcConfig::default();
        let orphan = pod("o").on("gone").build();
        let mut gc = PodGc::default();
        let t0 = Instant::now();
        assert_eq!(gc.plan(t0, &config, &HashSet::new(), &[&orphan]), vec![]);
        assert_eq!(gc.next_due(t0, &config), Some(Duration::from_secs(40)));
        let later = t0 + Duration::from_secs(40);
        assert_eq!(
            gc.plan(later, &config, &HashSet::new(), &[&orphan]),
            vec![delete(&orphan, Reason::Orphaned)]
        );
    }

    #[test]
    fn unscheduled_terminating_pods_go_at_once() {
        let p = pod("p").deleting(at(5)).build();
        let out = PodGc::default().plan(
            Instant::now(),
            &PodGcConfig::default(),
            &HashSet::new(),
            &[&p],
        );
        assert_eq!(out, vec![delete(&p, Reason::UnscheduledTerminating)]);
    }
}
