//! The disruption controller, as upstream's: the status of every PodDisruptionBudget
//! (expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed, observedGeneration and the
//! `DisruptionAllowed` condition), which the Eviction API reads. Percentages and
//! `maxUnavailable` resolve against the scale of the pods' controllers (ReplicaSet,
//! Deployment, ReplicationController, StatefulSet `.spec.replicas`).
//!
//! `status.disruptedPods` (pods the Eviction API let go, not yet seen deleted) is pruned as
//! upstream: an entry goes once its pod is gone or marked for deletion, and after
//! [`DELETION_TIMEOUT`] when the pod was not deleted after all (with a `NotDeleted` warning on
//! the pod); until then the pod does not count as healthy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_machinery::labels::Selector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};

/// How long a pod the Eviction API let go may stay undeleted before the budget counts it again
/// (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// The scale of every controller pods may belong to, keyed by (namespace, kind, uid), and the
/// Deployment owning each ReplicaSet.
#[derive(Clone, Debug, Default)]
pub struct Scales {
    pub replicas: HashMap<(String, String, String), i32>,
    /// ReplicaSet uid → its controlling Deployment's uid.
    pub rs_owner: HashMap<String, String>,
}

fn controller_of(meta: &kube::api::ObjectMeta) -> Option<(&str, &str)> {
    let refs = meta.owner_references.as_ref()?;
    let c = refs.iter().find(|r| r.controller == Some(true))?;
    Some((c.kind.as_str(), c.uid.as_str()))
}

impl Scales {
    /// The replicas of the controller a pod belongs to (for a ReplicaSet of a Deployment, the
    /// Deployment's).
    fn of(&self, ns: &str, pod: &Pod) -> Option<((String, String), i32)> {
        let (kind, uid) = controller_of(&pod.metadata)?;
        let (kind, uid) = match (kind, self.rs_owner.get(uid)) {
            ("ReplicaSet", Some(dep)) => ("Deployment", dep.as_str()),
            other => (other.0, uid),
        };
        let key = (ns.to_string(), kind.to_string(), uid.to_string());
        let n = *self.replicas.get(&key)?;
        Some(((kind.to_string(), uid.to_string()), n))
    }
}

/// `value` against `total`, rounding percentages up, as upstream's `GetScaledValueFromIntOrPercent`.
pub fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            let v = (pct * i64::from(total) + 99) / 100;
            i32::try_from(v).ok()
        }
    }
}

fn healthy(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    pod.metadata.deletion_timestamp.is_none()
        && conds
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// (expectedPods, desiredHealthy), or why they cannot be known.
fn expected(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &Scales,
) -> Result<(i32, i32), String> {
    let ns = pdb.metadata.namespace.as_deref().unwrap_or_default();
    let spec = pdb.spec.as_ref();
    let min = spec.and_then(|s| s.min_available.as_ref());
    let max = spec.and_then(|s| s.max_unavailable.as_ref());
    let count = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    if let Some(IntOrString::Int(m)) = min {
        return Ok((count, *m));
    }
    if min.is_none() && max.is_none() {
        return Ok((count, 0));
    }
    let mut controllers: HashMap<(String, String), i32> = HashMap::new();
    for pod in pods {
        let Some((key, n)) = scales.of(ns, pod) else {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            return Err(format!("found no controllers for pod \"{name}\""));
        };
        controllers.insert(key, n);
    }
    let total: i32 = controllers.values().sum();
    let bad = || "invalid value in budget".to_string();
    let desired = match (max, min) {
        (Some(m), _) => total - scaled(m, total).ok_or_else(bad)?,
        (None, Some(m)) => scaled(m, total).ok_or_else(bad)?,
        (None, None) => 0,
    };
    Ok((total, desired.max(0)))
}

/// A pod the Eviction API let go that was not deleted within [`DELETION_TIMEOUT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotDeleted {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    /// The budget's name.
    pub pdb: String,
}

