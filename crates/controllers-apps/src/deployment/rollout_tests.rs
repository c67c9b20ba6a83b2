use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;
use serde_json::json;

use super::*;
use crate::builders::{DeploymentBuilder, now, rs_for};
use crate::deployment::util;

fn run(d: &Deployment, rss: Vec<ReplicaSet>) -> Plan {
    plan(d, rss, &HashSet::new(), now())
}

/// The actions as short strings: `create NAME n`, `scale NAME n`, `delete NAME`, ...
fn summary(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .map(|a| match a {
            Action::CreateReplicaSet { rs, .. } => {
                format!("create {} {}", rs.name_any(), util::rs_replicas(rs))
            }
            Action::UpdateReplicaSet { rs, .. } => {
                format!("update {} {}", rs.name_any(), util::rs_replicas(rs))
            }
            Action::DeleteReplicaSet { name } => format!("delete {name}"),
            Action::SetRevision(r) => format!("revision {r}"),
            Action::UpdateStatus(_) => "status".into(),
        })
        .collect()
}

/// [`summary`] without the revision annotation writes.
fn writes(p: &Plan) -> Vec<String> {
    summary(p)
        .into_iter()
        .filter(|a| !a.starts_with("revision"))
        .collect()
}

fn events(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateReplicaSet { event, .. } | Action::UpdateReplicaSet { event, .. } => {
                event.clone()
            }
            _ => None,
        })
        .collect()
}

