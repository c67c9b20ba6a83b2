//! The StatefulSet controller on hollow nodes with the scheduler, through kubectl.

mod common;

use common::{Cluster, WAIT, template};
use k8rs_testing::eventually;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

fn start_controller(c: &Cluster) {
    let (informers, token) = (c.informers.clone(), c.shutdown.clone());
    tokio::spawn(k8rs_controllers_apps::statefulset::run(informers, token));
}

fn ready_since(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    let cs = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = cs
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    ready.last_transition_time.as_ref().map(|t| t.0)
}

fn image(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.containers[0].image.clone())
}

fn by_name<'a>(pods: &'a [Pod], name: &str) -> Option<&'a Pod> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_creates_claims_and_pods_in_order_and_scales_down_from_the_top() {
    let c = Cluster::start(2).await;
    start_controller(&c);
    c.namespace("sts1").await;
    // A class that provisions on first consumer, so the scheduler does not wait for a binder.
    c.apply(
        &json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local"}, "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer"}),
    );
    c.apply(&json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "sts1"},
        "spec": {"replicas": 3, "serviceName": "web",
                 "selector": {"matchLabels": {"app": "web"}}, "template": template("web"),
                 "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                             "resources": {"requests": {"storage": "1Gi"}}}}]}}));
    let pods = c.running_pods("sts1", "app=web", 3).await;
    for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready = by_name(&pods, prev).and_then(ready_since);
        let created = by_name(&pods, next)
            .and_then(|p| p.metadata.creation_timestamp.clone())
            .map(|t| t.0);
        assert!(
            ready.is_some() && created.is_some() && ready <= created,
            "{next} was created before {prev} was ready"
        );
    }
    let web1 = by_name(&pods, "web-1").cloned().unwrap_or_default();
    let spec = web1.spec.clone().unwrap_or_default();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-1"), Some("web"))
    );
    let labels = web1.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("apps.kubernetes.io/pod-index")
            .map(String::as_str),
        Some("1")
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "sts1");
    let list = claims.list(&ListParams::default()).await.expect("claims");
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["data-web-0", "data-web-1", "data-web-2"]);
    assert!(list.items.iter().all(|c| {
        c.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| r.kind == "StatefulSet" && r.name == "web"))
    }));

    c.kubectl(&["-n", "sts1", "scale", "statefulset/web", "--replicas=1"]);
    let left = c.running_pods("sts1", "app=web", 1).await;
    assert_eq!(left[0].metadata.name.as_deref(), Some("web-0"));
    let sets: Api<StatefulSet> = Api::namespaced(c.client.clone(), "sts1");
    eventually("status after scale-down", WAIT, || async {
        let s = sets.get("web").await.ok()?.status?;
        (s.replicas == 1 && s.ready_replicas == Some(1) && s.available_replicas == Some(1))
            .then_some(())
    })
    .await;
    let after = claims.list(&ListParams::default()).await.expect("claims");
    assert_eq!(after.items.len(), 3, "whenScaled=Retain keeps the claims");
    let described = c.kubectl(&["-n", "sts1", "describe", "statefulset", "web"]);
    assert!(
        described.contains("create Pod web-0 in StatefulSet web successful")
            && described.contains("create Claim data-web-0 Pod web-0 in StatefulSet web success"),
        "{described}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_partitioned_rollout_status_history_and_undo() {
    let c = Cluster::start(2).await;
    start_controller(&c);
    c.namespace("sts2").await;
    c.apply(&json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "sts2"},
        "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}}));
    c.running_pods("sts2", "app=db", 3).await;
    let rollout = |extra: &[&str]| {
        let mut args = vec!["-n", "sts2", "rollout"];
        args.extend_from_slice(extra);
        c.kubectl(&args)
    };
    let out = rollout(&["status", "statefulset/db", "--timeout=20s"]);
    assert!(out.contains("roll out complete: 3 new pods"), "{out}");

    let partition = json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"partition": 2}}}});
    c.kubectl(&[
        "-n",
        "sts2",
        "patch",
        "statefulset/db",
        "--type=merge",
        "-p",
        &partition.to_string(),
    ]);
    c.kubectl(&[
        "-n",
        "sts2",
        "set",
        "image",
        "statefulset/db",
        "c=nginx:1.26",
    ]);
    let out = rollout(&["status", "statefulset/db", "--timeout=20s"]);
    assert!(
        out.contains("partitioned roll out complete: 1 new pods"),
        "{out}"
    );
    let pods = c.running_pods("sts2", "app=db", 3).await;
    let images: Vec<_> = ["db-0", "db-1", "db-2"]
        .iter()
        .map(|n| by_name(&pods, n).and_then(image))
        .collect();
    assert_eq!(
        images,
        [
            Some("nginx:1.25".into()),
            Some("nginx:1.25".into()),
            Some("nginx:1.26".into())
        ]
    );

    let partition = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}});
    c.kubectl(&[
        "-n",
        "sts2",
        "patch",
        "statefulset/db",
        "--type=merge",
        "-p",
        &partition.to_string(),
    ]);
    let out = rollout(&["status", "statefulset/db", "--timeout=30s"]);
    assert!(out.contains("roll out complete: 3 new pods"), "{out}");
    let history = rollout(&["history", "statefulset/db"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );

    rollout(&["undo", "statefulset/db"]);
    eventually("undo rolled back", WAIT, || async {
        let pods = c.pods("sts2", "app=db").await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| image(p).as_deref() == Some("nginx:1.25") && common::ready(p)))
        .then_some(())
    })
    .await;
    let out = rollout(&["status", "statefulset/db", "--timeout=20s"]);
    assert!(out.contains("roll out complete: 3 new pods"), "{out}");
}
