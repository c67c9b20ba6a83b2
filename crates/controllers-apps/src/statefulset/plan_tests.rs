use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

use super::identity::{self, POD_INDEX_LABEL, POD_NAME_LABEL};
use super::plan::{Action, Input, Plan, plan, revision_data, revision_template};
use crate::builders::{PodBuilder, StsBuilder, labels, now};
use crate::history;

fn revision(set: &StatefulSet, n: i64) -> ControllerRevision {
    let l = labels(&[("app", "web")]);
    history::new_revision(set, revision_data(set), &l, n, Some(0))
}

#[derive(Clone, Copy)]
enum State {
    Pending,
    Ready,
    Failed,
    Terminating,
}

fn member(set: &StatefulSet, rev: &ControllerRevision, ordinal: i32, state: State) -> Arc<Pod> {
    let template = revision_template(rev).unwrap_or_default();
    let name = rev.metadata.name.clone().unwrap_or_default();
    let mut pod = identity::new_pod(set, &template, &name, ordinal);
    pod.metadata.uid = Some(format!("uid-web-{ordinal}"));
    let b = PodBuilder::new("x");
    pod.status = match state {
        State::Pending => b.build().status,
        State::Ready => b.ready_since(-100).build().status,
        State::Failed => b.phase("Failed").build().status,
        State::Terminating => {
            pod.metadata.deletion_timestamp = Some(Time(now()));
            b.ready_since(-100).build().status
        }
    };
    Arc::new(pod)
}

fn claim(name: &str, owners: Vec<OwnerReference>) -> (String, Arc<PersistentVolumeClaim>) {
    let mut c = PersistentVolumeClaim::default();
    c.metadata.name = Some(name.into());
    c.metadata.namespace = Some("ns".into());
    c.metadata.owner_references = (!owners.is_empty()).then_some(owners);
    (name.into(), Arc::new(c))
}

struct Case {
    set: StatefulSet,
    pods: Vec<Arc<Pod>>,
    claims: BTreeMap<String, Arc<PersistentVolumeClaim>>,
    current: ControllerRevision,
    update: ControllerRevision,
}

impl Case {
    fn new(set: StatefulSet) -> Self {
        let rev = revision(&set, 1);
        Case {
            set,
            pods: Vec::new(),
            claims: BTreeMap::new(),
            current: rev.clone(),
            update: rev,
        }
    }
    fn pods(mut self, states: &[State]) -> Self {
        let start = identity::start_ordinal(&self.set);
        self.pods = (0..)
            .zip(states)
            .map(|(i, s)| member(&self.set, &self.current, start + i, *s))
            .collect();
        self
    }
    fn run(&self) -> Plan {
        plan(Input {
            set: &self.set,
            pods: &self.pods,
            claims: &self.claims,
            current: &self.current,
            update: &self.update,
            collision_count: 0,
            now: now(),
        })
    }
    fn actions(&self) -> Vec<String> {
        self.run().actions.iter().map(Action::describe).collect()
    }
}

#[test]
fn ordered_ready_creates_claims_then_one_pod_and_waits_for_it() {
    let set = StsBuilder::new("web").claim_template("data").build();
    let case = Case::new(set);
    let plan = case.run();
    let got: Vec<String> = plan.actions.iter().map(Action::describe).collect();
    assert_eq!(got, ["create claim data-web-0", "create pod web-0"]);
    let Action::CreatePod(pod) = &plan.actions[1] else {
        panic!("not a pod: {:?}", plan.actions[1]);
    };
    let l = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(l.get(POD_NAME_LABEL).map(String::as_str), Some("web-0"));
    assert_eq!(l.get(POD_INDEX_LABEL).map(String::as_str), Some("0"));
    assert_eq!(
        l.get("controller-revision-hash"),
        case.update.metadata.name.as_ref()
    );
    let spec = pod.spec.clone().unwrap_or_default();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let volumes = spec.volumes.unwrap_or_default();
    let claim_name = volumes[0]
        .persistent_volume_claim
        .as_ref()
        .map(|c| c.claim_name.as_str());
    assert_eq!(
        (volumes[0].name.as_str(), claim_name),
        ("data", Some("data-web-0"))
    );
    let Action::CreateClaim { claim, .. } = &plan.actions[0] else {
        panic!("not a claim");
    };
    let claim_labels = claim.metadata.labels.clone().unwrap_or_default();
    assert_eq!(claim_labels.get("app").map(String::as_str), Some("web"));
    assert!(
        claim.metadata.owner_references.is_none(),
        "Retain: no owners"
    );

    let mut case = case.pods(&[State::Pending]);
    case.claims.extend([claim_fixture("data-web-0")]);
    assert!(case.actions().is_empty(), "waits for web-0 to be ready");
    let mut case = case.pods(&[State::Ready]);
    case.claims.extend([claim_fixture("data-web-0")]);
    assert_eq!(
        case.actions(),
        ["create claim data-web-1", "create pod web-1"]
    );
}