fn status(p: &Plan) -> DeploymentStatus {
    p.actions
        .iter()
        .find_map(|a| match a {
            Action::UpdateStatus(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a status update")
}

fn cond(s: &DeploymentStatus, t: &str) -> (String, String) {
    let c = util::condition(s, t).expect("condition");
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

#[test]
fn a_new_deployment_creates_its_first_replica_set_at_revision_1() {
    let d = DeploymentBuilder::new("d").replicas(3).build();
    let p = run(&d, vec![]);
    let hash = util::compute_hash(&util::template(&d), None);
    assert_eq!(
        summary(&p),
        [
            format!("create d-{hash} 3"),
            "revision 1".into(),
            "status".into()
        ]
    );
    assert_eq!(
        events(&p),
        [format!("Scaled up replica set d-{hash} from 0 to 3")]
    );
    let Action::CreateReplicaSet { rs, .. } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(rs.labels().get("pod-template-hash"), Some(&hash));
    let spec = rs.spec.clone().unwrap_or_default();
    assert_eq!(
        spec.selector
            .match_labels
            .unwrap_or_default()
            .get("pod-template-hash"),
        Some(&hash)
    );
    let a = rs.annotations();
    assert_eq!(a.get(util::REVISION).map(String::as_str), Some("1"));
    assert_eq!(a.get(util::DESIRED_REPLICAS).map(String::as_str), Some("3"));
    assert_eq!(a.get(util::MAX_REPLICAS).map(String::as_str), Some("4"));
    assert_eq!(rs.owner_references()[0].kind, "Deployment");
    let s = status(&p);
    assert_eq!(
        cond(&s, "Progressing"),
        ("True".into(), "NewReplicaSetCreated".into())
    );
    assert_eq!(
        cond(&s, "Available"),
        ("False".into(), "MinimumReplicasUnavailable".into())
    );
}

#[test]
fn the_hash_is_stable_and_changes_with_the_template_and_collisions() {
    let d = DeploymentBuilder::new("d").build();
    let t = util::template(&d);
    assert_eq!(
        util::compute_hash(&t, None),
        util::compute_hash(&t.clone(), None)
    );
    assert_ne!(
        util::compute_hash(&t, None),
        util::compute_hash(&t, Some(1))
    );
    let other = util::template(&DeploymentBuilder::new("d").image("nginx:2").build());
    assert_ne!(
        util::compute_hash(&t, None),
        util::compute_hash(&other, None)
    );
}

#[test]
fn surge_rounds_up_and_unavailability_down() {
    let d = DeploymentBuilder::new("d")
        .replicas(10)
        .surge("25%", "25%")
        .build();
    assert_eq!(util::fenceposts(&d), (3, 2));
    let d = DeploymentBuilder::new("d")
        .replicas(1)
        .surge("0%", "10%")
        .build();
    assert_eq!(util::fenceposts(&d), (0, 1), "both zero: one unavailable");
    let d = DeploymentBuilder::new("d")
        .replicas(5)
        .surge("2", "0")
        .build();
    assert_eq!(util::fenceposts(&d), (2, 0));
    assert_eq!(
        util::max_unavailable(&DeploymentBuilder::new("d").recreate().build()),
        0
    );
}

#[test]
fn a_rolling_update_surges_the_new_set_and_scales_the_old_down() {
    let d = DeploymentBuilder::new("d")
        .replicas(4)
        .surge("1", "1")
        .image("nginx:2")
        .build();
    let old = rs_for(&d, "nginx", 1, 4, 4);
    let p = run(&d, vec![old.clone()]);
    let new_hash = util::compute_hash(&util::template(&d), None);
    assert_eq!(
        summary(&p),
        [
            format!("create d-{new_hash} 1"),
            "revision 2".into(),
            format!("update {} 3", old.name_any()),
            "status".into()
        ]
    );
    assert_eq!(
        events(&p),
        [
            format!("Scaled up replica set d-{new_hash} from 0 to 1"),
            format!("Scaled down replica set {} from 4 to 3", old.name_any()),
        ]
    );
    // Next step: the new set is available with 1, the old has 3: surge the new one to 2.
    let new = rs_for(&d, "nginx:2", 2, 1, 1);
    let old = rs_for(&d, "nginx", 1, 3, 3);
    let p = run(&d, vec![old.clone(), new.clone()]);
    assert_eq!(writes(&p)[0], format!("update {} 2", new.name_any()));
    let s = status(&p);
    assert_eq!(cond(&s, "Progressing").1, "ReplicaSetUpdated");
}

#[test]
fn old_sets_with_unavailable_pods_are_cleaned_up_first() {
    let d = DeploymentBuilder::new("d")
        .replicas(4)
        .surge("1", "1")
        .image("nginx:2")
        .build();
    let older = rs_for(&d, "nginx:0", 1, 2, 2);
    let broken = rs_for(&d, "nginx:1", 2, 2, 0);
    let new = rs_for(&d, "nginx:2", 3, 1, 1);
    let p = run(&d, vec![older.clone(), broken.clone(), new]);
    // 5 pods, min available 3, new unavailable 0: 2 may go, the 2 unavailable ones first.
    assert_eq!(writes(&p)[0], format!("update {} 0", broken.name_any()));
}

#[test]
fn a_finished_rollout_is_complete_and_history_is_trimmed() {
    let d = DeploymentBuilder::new("d")
        .replicas(2)
        .history(1)
        .image("nginx:3")
        .build();
    let r1 = rs_for(&d, "nginx:1", 1, 0, 0);
    let r2 = rs_for(&d, "nginx:2", 2, 0, 0);
    let new = rs_for(&d, "nginx:3", 3, 2, 2);
    let mut d = d;
    d.status = Some(serde_json::from_value(json!({
        "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
    })).expect("status"));
    let p = run(&d, vec![r1.clone(), r2, new.clone()]);
    assert_eq!(
        writes(&p),
        [format!("delete {}", r1.name_any()), "status".into()]
    );
    let s = status(&p);
    assert_eq!(
        cond(&s, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let msg = util::condition(&s, "Progressing")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "ReplicaSet \"{}\" has successfully progressed.",
            new.name_any()
        )
    );
    assert_eq!(
        cond(&s, "Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
}

#[test]
fn recreate_scales_old_down_then_waits_for_pods_then_creates() {
    let d = DeploymentBuilder::new("d")
        .replicas(3)
        .recreate()
        .image("nginx:2")
        .build();
    let old = rs_for(&d, "nginx", 1, 3, 3);
    let p = run(&d, vec![old.clone()]);
    assert_eq!(
        summary(&p),
        [format!("update {} 0", old.name_any()), "status".into()]
    );
    let mut idle = rs_for(&d, "nginx", 1, 0, 0);
    idle.status = Some(Default::default());
    let live: HashSet<String> = [idle.metadata.uid.clone().unwrap_or_default()].into();
    let p = plan(&d, vec![idle.clone()], &live, now());
    assert!(
        summary(&p).iter().all(|a| !a.starts_with("create")),
        "old pods still running"
    );
    let p = run(&d, vec![idle]);
    assert!(
        summary(&p)[0].starts_with("create d-") && summary(&p)[0].ends_with(" 3"),
        "{:?}",
        summary(&p)
    );
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let d10 = DeploymentBuilder::new("d")
        .replicas(10)
        .image("nginx:2")
        .build();
    let old = rs_for(&d10, "nginx", 1, 8, 8);
    let new = rs_for(&d10, "nginx:2", 2, 5, 0);
    let d15 = DeploymentBuilder::new("d")
        .replicas(15)
        .image("nginx:2")
        .build();
    let p = run(&d15, vec![old.clone(), new.clone()]);
    let s = summary(&p);
    // allowed 15+4=19, current 13: +6 split 8:5 of 13 -> +4 and +2.
    assert!(
        s.contains(&format!("update {} 12", old.name_any())),
        "{s:?}"
    );
    assert!(s.contains(&format!("update {} 7", new.name_any())), "{s:?}");
}

#[test]
fn a_paused_deployment_does_not_roll_out() {
    let d = DeploymentBuilder::new("d")
        .replicas(2)
        .paused()
        .image("nginx:2")
        .build();
    let old = rs_for(&d, "nginx", 1, 2, 2);
    let p = run(&d, vec![old]);
    assert!(summary(&p).iter().all(|a| !a.starts_with("create")));
    assert_eq!(
        cond(&status(&p), "Progressing"),
        ("Unknown".into(), "DeploymentPaused".into())
    );
}

#[test]
fn rolling_back_reuses_the_old_set_with_a_new_revision() {
    let d = DeploymentBuilder::new("d")
        .replicas(2)
        .image("nginx:1")
        .build();
    let r1 = rs_for(&d, "nginx:1", 1, 0, 0);
    let r2 = rs_for(&d, "nginx:2", 2, 2, 2);
    let p = run(&d, vec![r1.clone(), r2]);
    let Some(Action::UpdateReplicaSet { rs, .. }) = p.actions.first() else {
        panic!("{:?}", summary(&p));
    };
    assert_eq!(rs.name_any(), r1.name_any());
    assert_eq!(
        rs.annotations().get(util::REVISION).map(String::as_str),
        Some("3")
    );
    assert_eq!(
        rs.annotations()
            .get(util::REVISION_HISTORY)
            .map(String::as_str),
        Some("1")
    );
    assert!(summary(&p).contains(&"revision 3".to_string()));
}

#[test]
fn no_progress_past_the_deadline_times_out() {
    let d = DeploymentBuilder::new("d").replicas(2).image("nginx:2").status(json!({
        "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 0,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "lastUpdateTime": "2023-12-31T00:00:00Z", "lastTransitionTime": "2023-12-31T00:00:00Z"}]
    })).build();
    let new = rs_for(&d, "nginx:2", 1, 2, 0);
    let p = run(&d, vec![new.clone()]);
    let s = status(&p);
    assert_eq!(
        cond(&s, "Progressing"),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
    let msg = util::condition(&s, "Progressing")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "ReplicaSet \"{}\" has timed out progressing.",
            new.name_any()
        )
    );
}