/// The budget's `disruptedPods` still pending (their pod exists, is not being deleted and the
/// timeout has not passed), the pods whose timeout passed, and when the next entry expires.
fn disrupted(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Vec<NotDeleted>, Option<Timestamp>) {
    let (mut kept, mut expired, mut recheck) = (BTreeMap::new(), Vec::new(), None::<Timestamp>);
    let Some(old) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, expired, recheck);
    };
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(at) = old.get(name) else { continue };
        let due = at.0.saturating_add(DELETION_TIMEOUT).unwrap_or(at.0);
        if due < now {
            expired.push(NotDeleted {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: name.to_string(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                pdb: pdb.metadata.name.clone().unwrap_or_default(),
            });
        } else {
            recheck = Some(recheck.map_or(due, |r| r.min(due)));
            kept.insert(name.to_string(), at.clone());
        }
    }
    (kept, expired, recheck)
}

/// Ready pods not being deleted and not pending deletion after an eviction.
fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>) -> i32 {
    let healthy = pods.iter().filter(|p| {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        healthy(p) && !disrupted.contains_key(name)
    });
    i32::try_from(healthy.count()).unwrap_or(i32::MAX)
}

/// The budget's new status, from the pods its selector matches; the evicted pods that were not
/// deleted in time; and when the status must be computed again (a pending eviction expires).
pub fn status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &Scales,
    now: Timestamp,
) -> (
    PodDisruptionBudgetStatus,
    Vec<NotDeleted>,
    Option<Timestamp>,
) {
    let old = pdb.status.clone().unwrap_or_default();
    let (pending, expired, recheck) = disrupted(pdb, pods, now);
    let current = count_healthy(pods, &pending);
    let (expected_pods, desired, allowed, cond) = match expected(pdb, pods, scales) {
        Ok((e, d)) => {
            // A budget matching no pods yet allows nothing, as upstream.
            let allowed = if e <= 0 { 0 } else { (current - d).max(0) };
            let (status, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            (e, d, allowed, (status, reason, String::new()))
        }
        Err(msg) => (0, 0, 0, ("False", "SyncFailed", msg)),
    };
    let (status, reason, message) = cond;
    let prev = old
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let transition = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    let new = PodDisruptionBudgetStatus {
        current_healthy: current,
        desired_healthy: desired,
        disruptions_allowed: allowed,
        expected_pods,
        observed_generation: pdb.metadata.generation,
        disrupted_pods: (!pending.is_empty()).then_some(pending),
        conditions: Some(vec![Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: pdb.metadata.generation,
            last_transition_time: transition,
        }]),
    };
    (new, expired, recheck)
}

/// Whether two statuses are the same (an empty `disruptedPods` is no `disruptedPods`).
fn same_status(old: Option<&PodDisruptionBudgetStatus>, new: &PodDisruptionBudgetStatus) -> bool {
    let Some(old) = old else { return false };
    let mut old = old.clone();
    if old.disrupted_pods.as_ref().is_some_and(BTreeMap::is_empty) {
        old.disrupted_pods = None;
    }
    old == *new
}

/// What one sync does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The budgets whose status must change (namespace, name, new status).
    pub updates: Vec<(String, String, PodDisruptionBudgetStatus)>,
    /// `NotDeleted` warnings to record.
    pub not_deleted: Vec<NotDeleted>,
    /// When to sync again even if nothing changes.
    pub recheck: Option<Timestamp>,
}

/// The sync of every budget.
pub fn plan(pdbs: &[&PodDisruptionBudget], pods: &[&Pod], scales: &Scales, now: Timestamp) -> Plan {
    let mut by_ns: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        by_ns
            .entry(p.metadata.namespace.as_deref().unwrap_or_default())
            .or_default()
            .push(p);
    }
    let mut out = Plan::default();
    for pdb in pdbs {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let sel = selector.and_then(|s| Selector::from_label_selector(s).ok());
        let empty = BTreeMap::new();
        let matched: Vec<&Pod> = by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| {
                sel.as_ref()
                    .is_some_and(|s| s.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
            })
            .collect();
        let (new, expired, recheck) = status(pdb, &matched, scales, now);
        out.not_deleted.extend(expired);
        if let Some(r) = recheck {
            out.recheck = Some(out.recheck.map_or(r, |o| o.min(r)));
        }
        if !same_status(pdb.status.as_ref(), &new) {
            out.updates.push((
                ns.to_string(),
                pdb.metadata.name.clone().unwrap_or_default(),
                new,
            ));
        }
    }
    out
}