fn claim_fixture(name: &str) -> (String, Arc<PersistentVolumeClaim>) {
    claim(name, Vec::new())
}

#[test]
fn ordinals_start_and_parallel_creation() {
    let set = StsBuilder::new("web").start(5).replicas(2).build();
    assert_eq!(Case::new(set).actions(), ["create pod web-5"]);
    let set = StsBuilder::new("web").parallel().build();
    assert_eq!(
        Case::new(set).actions(),
        ["create pod web-0", "create pod web-1", "create pod web-2"]
    );
    let set = StsBuilder::new("web").start(5).replicas(2).build();
    let case = Case::new(set).pods(&[State::Ready, State::Ready]);
    assert!(case.actions().is_empty());
}

#[test]
fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
    let set = StsBuilder::new("web").replicas(1).build();
    let case = Case::new(set).pods(&[State::Ready, State::Ready, State::Ready]);
    assert_eq!(case.actions(), ["delete pod web-2"]);
    let set = StsBuilder::new("web").replicas(1).build();
    let case = Case::new(set).pods(&[State::Ready, State::Ready, State::Terminating]);
    assert!(case.actions().is_empty(), "waits for web-2 to go");
    let set = StsBuilder::new("web").replicas(1).build();
    let case = Case::new(set).pods(&[State::Pending, State::Ready, State::Ready]);
    assert!(case.actions().is_empty(), "waits for web-0 to be ready");
    let set = StsBuilder::new("web").replicas(1).parallel().build();
    let case = Case::new(set).pods(&[State::Ready, State::Ready, State::Ready]);
    assert_eq!(case.actions(), ["delete pod web-2", "delete pod web-1"]);
}

#[test]
fn failed_pods_are_deleted_and_a_deleting_set_does_nothing() {
    let set = StsBuilder::new("web").build();
    let case = Case::new(set).pods(&[State::Ready, State::Failed, State::Ready]);
    assert_eq!(case.actions(), ["delete pod web-1"]);
    let set = StsBuilder::new("web").deleting().build();
    let case = Case::new(set).pods(&[State::Ready]);
    let plan = case.run();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.replicas, 1);
}

/// A case whose pods run the old image while the set asks for a new one.
fn rolling(set: StatefulSet) -> Case {
    let old = StsBuilder::new("web").build();
    let current = revision(&old, 1);
    let update = revision(&set, 2);
    let mut case = Case::new(set);
    case.current = current;
    case.update = update;
    case.pods(&[State::Ready, State::Ready, State::Ready])
}

fn to_update(case: &mut Case, ordinal: usize) {
    let pod = member(&case.set, &case.update, ordinal as i32, State::Ready);
    case.pods[ordinal] = pod;
}

#[test]
fn rolling_update_goes_down_to_the_partition_one_ready_pod_at_a_time() {
    let mut case = rolling(StsBuilder::new("web").image("nginx:2").partition(1).build());
    assert_eq!(case.actions(), ["delete pod web-2"]);
    case.pods[2] = member(&case.set, &case.update, 2, State::Pending);
    assert!(
        case.actions().is_empty(),
        "waits for web-2 at the new revision"
    );
    to_update(&mut case, 2);
    assert_eq!(case.actions(), ["delete pod web-1"]);
    to_update(&mut case, 1);
    let plan = case.run();
    assert!(plan.actions.is_empty(), "web-0 is below the partition");
    assert_eq!(plan.status.updated_replicas, Some(2));
    assert_eq!(plan.status.current_replicas, Some(1));
    assert_eq!(plan.status.current_revision, case.current.metadata.name);
    // A pod recreated below the partition keeps the current revision.
    case.pods.remove(0);
    let plan = case.run();
    let Some(Action::CreatePod(pod)) = plan.actions.first() else {
        panic!("expected a create: {:?}", plan.actions);
    };
    assert_eq!(
        identity::pod_revision(pod),
        case.current.metadata.name.as_deref()
    );
}

/// A rolling case of five ready replicas at the old revision.
fn rolling5(set: StsBuilder) -> Case {
    let mut case = rolling(set.replicas(5).image("nginx:2").build());
    case.pods = (0..5)
        .map(|i| member(&case.set, &case.current, i, State::Ready))
        .collect();
    case
}

