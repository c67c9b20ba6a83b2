//! The decisions of one StatefulSet sync, without IO, as upstream's `updateStatefulSet`: the
//! pods of the ordinals in range are created (claims first) and kept, those out of range are
//! condemned, highest ordinal first; with OrderedReady (monotonic) each step waits for the
//! previous pods to be Running and Ready; then a RollingUpdate deletes the highest pods at or
//! above the partition that are not at the update revision, `maxUnavailable` (default 1) at a
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::identity::{self as id};
use crate::deployment::util::scaled_value;
use crate::pods;

/// One write of a sync, in the order they must be done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this claim for the pod `pod`.
    CreateClaim {
        pod: String,
        claim: Box<PersistentVolumeClaim>,
    },
    /// Create this pod.
    CreatePod(Box<Pod>),
    /// Delete the pod with this name.
    DeletePod(String),
    /// Replace this pod (its identity or storage was repaired).
    UpdatePod(Box<Pod>),
    /// Set the owner references of the claim with this name (retention policy).
    SetClaimOwners {
        claim: String,
        owners: Vec<OwnerReference>,
    },
}

impl Action {
    /// A short description (`create pod web-0`), for logs and tests.
    pub fn describe(&self) -> String {
        let name = |n: &Option<String>| n.clone().unwrap_or_default();
        match self {
            Action::CreateClaim { claim, .. } => {
                format!("create claim {}", name(&claim.metadata.name))
            }
            Action::CreatePod(p) => format!("create pod {}", name(&p.metadata.name)),
            Action::DeletePod(p) => format!("delete pod {p}"),
            Action::UpdatePod(p) => format!("update pod {}", name(&p.metadata.name)),
            Action::SetClaimOwners { claim, owners } => {
                let kinds: Vec<&str> = owners.iter().map(|o| o.kind.as_str()).collect();
                format!("own claim {claim} by [{}]", kinds.join(","))
            }
        }
    }
}

/// What one sync sees.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub set: &'a StatefulSet,
    /// The pods the set controls.
    pub pods: &'a [Arc<Pod>],
    /// The claims of the set's namespace, by name.
    pub claims: &'a BTreeMap<String, Arc<PersistentVolumeClaim>>,
    pub current: &'a ControllerRevision,
    pub update: &'a ControllerRevision,
    pub collision_count: i32,
    pub now: Timestamp,
}

/// The outcome of one sync: writes, the status to record, and when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: StatefulSetStatus,
    pub requeue_after: Option<Duration>,
}

/// The pod template a revision recorded (`data.spec.template` without `$patch`).
pub fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The data of the revision of the set's current template (upstream's `getPatch`).
pub fn revision_data(set: &StatefulSet) -> serde_json::Value {
    let template = set.spec.as_ref().map(|s| s.template.clone());
    let mut t = serde_json::to_value(template.unwrap_or_default()).unwrap_or_default();
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": t}})
}