/// The scale of every controller in the stores.
fn scales(
    rss: &Store<ReplicaSet>,
    deps: &Store<Deployment>,
    stss: &Store<StatefulSet>,
    rcs: &Store<ReplicationController>,
) -> Scales {
    let mut scales = Scales::default();
    let mut add = |meta: &kube::api::ObjectMeta, kind: &str, replicas: Option<i32>| {
        let key = (
            meta.namespace.clone().unwrap_or_default(),
            kind.to_string(),
            meta.uid.clone().unwrap_or_default(),
        );
        scales.replicas.insert(key, replicas.unwrap_or(1));
    };
    let (rs_snap, dep_snap) = (rss.state(), deps.state());
    for o in &rs_snap {
        add(
            &o.metadata,
            "ReplicaSet",
            o.spec.as_ref().and_then(|s| s.replicas),
        );
    }
    for o in &dep_snap {
        add(
            &o.metadata,
            "Deployment",
            o.spec.as_ref().and_then(|s| s.replicas),
        );
    }
    for o in stss.state() {
        add(
            &o.metadata,
            "StatefulSet",
            o.spec.as_ref().and_then(|s| s.replicas),
        );
    }
    for o in rcs.state() {
        let replicas = o.spec.as_ref().and_then(|s| s.replicas);
        add(&o.metadata, "ReplicationController", replicas);
    }
    let dep_uids: HashSet<&str> = dep_snap
        .iter()
        .filter_map(|d| d.metadata.uid.as_deref())
        .collect();
    for rs in &rs_snap {
        if let (Some(uid), Some(("Deployment", dep))) =
            (rs.metadata.uid.clone(), controller_of(&rs.metadata))
            && dep_uids.contains(dep)
        {
            scales.rs_owner.insert(uid, dep.to_string());
        }
    }
    scales
}

/// Runs the controller until `shutdown`.
pub async fn run(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    let client = informers.client().clone();
    let (pdbs, c1) = informers.changes::<PodDisruptionBudget>();
    let (pods, c2) = informers.changes::<Pod>();
    let (rss, c3) = informers.changes::<ReplicaSet>();
    let (deps, c4) = informers.changes::<Deployment>();
    let (stss, c5) = informers.changes::<StatefulSet>();
    let (rcs, c6) = informers.changes::<ReplicationController>();
    let ready = vec![
        k8rs_controller_runtime::ready(&pdbs),
        k8rs_controller_runtime::ready(&pods),
        k8rs_controller_runtime::ready(&rss),
        k8rs_controller_runtime::ready(&deps),
        k8rs_controller_runtime::ready(&stss),
        k8rs_controller_runtime::ready(&rcs),
    ];
    let reporter = Reporter {
        controller: "controllermanager".into(),
        instance: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let resync = Duration::from_secs(30);
    informer::run_loop(
        vec![c1, c2, c3, c4, c5, c6],
        ready,
        resync,
        shutdown,
        || {
            let scales = scales(&rss, &deps, &stss, &rcs);
            let (pdb_snap, pod_snap) = (pdbs.state(), pods.state());
            let pdb_refs: Vec<&PodDisruptionBudget> = pdb_snap.iter().map(AsRef::as_ref).collect();
            let pod_refs: Vec<&Pod> = pod_snap.iter().map(AsRef::as_ref).collect();
            let now = Timestamp::now();
            let plan = plan(&pdb_refs, &pod_refs, &scales, now);
            // The budgets to write, with the resourceVersion their status was computed from.
            let writes: Vec<PodDisruptionBudget> = plan
                .updates
                .into_iter()
                .filter_map(|(ns, name, status)| {
                    let pdb = pdb_refs.iter().find(|p| {
                        p.metadata.namespace.as_deref() == Some(ns.as_str())
                            && p.metadata.name.as_deref() == Some(name.as_str())
                    })?;
                    let mut pdb = (*pdb).clone();
                    pdb.status = Some(status);
                    Some(pdb)
                })
                .collect();
            let wake = plan.recheck.map(|at| {
                let wait = at.duration_since(now).max(SignedDuration::ZERO);
                Duration::try_from(wait).unwrap_or_default()
            });
            let (client, recorder, not_deleted) =
                (client.clone(), recorder.clone(), plan.not_deleted);
            async move {
                for n in &not_deleted {
                    record_not_deleted(&recorder, n).await;
                }
                let ok = write_all(&client, writes).await;
                match (ok, wake) {
                    (false, _) => Next::Retry,
                    (true, Some(d)) => Next::After(d),
                    (true, None) => Next::Idle,
                }
            }
        },
    )
    .await;
    Ok(())
}

/// Writes each status at the resourceVersion it was computed from (as upstream's
/// `UpdateStatus`, so an eviction recorded meanwhile is not lost); whether all went through.
async fn write_all(client: &kube::Client, writes: Vec<PodDisruptionBudget>) -> bool {
    let mut ok = true;
    for pdb in writes {
        let ns = pdb.metadata.namespace.clone().unwrap_or_default();
        let name = pdb.metadata.name.clone().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &pdb)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            // Changed meanwhile: the watch brings the new version, the retry recomputes.
            Err(kube::Error::Api(s)) if s.code == 409 => ok = false,
            Err(err) => {
                tracing::warn!(%err, pdb = name, "disruption: writing status failed");
                ok = false;
            }
        }
    }
    ok
}

