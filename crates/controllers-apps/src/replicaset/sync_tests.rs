use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController, ReplicationControllerSpec};
use kube::ResourceExt;

use super::*;
use crate::builders::{PodBuilder, RsBuilder, labels, now, template};
use crate::replicaset::kind::ReplicaKind;

fn view(rs: ReplicaSet) -> View {
    rs.view().expect("valid selector")
}

fn pods(list: Vec<Pod>) -> Vec<Arc<Pod>> {
    list.into_iter().map(Arc::new).collect()
}

fn names(list: &[Arc<Pod>]) -> Vec<String> {
    list.iter().map(|p| p.name_any()).collect()
}

fn own(name: &str) -> PodBuilder {
    PodBuilder::new(name).owner("ReplicaSet", "rs", "uid-rs")
}

#[test]
fn creates_the_missing_pods_and_adopts_orphans_first() {
    let v = view(RsBuilder::new("rs").replicas(3).build());
    let ns = pods(vec![
        own("a").build(),
        PodBuilder::new("orphan").build(),
        PodBuilder::new("done")
            .phase("Succeeded")
            .owner("ReplicaSet", "rs", "uid-rs")
            .build(),
        PodBuilder::new("going")
            .deleting()
            .owner("ReplicaSet", "rs", "uid-rs")
            .build(),
    ]);
    let p = plan(&v, &ns, true, now());
    assert_eq!(names(&p.claim.adopt), ["orphan"]);
    assert_eq!(names(&p.claim.owned), ["a", "orphan"]);
    assert_eq!(
        p.manage,
        Manage::Create(1),
        "finished and deleting pods do not count"
    );
}

#[test]
fn creations_are_capped_at_the_burst() {
    let v = view(RsBuilder::new("rs").replicas(1000).build());
    assert_eq!(
        plan(&v, &[], true, now()).manage,
        Manage::Create(BURST_REPLICAS)
    );
}

#[test]
fn unsatisfied_expectations_or_deletion_stop_management_but_not_claims() {
    let v = view(RsBuilder::new("rs").replicas(3).build());
    let ns = pods(vec![PodBuilder::new("orphan").build()]);
    let p = plan(&v, &ns, false, now());
    assert_eq!(p.manage, Manage::Nothing);
    assert_eq!(names(&p.claim.adopt), ["orphan"]);
    let mut deleting = RsBuilder::new("rs").replicas(3).build();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let p = plan(&view(deleting), &ns, true, now());
    assert_eq!(p.manage, Manage::Nothing);
    assert!(p.claim.adopt.is_empty());
}

#[test]
fn deletes_the_lowest_ranked_surplus_pods() {
    let v = view(RsBuilder::new("rs").replicas(2).build());
    let ns = pods(vec![
        own("ready-old").node("n1").ready_since(-100_000).build(),
        own("ready-new").node("n2").ready_since(-10).build(),
        own("pending").node("n3").build(),
        own("unscheduled").build(),
    ]);
    match plan(&v, &ns, true, now()).manage {
        Manage::Delete(victims) => assert_eq!(names(&victims), ["unscheduled", "pending"]),
        other => panic!("expected deletions, got {other:?}"),
    }
    let v = view(RsBuilder::new("rs").replicas(0).build());
    match plan(&v, &ns, true, now()).manage {
        Manage::Delete(victims) => assert_eq!(victims.len(), 4),
        other => panic!("expected deletions, got {other:?}"),
    }
}

#[test]
fn releases_pods_that_stopped_matching() {
    let v = view(RsBuilder::new("rs").replicas(1).build());
    let ns = pods(vec![own("a").labels(&[("app", "other")]).build()]);
    let p = plan(&v, &ns, true, now());
    assert_eq!(names(&p.claim.release), ["a"]);
    assert_eq!(p.manage, Manage::Create(1));
}

#[test]
fn status_counts_labels_readiness_and_availability() {
    let v = view(
        RsBuilder::new("rs")
            .replicas(3)
            .min_ready(30)
            .template_labels(&[("app", "web"), ("tier", "front")])
            .build(),
    );
    let owned = pods(vec![
        own("a")
            .labels(&[("app", "web"), ("tier", "front")])
            .ready_since(-100)
            .build(),
        own("b").ready_since(-5).build(),
        own("c").build(),
    ]);
    let s = status(&v, &owned, None, now());
    assert_eq!(
        (
            s.replicas,
            s.fully_labeled_replicas,
            s.ready_replicas,
            s.available_replicas
        ),
        (3, 1, 2, 1)
    );
    assert_eq!(s.observed_generation, 1);
    assert!(s.conditions.is_empty());
}

#[test]
fn replica_failure_is_set_on_error_and_cleared_after() {
    let v = view(RsBuilder::new("rs").replicas(3).build());
    let failure = Failure {
        reason: failure_reason(&v, 0),
        message: "exceeded quota".into(),
    };
    let s = status(&v, &[], Some(&failure), now());
    assert_eq!(s.conditions.len(), 1);
    let c = &s.conditions[0];
    assert_eq!(
        (
            c.type_.as_str(),
            c.status.as_str(),
            c.reason.as_deref(),
            c.message.as_deref()
        ),
        (
            "ReplicaFailure",
            "True",
            Some("FailedCreate"),
            Some("exceeded quota")
        )
    );
    let mut failed = v.clone();
    failed.status = s;
    assert!(status(&failed, &[], None, now()).conditions.is_empty());
    assert_eq!(failure_reason(&v, 5), "FailedDelete");
}

#[test]
fn replication_controllers_select_by_map_or_template_labels() {
    let rc = ReplicationController {
        metadata: kube::api::ObjectMeta {
            name: Some("rc".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-rc".into()),
            ..Default::default()
        },
        spec: Some(ReplicationControllerSpec {
            replicas: Some(2),
            template: Some(template(&[("app", "web")])),
            ..Default::default()
        }),
        status: None,
    };
    let v = rc.view().expect("view");
    assert!(v.selector.matches(&labels(&[("app", "web"), ("x", "y")])));
    assert_eq!(v.owner.kind, "ReplicationController");
    assert_eq!(v.owner.api_version, "v1");
    assert_eq!(v.owner.block_owner_deletion, Some(true));
    let p = plan(
        &v,
        &pods(vec![PodBuilder::new("orphan").build()]),
        true,
        now(),
    );
    assert_eq!(p.manage, Manage::Create(1));
}
