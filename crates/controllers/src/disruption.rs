//! The disruption controller, as upstream's: the status of every PodDisruptionBudget
//! (expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed, observedGeneration and the
//! `DisruptionAllowed` condition), which the Eviction API reads. Percentages and
//! `maxUnavailable` resolve against the scale of the pods' controllers (ReplicaSet,
//! Deployment, ReplicationController, StatefulSet `.spec.replicas`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};

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

/// The budget's new status, from the pods its selector matches.
pub fn status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &Scales,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let current = i32::try_from(pods.iter().filter(|p| healthy(p)).count()).unwrap_or(i32::MAX);
    let (expected_pods, desired, allowed, cond) = match expected(pdb, pods, scales) {
        Ok((e, d)) => {
            let allowed = (current - d).max(0);
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
    PodDisruptionBudgetStatus {
        current_healthy: current,
        desired_healthy: desired,
        disruptions_allowed: allowed,
        expected_pods,
        observed_generation: pdb.metadata.generation,
        disrupted_pods: old.disrupted_pods,
        conditions: Some(vec![Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: pdb.metadata.generation,
            last_transition_time: transition,
        }]),
    }
}

/// The budgets whose status must change, with their new status.
pub fn plan(
    pdbs: &[&PodDisruptionBudget],
    pods: &[&Pod],
    scales: &Scales,
    now: Timestamp,
) -> Vec<(String, String, PodDisruptionBudgetStatus)> {
    let mut by_ns: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        by_ns
            .entry(p.metadata.namespace.as_deref().unwrap_or_default())
            .or_default()
            .push(p);
    }
    let mut out = Vec::new();
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
        let new = status(pdb, &matched, scales, now);
        if pdb.status.as_ref() != Some(&new) {
            out.push((
                ns.to_string(),
                pdb.metadata.name.clone().unwrap_or_default(),
                new,
            ));
        }
    }
    out
}

/// Runs the controller until `shutdown`.
pub async fn run(client: kube::Client, shutdown: CancellationToken) -> Result<(), Error> {
    let cfg = watcher::Config::default;
    let (pdbs, c1) = informer::informer(Api::<PodDisruptionBudget>::all(client.clone()), cfg());
    let (pods, c2) = informer::informer(Api::<Pod>::all(client.clone()), cfg());
    let (rss, c3) = informer::informer(Api::<ReplicaSet>::all(client.clone()), cfg());
    let (deps, c4) = informer::informer(Api::<Deployment>::all(client.clone()), cfg());
    let (stss, c5) = informer::informer(Api::<StatefulSet>::all(client.clone()), cfg());
    let (rcs, c6) = informer::informer(Api::<ReplicationController>::all(client.clone()), cfg());
    let ready = vec![
        informer::listed(&pdbs),
        informer::listed(&pods),
        informer::listed(&rss),
        informer::listed(&deps),
        informer::listed(&stss),
        informer::listed(&rcs),
    ];
    let resync = Duration::from_secs(30);
    informer::run_loop(
        vec![c1, c2, c3, c4, c5, c6],
        ready,
        resync,
        shutdown,
        || {
            let mut scales = Scales::default();
            let mut add = |meta: &kube::api::ObjectMeta, kind: &str, replicas: Option<i32>| {
                let key = (
                    meta.namespace.clone().unwrap_or_default(),
                    kind.to_string(),
                    meta.uid.clone().unwrap_or_default(),
                );
                scales.replicas.insert(key, replicas.unwrap_or(1));
            };
            for o in rss.state() {
                add(
                    &o.metadata,
                    "ReplicaSet",
                    o.spec.as_ref().and_then(|s| s.replicas),
                );
            }
            for o in deps.state() {
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
                add(
                    &o.metadata,
                    "ReplicationController",
                    o.spec.as_ref().and_then(|s| s.replicas),
                );
            }
            let dep_uids: HashSet<String> = deps
                .state()
                .iter()
                .filter_map(|d| d.metadata.uid.clone())
                .collect();
            for rs in rss.state() {
                if let (Some(uid), Some(("Deployment", dep))) =
                    (rs.metadata.uid.clone(), controller_of(&rs.metadata))
                    && dep_uids.contains(dep)
                {
                    scales.rs_owner.insert(uid, dep.to_string());
                }
            }
            let (pdb_snap, pod_snap) = (pdbs.state(), pods.state());
            let pdb_refs: Vec<&PodDisruptionBudget> = pdb_snap.iter().map(AsRef::as_ref).collect();
            let pod_refs: Vec<&Pod> = pod_snap.iter().map(AsRef::as_ref).collect();
            let updates = plan(&pdb_refs, &pod_refs, &scales, Timestamp::now());
            let client = client.clone();
            async move {
                let mut ok = true;
                for (ns, name, status) in updates {
                    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
                    let body = json!({"status": status});
                    match api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(err) => {
                            tracing::warn!(%err, pdb = name, "disruption: writing status failed");
                            ok = false;
                        }
                    }
                }
                if ok { Next::Idle } else { Next::Retry }
            }
        },
    )
    .await;
    Ok(())
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
        let s = &out[0].2;
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
        let s = status(&p, &[&a, &b], &scales(3), Timestamp::UNIX_EPOCH);
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (3, 2, 0)
        );
        let cond = &s.conditions.as_ref().expect("conditions")[0];
        assert_eq!(cond.reason, "InsufficientPods");
        let p = pdb(Some(IntOrString::String("50%".into())), None);
        let s = status(&p, &[&a, &b], &scales(3), Timestamp::UNIX_EPOCH);
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (3, 2, 0)
        );
    }

    #[test]
    fn pods_without_controllers_fail_percentage_budgets() {
        let a = pod("a").labels(&[("app", "web")]).ready("True").build();
        let p = pdb(None, Some(IntOrString::String("10%".into())));
        let s = status(&p, &[&a], &Scales::default(), Timestamp::UNIX_EPOCH);
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
}
