//! The decisions of one ReplicaSet sync, without IO: which pods to adopt and release, how many
//! to create or which to delete, and the status to write.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::kind::{Condition, Status, View};
use crate::pods::{self, Claim};

/// At most this many pods are created or deleted by one sync (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// The condition type set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What to do about the number of pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Manage {
    /// The count is right.
    Nothing,
    /// Create this many pods.
    Create(usize),
    /// Delete these pods, in this order.
    Delete(Vec<Arc<Pod>>),
}

/// Why the last create or delete failed, for the ReplicaFailure condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The API server's message.
    pub message: String,
}

/// The whole decision of one sync, assuming adoptions succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub claim: Claim<Pod>,
    pub manage: Manage,
}

/// Claims the active pods among `candidates` (its own pods and the namespace's orphans; pods of other
/// controllers are skipped anyway) and, when `may_manage` (expectations satisfied),
/// decides how to reach the wanted count.
pub fn plan(view: &View, candidates: &[Arc<Pod>], may_manage: bool, now: Timestamp) -> Plan {
    let claim = claim_pods(view, candidates);
    let manage = if may_manage && !view.deleting {
        manage(view, &claim.owned, now)
    } else {
        Manage::Nothing
    };
    Plan { claim, manage }
}

/// Upstream's `claimPods` over the active pods.
pub fn claim_pods(view: &View, candidates: &[Arc<Pod>]) -> Claim<Pod> {
    let active = candidates.iter().filter(|p| pods::is_active(p)).cloned();
    pods::claim(
        &view.uid,
        view.deleting,
        |l| view.selector.matches(l),
        active,
    )
}

/// Upstream's `manageReplicas` decision: create the missing pods or pick the surplus ones,
/// at most [`BURST_REPLICAS`] at once.
pub fn manage(view: &View, owned: &[Arc<Pod>], now: Timestamp) -> Manage {
    let wanted = usize::try_from(view.replicas.max(0)).unwrap_or(0);
    if owned.len() < wanted {
        return Manage::Create((wanted - owned.len()).min(BURST_REPLICAS));
    }
    let surplus = (owned.len() - wanted).min(BURST_REPLICAS);
    if surplus == 0 {
        return Manage::Nothing;
    }
    let mut ranked = owned.to_vec();
    if surplus < owned.len() {
        pods::sort_for_deletion(&mut ranked, owned, now);
    }
    ranked.truncate(surplus);
    Manage::Delete(ranked)
}

/// The failure reason for a manage error: upstream names it by the direction of the diff.
pub fn failure_reason(view: &View, owned: usize) -> &'static str {
    if i64::try_from(owned).unwrap_or(i64::MAX) < i64::from(view.replicas) {
        "FailedCreate"
    } else {
        "FailedDelete"
    }
}

/// Upstream's `calculateStatus`: counts over the owned pods, the ReplicaFailure condition set
/// on a failure (kept as first set while failures continue) and cleared without one.
pub fn status(
    view: &View,
    owned: &[Arc<Pod>],
    failure: Option<&Failure>,
    now: Timestamp,
) -> Status {
    let template_labels = view
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p| {
        let labels = p.metadata.labels.as_ref();
        template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    });
    let mut conditions = view.status.conditions.clone();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some(f) if !has_failure => conditions.push(Condition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(now),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    Status {
        replicas: i32::try_from(owned.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: fully_labeled,
        ready_replicas: count(&|p| pods::is_ready(p)),
        available_replicas: count(&|p| pods::is_available(p, view.min_ready_seconds, now)),
        observed_generation: view.generation,
        conditions,
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
