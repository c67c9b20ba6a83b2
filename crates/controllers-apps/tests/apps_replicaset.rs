//! The ReplicaSet and ReplicationController controllers on hollow nodes, seen through kubectl.

mod common;

use std::time::Duration;

use common::{Cluster, WAIT, template};
use k8rs_testing::eventually;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

async fn cluster(nodes: usize) -> Cluster {
    let c = Cluster::start(nodes).await;
    let (informers, token) = (c.informers.clone(), c.shutdown.clone());
    tokio::spawn(k8rs_controllers_apps::replicaset::run(informers, token));
    let (informers, token) = (c.informers.clone(), c.shutdown.clone());
    tokio::spawn(k8rs_controllers_apps::replicaset::run_rc(informers, token));
    c
}

fn replicaset(ns: &str, name: &str, app: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template(app)}
    })
}

async fn rs_status(
    c: &Cluster,
    ns: &str,
    name: &str,
) -> k8s_openapi::api::apps::v1::ReplicaSetStatus {
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), ns);
    api.get(name)
        .await
        .ok()
        .and_then(|r| r.status)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_scales_and_reports_through_kubectl() {
    let c = cluster(2).await;
    c.namespace("rs1").await;
    c.apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": [replicaset("rs1", "web", "web", 3)]}),
    )
    .lines()
    .for_each(drop);
    let _ = c.kubectl(&["-n", "rs1", "get", "rs"]);
    let pods = c.running_pods("rs1", "app=web", 3).await;
    for p in &pods {
        assert!(p.name_any().starts_with("web-"), "{}", p.name_any());
        let owner = &p.owner_references()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("ReplicaSet", Some(true), Some(true))
        );
    }
    eventually("status 3/3", WAIT, || async {
        let s = rs_status(&c, "rs1", "web").await;
        (s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == Some(1))
        .then_some(())
    })
    .await;
    c.kubectl(&["-n", "rs1", "scale", "rs", "web", "--replicas=1"]);
    c.running_pods("rs1", "app=web", 1).await;
    eventually("status after scale down", WAIT, || async {
        let s = rs_status(&c, "rs1", "web").await;
        (s.replicas == 1 && s.observed_generation == Some(2)).then_some(())
    })
    .await;
    let described = eventually("events in describe", WAIT, || async {
        let out = c.kubectl(&["-n", "rs1", "describe", "rs", "web"]);
        (out.contains("SuccessfulCreate") && out.contains("SuccessfulDelete")).then_some(out)
    })
    .await;
    assert!(described.contains("Created pod: web-"), "{described}");
    assert!(described.contains("Deleted pod: web-"), "{described}");
    assert!(described.contains("1 current / 1 desired"), "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_orphans_releases_relabelled_pods_and_honours_deletion_cost() {
    let c = cluster(1).await;
    c.namespace("rs2").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "rs2");
    let mut orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan");
    c.running_pods("rs2", "app=db", 1).await;
    c.apply(&replicaset("rs2", "db", "db", 1));
    eventually("orphan adopted", WAIT, || async {
        let p = pods.get("orphan").await.ok()?;
        (p.owner_references().first()?.name == "db").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.pods("rs2", "app=db").await.len(),
        1,
        "no pod was created beside the adopted one"
    );
    // Relabel: the pod is released and replaced.
    let patch = json!({"metadata": {"labels": {"app": "moved"}}});
    pods.patch("orphan", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("relabel");
    eventually("orphan released", WAIT, || async {
        let p = pods.get("orphan").await.ok()?;
        p.owner_references().is_empty().then_some(())
    })
    .await;
    c.running_pods("rs2", "app=db", 1).await;
    // Scale to 3, mark one pod as expensive, scale back to 1: it survives.
    c.kubectl(&["-n", "rs2", "scale", "rs", "db", "--replicas=3"]);
    let three = c.running_pods("rs2", "app=db", 3).await;
    let keep = three[1].name_any();
    orphan = pods.get(&keep).await.expect("pod");
    let patch =
        json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "100"}}});
    pods.patch(
        &orphan.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .expect("annotate");
    c.kubectl(&["-n", "rs2", "scale", "rs", "db", "--replicas=1"]);
    let left = c.running_pods("rs2", "app=db", 1).await;
    assert_eq!(left[0].name_any(), keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_reports_quota_failures_and_recovers() {
    let c = cluster(1).await;
    c.namespace("rs3").await;
    c.apply(&json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": "rs3"}, "spec": {"hard": {"pods": "1"}}}));
    let rs = replicaset("rs3", "q", "q", 4);
    c.apply(&rs);
    let cond = eventually("ReplicaFailure", WAIT, || async {
        let s = rs_status(&c, "rs3", "q").await;
        s.conditions?
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    assert!(cond.message.unwrap_or_default().contains("exceeded quota"));
    assert!(
        c.pods("rs3", "app=q").await.len() < 4,
        "the quota stopped some creations"
    );
    let out = c.kubectl(&["-n", "rs3", "describe", "rs", "q"]);
    assert!(out.contains("FailedCreate"), "{out}");
    c.kubectl(&["-n", "rs3", "delete", "resourcequota", "q"]);
    c.running_pods("rs3", "app=q", 4).await;
    eventually("ReplicaFailure cleared", WAIT, || async {
        let s = rs_status(&c, "rs3", "q").await;
        s.conditions.unwrap_or_default().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_keeps_its_replicas() {
    let c = cluster(1).await;
    c.namespace("rc1").await;
    c.apply(&json!({"apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "old", "namespace": "rc1"},
        "spec": {"replicas": 2, "selector": {"app": "old"}, "template": template("old")}}));
    let pods = c.running_pods("rc1", "app=old", 2).await;
    assert_eq!(pods[0].owner_references()[0].kind, "ReplicationController");
    let api: Api<Pod> = Api::namespaced(c.client.clone(), "rc1");
    api.delete(&pods[0].name_any(), &Default::default())
        .await
        .expect("delete");
    c.running_pods("rc1", "app=old", 2).await;
    let rcs: Api<ReplicationController> = Api::namespaced(c.client.clone(), "rc1");
    eventually("rc status", WAIT, || async {
        let s = rcs.get("old").await.ok()?.status?;
        (s.replicas == 2 && s.ready_replicas == Some(2)).then_some(())
    })
    .await;
    let out = c.kubectl(&["-n", "rc1", "describe", "rc", "old"]);
    assert!(out.contains("Created pod: old-"), "{out}");
}