/// Upstream's `NotDeleted` warning on a pod the budget expected to be deleted.
async fn record_not_deleted(recorder: &Recorder, n: &NotDeleted) {
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(n.namespace.clone()),
        name: Some(n.pod.clone()),
        uid: (!n.uid.is_empty()).then(|| n.uid.clone()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "NotDeleted".into(),
        note: Some(format!(
            "Pod was expected by PDB {}/{} to be deleted but it wasn't",
            n.namespace, n.pdb
        )),
        action: "DisruptionBudget".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &reference).await {
        tracing::warn!(%err, pod = n.pod, "disruption: recording an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::pod;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        let mut p = PodDisruptionBudget::default();
        p.metadata.name = Some("pdb".into());
        p.metadata.namespace = Some("default".into());
        p.metadata.generation = Some(2);
        p.spec = Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn scales(rs_replicas: i32) -> Scales {
        let mut s = Scales::default();
        s.replicas.insert(
            ("default".into(), "ReplicaSet".into(), "rs".into()),
            rs_replicas,
        );
        s
    }

    #[test]
    fn min_available_int_counts_matching_ready_pods() {
        let a = pod("a").labels(&[("app", "web")]).ready("True").build();
        let b = pod("b").labels(&[("app", "web")]).ready("True").build();
        let c = pod("c").labels(&[("app", "web")]).ready("False").build();
        let other = pod("o").labels(&[("app", "db")]).ready("True").build();
        let p = pdb(Some(IntOrString::Int(1)), None);
        let out = plan(
            &[&p],
            &[&a, &b, &c, &other],
            &Scales::default(),
            Timestamp::UNIX_EPOCH,
        );
        let s = &out.updates[0].2;
        assert_eq!(
            (
                s.expected_pods,
                s.desired_healthy,
                s.current_healthy,
                s.disruptions_allowed,
                s.observed_generation
            ),
            (3, 1, 2, 1, Some(2))
        );
        let cond = &s.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", "SufficientPods")
        );
    }

    #[test]
    fn max_unavailable_and_percentages_use_the_controllers_scale() {
        let a = pod("a")
            .labels(&[("app", "web")])
            .ready("True")
            .owner("ReplicaSet", "rs")
            .build();
        let b = pod("b")
            .labels(&[("app", "web")])
            .ready("True")
            .owner("ReplicaSet", "rs")
            .build();
        let p = pdb(None, Some(IntOrString::Int(1)));
        let (s, _, _) = status(&p, &[&a, &b], &scales(3), Timestamp::UNIX_EPOCH);
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (3, 2, 0)
        );
        let cond = &s.conditions.as_ref().expect("conditions")[0];
        assert_eq!(cond.reason, "InsufficientPods");
        let p = pdb(Some(IntOrString::String("50%".into())), None);
        let (s, _, _) = status(&p, &[&a, &b], &scales(3), Timestamp::UNIX_EPOCH);
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (3, 2, 0)
        );
    }

    #[test]
    fn pods_without_controllers_fail_percentage_budgets() {
        let a = pod("a").labels(&[("app", "web")]).ready("True").build();
        let p = pdb(None, Some(IntOrString::String("10%".into())));
        let (s, _, _) = status(&p, &[&a], &Scales::default(), Timestamp::UNIX_EPOCH);
        let cond = &s.conditions.as_ref().expect("conditions")[0];
        assert_eq!(cond.reason, "SyncFailed");
        assert_eq!(s.disruptions_allowed, 0);
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Some(2));
        assert_eq!(scaled(&IntOrString::String("10%".into()), 5), Some(1));
        assert_eq!(scaled(&IntOrString::String("x".into()), 5), None);
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("a time")
    }

    #[test]
    fn disrupted_pods_are_pruned_and_the_allowance_recomputed() {
        let web = |name: &str| pod(name).labels(&[("app", "web")]).ready("True");
        // Evicted at 100 s: "pending" still awaits deletion, "stale" was never deleted,
        // "deleting" is on its way out, "gone" no longer exists.
        let (pending, stale, deleting) = (
            web("pending").build(),
            web("stale").build(),
            web("deleting").deleting(at(150)).build(),
        );
        let mut p = pdb(Some(IntOrString::Int(1)), None);
        let evicted = |secs: i64| Time(at(secs));
        p.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("pending".to_string(), evicted(100)),
                ("stale".to_string(), evicted(0)),
                ("deleting".to_string(), evicted(100)),
                ("gone".to_string(), evicted(100)),
            ])),
            ..Default::default()
        });
        let now = at(150);
        let out = plan(
            &[&p],
            &[&pending, &stale, &deleting],
            &Scales::default(),
            now,
        );
        let (ns, name, s) = &out.updates[0];
        assert_eq!((ns.as_str(), name.as_str()), ("default", "pdb"));
        // Only the pending eviction stays; the stale pod counts as healthy again.
        assert_eq!(
            s.disrupted_pods,
            Some(BTreeMap::from([("pending".to_string(), evicted(100))]))
        );
        assert_eq!(
            (
                s.expected_pods,
                s.current_healthy,
                s.desired_healthy,
                s.disruptions_allowed
            ),
            (3, 1, 1, 0)
        );
        assert_eq!(
            out.not_deleted,
            vec![NotDeleted {
                namespace: "default".into(),
                pod: "stale".into(),
                uid: "stale".into(),
                pdb: "pdb".into(),
            }]
        );
        // The pending entry expires at 100 s + the deletion timeout.
        assert_eq!(out.recheck, Some(at(220)));
        // Past that, it is dropped too and the pod counts again.
        let mut p2 = p.clone();
        p2.status = Some(s.clone());
        let later = plan(
            &[&p2],
            &[&pending, &stale, &deleting],
            &Scales::default(),
            at(221),
        );
        let s = &later.updates[0].2;
        assert_eq!(s.disrupted_pods, None);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (2, 1));
        assert_eq!(later.recheck, None);
    }

    #[test]
    fn a_budget_expecting_no_pods_allows_nothing() {
        // The pods' ReplicaSet was scaled to zero: nothing is expected, nothing may go.
        let a = pod("a")
            .labels(&[("app", "web")])
            .ready("True")
            .owner("ReplicaSet", "rs");
        let a = a.build();
        let p = pdb(None, Some(IntOrString::Int(0)));
        let (s, _, _) = status(&p, &[&a], &scales(0), Timestamp::UNIX_EPOCH);
        assert_eq!(
            (s.expected_pods, s.current_healthy, s.disruptions_allowed),
            (0, 1, 0)
        );
    }
}
