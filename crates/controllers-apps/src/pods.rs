//! Pod facts every workload controller needs, as upstream's `podutil` and `controller_utils`:
//! activity, readiness and availability, controller references, pods made from templates, and
//! the order in which surplus pods are deleted.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

/// The annotation saying how much deleting a pod costs, lower first.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Not finished and not being deleted (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// `status.phase`, or "" when unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod became Ready, if it is (the condition's lastTransitionTime; the epoch if unset).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| {
        ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    })
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(since) = ready_since(pod) else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    since != Timestamp::UNIX_EPOCH
        && since.as_second() + i64::from(min_ready_seconds) < now.as_second()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set, as upstream).
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A reference to `obj` for events.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    }
}

/// A pod to create from `template` for the controller `owner` (upstream's `GetPodFromTemplate`):
/// named `OWNER-xxxxx` by the API server.
pub fn pod_from_template(template: &PodTemplateSpec, owner: OwnerReference, ns: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name)),
            namespace: Some(ns.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The most restarts of any container of the pod.
pub fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.annotations()
        .get(DELETION_COST)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// log2 of the time from `t` to `now` in nanoseconds, -1 when not in the past.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 { (d as f64).log2() as i64 } else { -1 }
}

/// Sorts `pods` in the order upstream deletes surplus pods (`ActivePodsWithRanks` with
/// logarithmic scale-down): unassigned, pending < unknown < running, not ready, lower
/// deletion cost, more colocated pods of `related`, ready for less time, more restarts,
/// newer; first in the result is deleted first.
pub fn sort_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) {
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node_name(p).to_string()).or_default() += 1;
    }
    let rank = |p: &Pod| on_node.get(node_name(p)).copied().unwrap_or(0);
    // A key per pod, not a pairwise comparison: Rust's sort requires a total order (and panics
    // on one that is not), which upstream's comparator with its UID tie-break in the middle is
    // not.
    pods.sort_by_cached_key(|p| deletion_key(p, rank(p), now));
}

/// The deletion rank of one pod; smaller is deleted first.
type DeletionKey = (
    bool,
    u8,
    bool,
    i32,
    Reverse<usize>,
    Option<i64>,
    Reverse<i32>,
    Option<i64>,
    Option<String>,
);

fn deletion_key(p: &Pod, colocated: usize, now: Timestamp) -> DeletionKey {
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| log_rank(t.0, now));
    (
        !node_name(p).is_empty(),
        phase_rank(p),
        is_ready(p),
        deletion_cost(p),
        Reverse(colocated),
        ready_since(p).map(|t| log_rank(t, now)),
        Reverse(max_restarts(p)),
        created,
        p.metadata.uid.clone(),
    )
}

/// What an owner makes of the objects its selector could match (upstream's
/// `ControllerRefManager.Claim*`): the ones it controls, those to adopt, those to release.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim<T> {
    /// Controlled (already, or once adopted), selector-matching objects.
    pub owned: Vec<Arc<T>>,
    /// Orphans matching the selector, to adopt.
    pub adopt: Vec<Arc<T>>,
    /// Objects it controls that no longer match, to release.
    pub release: Vec<Arc<T>>,
}

/// Claims among `objects` for the owner with uid `owner_uid` and `selector`. An owner being
/// deleted adopts nothing; objects being deleted are not adopted.
pub fn claim<T: Resource>(
    owner_uid: &str,
    owner_deleting: bool,
    matches: impl Fn(&BTreeMap<String, String>) -> bool,
    objects: impl IntoIterator<Item = Arc<T>>,
) -> Claim<T> {
    let mut claim = Claim {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    // Borrowed, not cloned: this runs over every pod of the namespace at each sync.
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    for obj in objects {
        let meta = obj.meta();
        let labels = meta.labels.as_ref().unwrap_or(&NO_LABELS);
        match controller_ref(meta) {
            Some(r) if r.uid == owner_uid => {
                if matches(labels) {
                    claim.owned.push(obj);
                } else if !owner_deleting {
                    claim.release.push(obj);
                }
            }
            Some(_) => {}
            None => {
                if matches(labels) && !owner_deleting && meta.deletion_timestamp.is_none() {
                    claim.owned.push(obj.clone());
                    claim.adopt.push(obj);
                }
            }
        }
    }
    claim
}

/// The strategic merge patch adopting an object (upstream's, with the object's uid as a
/// precondition).
pub fn adopt_patch(owner: &OwnerReference, uid: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"ownerReferences": [owner], "uid": uid}
    })
}

/// The strategic merge patch releasing an object from the owner with `owner_uid`.
pub fn release_patch(owner_uid: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": uid}
    })
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