#[test]
fn max_unavailable_replaces_that_many_pods_at_once() {
    // Parallel, maxUnavailable 2: the two highest old pods go at once.
    let mut case = rolling5(StsBuilder::new("web").parallel().max_unavailable("2"));
    assert_eq!(case.actions(), ["delete pod web-4", "delete pod web-3"]);
    // Both unavailable (one recreating, one terminating): the budget is spent.
    case.pods[4] = member(&case.set, &case.update, 4, State::Pending);
    case.pods[3] = member(&case.set, &case.current, 3, State::Terminating);
    assert!(case.actions().is_empty(), "{:?}", case.actions());
    // One back: one more may go.
    to_update(&mut case, 4);
    assert_eq!(case.actions(), ["delete pod web-2"]);
    // A percentage rounds down (40% of 5 = 2); the partition bounds the update.
    let case = rolling5(
        StsBuilder::new("web")
            .parallel()
            .max_unavailable("40%")
            .partition(4),
    );
    assert_eq!(case.actions(), ["delete pod web-4"]);
    // Default and small percentages mean one at a time.
    let case = rolling5(StsBuilder::new("web").parallel().max_unavailable("10%"));
    assert_eq!(case.actions(), ["delete pod web-4"]);
    let case = rolling5(StsBuilder::new("web").parallel());
    assert_eq!(case.actions(), ["delete pod web-4"]);
    // OrderedReady honours the budget too (the pods come back in order).
    let case = rolling5(StsBuilder::new("web").max_unavailable("2"));
    assert_eq!(case.actions(), ["delete pod web-4", "delete pod web-3"]);
}

#[test]
fn parallel_update_replaces_broken_old_pods_without_spending_the_budget() {
    let mut case = rolling5(StsBuilder::new("web").parallel().max_unavailable("2"));
    // web-0 is old and not ready: it is replaced, and one healthy pod may go beside it.
    case.pods[0] = member(&case.set, &case.current, 0, State::Pending);
    assert_eq!(case.actions(), ["delete pod web-0", "delete pod web-4"]);
    // Two old pods broken: both replaced, no healthy pod touched.
    case.pods[1] = member(&case.set, &case.current, 1, State::Pending);
    assert_eq!(case.actions(), ["delete pod web-1", "delete pod web-0"]);
}

#[test]
fn a_completed_rollout_makes_the_update_revision_current_and_ondelete_waits() {
    let mut case = rolling(StsBuilder::new("web").image("nginx:2").build());
    for i in 0..3 {
        to_update(&mut case, i);
    }
    let plan = case.run();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.current_revision, case.update.metadata.name);
    assert_eq!(
        (
            plan.status.replicas,
            plan.status.ready_replicas,
            plan.status.current_replicas
        ),
        (3, Some(3), Some(3))
    );
    let case = rolling(StsBuilder::new("web").image("nginx:2").on_delete().build());
    assert!(case.actions().is_empty());
}

#[test]
fn retention_policy_owns_claims_by_the_set_or_the_scaled_down_pod() {
    let set = StsBuilder::new("web")
        .claim_template("data")
        .retention("Delete", "Retain")
        .build();
    let plan = Case::new(set).run();
    let Some(Action::CreateClaim { claim, .. }) = plan.actions.first() else {
        panic!("expected a claim");
    };
    let owners = claim.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].name.as_str()),
        ("StatefulSet", "web")
    );

    let set = StsBuilder::new("web")
        .replicas(2)
        .claim_template("data")
        .retention("Retain", "Delete")
        .build();
    let mut case = Case::new(set).pods(&[State::Ready, State::Ready, State::Ready]);
    case.claims
        .extend(["data-web-0", "data-web-1", "data-web-2"].map(claim_fixture));
    assert_eq!(
        case.actions(),
        ["own claim data-web-2 by [Pod]", "delete pod web-2"]
    );
}

#[test]
fn a_pod_that_lost_its_identity_is_repaired() {
    let set = StsBuilder::new("web").replicas(1).build();
    let mut case = Case::new(set).pods(&[State::Ready]);
    let mut pod = case.pods[0].as_ref().clone();
    pod.metadata
        .labels
        .get_or_insert_default()
        .remove(POD_NAME_LABEL);
    case.pods[0] = Arc::new(pod);
    assert_eq!(case.actions(), ["update pod web-0"]);
}

#[test]
fn names_and_ordinals() {
    assert_eq!(identity::parent_and_ordinal("web-12"), Some(("web", 12)));
    assert_eq!(
        identity::parent_and_ordinal("my-web-0"),
        Some(("my-web", 0))
    );
    assert_eq!(identity::parent_and_ordinal("web-x"), None);
    assert_eq!(identity::parent_and_ordinal("web"), None);
}

#[test]
fn min_ready_seconds_hold_ordered_creation_and_requeue() {
    let set = StsBuilder::new("web").min_ready(300).build();
    let case = Case::new(set).pods(&[State::Ready]);
    let plan = case.run();
    assert!(plan.actions.is_empty(), "web-0 ready for 100s of 300");
    assert_eq!(
        (plan.status.ready_replicas, plan.status.available_replicas),
        (Some(1), Some(0))
    );
    assert_eq!(
        plan.requeue_after,
        Some(std::time::Duration::from_secs(301))
    );
}