fn strategy(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn partition(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
}

/// `rollingUpdate.maxUnavailable` scaled against the replicas (rounding down), at least 1.
fn max_unavailable(set: &StatefulSet) -> usize {
    let value = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let scaled = scaled_value(&value, id::replicas(set), false).unwrap_or(1);
    usize::try_from(scaled).unwrap_or(0).max(1)
}

fn min_ready(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// A pod of an ordinal in range: observed, or to be created.
#[derive(Debug, Clone)]
enum Slot {
    Existing(Arc<Pod>),
    New(Box<Pod>),
}

impl Slot {
    fn pod(&self) -> &Pod {
        match self {
            Slot::Existing(p) => p,
            Slot::New(p) => p,
        }
    }
}

struct Planner<'a> {
    input: Input<'a>,
    monotonic: bool,
    min_ready: i32,
    actions: Vec<Action>,
}

impl Planner<'_> {
    fn set(&self) -> &StatefulSet {
        self.input.set
    }

    fn available(&self, pod: &Pod) -> bool {
        running_and_ready(pod) && pods::is_available(pod, self.min_ready, self.input.now)
    }

    fn unavailable(&self, pod: &Pod) -> bool {
        !self.available(pod) || terminating(pod)
    }

    /// Creates the claims of `pod` that do not exist; false (and nothing more may be done for
    /// the pod) when one is being deleted or still owned by an earlier pod of that name.
    fn create_missing_claims(&mut self, pod: &Pod, ordinal: i32) -> bool {
        let name = name_of(pod);
        for mut claim in id::claims_for(self.set(), ordinal) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            match self.input.claims.get(&claim_name) {
                Some(existing) => {
                    if terminating_claim(existing) || self.stale_claim(existing, pod) {
                        return false;
                    }
                }
                None => {
                    let owners = id::claim_owners(self.set(), &[], (&name, uid(pod)), ordinal)
                        .unwrap_or_default();
                    claim.metadata.owner_references = (!owners.is_empty()).then_some(owners);
                    self.actions.push(Action::CreateClaim {
                        pod: name.clone(),
                        claim: Box::new(claim),
                    });
                }
            }
        }
        true
    }

    /// A claim still owned by a pod of this name that no longer exists (upstream's
    /// `PodClaimIsStale`): wait for the garbage collector.
    fn stale_claim(&self, claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
        let name = name_of(pod);
        claim
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.kind == "Pod" && r.name == name && r.uid != uid(pod))
    }

    /// Fixes the owner references of the pod's claims for the retention policy.
    fn fix_claim_owners(&mut self, pod: &Pod, ordinal: i32) {
        for claim in id::claims_for(self.set(), ordinal) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            let Some(existing) = self.input.claims.get(&claim_name) else {
                continue;
            };
            let refs = existing
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default();
            let wanted = id::claim_owners(self.set(), &refs, (&name_of(pod), uid(pod)), ordinal);
            if let Some(wanted) = wanted
                && !id::same_refs(&refs, &wanted)
            {
                self.actions.push(Action::SetClaimOwners {
                    claim: claim_name,
                    owners: wanted,
                });
            }
        }
    }

    /// Upstream's `processReplica`; true when the sync must stop here.
    fn replica(&mut self, slot: &Slot, ordinal: i32) -> bool {
        let pod = slot.pod();
        let phase = pods::phase(pod);
        if let Slot::Existing(p) = slot
            && (phase == "Failed" || phase == "Succeeded")
        {
            if !terminating(p) {
                self.actions.push(Action::DeletePod(name_of(p)));
            }
            return true;
        }
        if let Slot::New(p) = slot {
            if !self.create_missing_claims(p, ordinal) {
                return true;
            }
            self.actions.push(Action::CreatePod(p.clone()));
            return self.monotonic;
        }
        if phase == "Pending" && !self.create_missing_claims(pod, ordinal) {
            return true;
        }
        if self.monotonic && (terminating(pod) || !self.available(pod)) {
            return true;
        }
        if id::identity_matches(self.set(), pod) && id::storage_matches(self.set(), pod) {
            self.fix_claim_owners(pod, ordinal);
            return false;
        }
        let mut fixed = pod.clone();
        id::update_identity(self.set(), &mut fixed, ordinal);
        id::update_storage(self.set(), &mut fixed, ordinal);
        self.create_missing_claims(pod, ordinal);
        self.actions.push(Action::UpdatePod(Box::new(fixed)));
        false
    }

    /// Upstream's `processCondemned`; true when the sync must stop here.
    fn condemned(&mut self, pod: &Pod, first_unavailable: Option<&str>) -> bool {
        if terminating(pod) {
            return self.monotonic;
        }
        let first = first_unavailable == pod.metadata.name.as_deref();
        if self.monotonic && !self.available(pod) && !first {
            return true;
        }
        self.actions.push(Action::DeletePod(name_of(pod)));
        true
    }

    /// The rolling update (upstream's, with MaxUnavailableStatefulSet): pods at or above the
    /// partition not at the update revision are deleted, highest ordinal first, while fewer
    /// than `maxUnavailable` replicas are unavailable.
    fn rolling_update(&mut self, replicas: &[Slot]) {
        let budget = max_unavailable(self.set());
        let unavailable = replicas
            .iter()
            .filter(|s| self.unavailable(s.pod()))
            .count();
        let min = usize::try_from(partition(self.set()).max(0)).unwrap_or(0);
        let targets: Vec<Arc<Pod>> = replicas
            .iter()
            .skip(min)
            .rev()
            .filter_map(|slot| match slot {
                Slot::Existing(p) if self.needs_update(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        if self.monotonic {
            for pod in targets.iter().take(budget.saturating_sub(unavailable)) {
                self.actions.push(Action::DeletePod(name_of(pod)));
            }
            return;
        }
        // Parallel: old pods that are unavailable anyway are replaced first and do not use up
        // the budget (else a broken old revision could block the update for ever).
        let (broken, healthy): (Vec<_>, Vec<_>) = targets.iter().partition(|p| !self.available(p));
        if unavailable >= budget && broken.is_empty() {
            return;
        }
        let healthy = healthy.into_iter().take(budget.saturating_sub(unavailable));
        for pod in broken.into_iter().chain(healthy) {
            self.actions.push(Action::DeletePod(name_of(pod)));
        }
    }

    /// An old pod the rolling update replaces.
    fn needs_update(&self, pod: &Pod) -> bool {
        id::pod_revision(pod) != self.input.update.metadata.name.as_deref() && !terminating(pod)
    }
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn terminating_claim(claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_some()
}

/// Which template and revision a new pod of `ordinal` gets: the current one below the
/// partition of a RollingUpdate, the update one otherwise.
fn versioned_pod(input: &Input<'_>, ordinal: i32) -> Pod {
    let set = input.set;
    let below_partition =
        strategy(set) == "RollingUpdate" && ordinal < id::start_ordinal(set) + partition(set);
    let rev = if below_partition {
        input.current
    } else {
        input.update
    };
    let template = revision_template(rev)
        .or_else(|| set.spec.as_ref().map(|s| s.template.clone()))
        .unwrap_or_default();
    let name = rev.metadata.name.clone().unwrap_or_default();
    id::new_pod(set, &template, &name, ordinal)
}

/// Decides one sync.
pub fn plan(input: Input<'_>) -> Plan {
    let set = input.set;
    let start = id::start_ordinal(set);
    let count = id::replicas(set);
    let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for pod in input.pods {
        match id::ordinal(pod) {
            Some(o) if id::in_range(set, o) => {
                by_ordinal.insert(o, pod.clone());
            }
            Some(_) => condemned.push(pod.clone()),
            None => {}
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(id::ordinal(p)));
    let replicas: Vec<Slot> = (start..start + count)
        .map(|o| match by_ordinal.remove(&o) {
            Some(p) => Slot::Existing(p),
            None => Slot::New(Box::new(versioned_pod(&input, o))),
        })
        .collect();
    let observed: Vec<&Pod> = replicas
        .iter()
        .filter_map(|s| match s {
            Slot::Existing(p) => Some(p.as_ref()),
            Slot::New(_) => None,
        })
        .chain(condemned.iter().map(|p| p.as_ref()))
        .collect();
    let status = status(&input, &observed);
    let requeue_after = requeue(&input, &status);
    let mut planner = Planner {
        input,
        monotonic: !parallel(set),
        min_ready: min_ready(set),
        actions: Vec::new(),
    };
    if set.metadata.deletion_timestamp.is_none() {
        run(&mut planner, &replicas, &condemned, start);
    }
    Plan {
        actions: planner.actions,
        status,
        requeue_after,
    }
}

fn run(p: &mut Planner<'_>, replicas: &[Slot], condemned: &[Arc<Pod>], start: i32) {
    for (i, slot) in replicas.iter().enumerate() {
        let ordinal = start + i32::try_from(i).unwrap_or(i32::MAX);
        if p.replica(slot, ordinal) && p.monotonic {
            return;
        }
    }
    for pod in condemned {
        if let Some(o) = id::ordinal(pod) {
            p.fix_claim_owners(pod, o);
        }
    }
    let first_unavailable = replicas
        .iter()
        .map(Slot::pod)
        .chain(condemned.iter().rev().map(|p| p.as_ref()))
        .find(|pod| p.unavailable(pod))
        .and_then(|pod| pod.metadata.name.clone());
    for pod in condemned {
        if p.condemned(pod, first_unavailable.as_deref()) && p.monotonic {
            return;
        }
    }
    if strategy(p.set()) == "OnDelete" {
        return;
    }
    p.rolling_update(replicas);
}

/// The status from the observed pods (upstream's `computeReplicaStatus`), the rollout
/// completed once every replica is updated and ready (`completeRollingUpdate`).
fn status(input: &Input<'_>, observed: &[&Pod]) -> StatefulSetStatus {
    let set = input.set;
    let (current, update) = (
        input.current.metadata.name.clone(),
        input.update.metadata.name.clone(),
    );
    let mut s = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: current.clone(),
        update_revision: update.clone(),
        collision_count: Some(input.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0);
    for pod in observed {
        let created = !pods::phase(pod).is_empty();
        if created {
            s.replicas += 1;
        }
        if running_and_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready(set), input.now) {
                available += 1;
            }
        }
        if created && !terminating(pod) {
            let rev = id::pod_revision(pod);
            cur += i32::from(rev.is_some() && rev == current.as_deref());
            upd += i32::from(rev.is_some() && rev == update.as_deref());
        }
    }
    let want = id::replicas(set);
    if strategy(set) == "RollingUpdate" && upd == want && ready == want && s.replicas == want {
        cur = upd;
        s.current_revision = update;
    }
    s.ready_replicas = Some(ready);
    s.available_replicas = Some(available);
    s.current_replicas = Some(cur);
    s.updated_replicas = Some(upd);
    s
}

/// With minReadySeconds, look again when ready pods may have become available.
fn requeue(input: &Input<'_>, status: &StatefulSetStatus) -> Option<Duration> {
    let secs = min_ready(input.set);
    (secs > 0 && status.ready_replicas != status.available_replicas)
        .then(|| Duration::from_secs(u64::try_from(secs).unwrap_or(0) + 1))
}
