//! The DaemonSet controller on hollow nodes with the scheduler, through kubectl.

mod common;

use common::{Cluster, WAIT, template};
use k8rs_testing::eventually;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_everywhere_rolls_and_undoes() {
    let c = Cluster::start(3).await;
    let (informers, token) = (c.informers.clone(), c.shutdown.clone());
    tokio::spawn(k8rs_controllers_apps::daemonset::run(informers, token));
    c.namespace("ds1").await;
    c.apply(&json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ds1"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent"),
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}}));
    let pods = c.running_pods("ds1", "app=agent", 3).await;
    let mut nodes: Vec<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node-0", "node-1", "node-2"]);
    let out = c.kubectl(&[
        "-n",
        "ds1",
        "rollout",
        "status",
        "daemonset/agent",
        "--timeout=20s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");

    c.kubectl(&[
        "-n",
        "ds1",
        "set",
        "image",
        "daemonset/agent",
        "c=nginx:1.26",
    ]);
    let out = c.kubectl(&[
        "-n",
        "ds1",
        "rollout",
        "status",
        "daemonset/agent",
        "--timeout=20s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = c.running_pods("ds1", "app=agent", 3).await;
    let image = |p: &k8s_openapi::api::core::v1::Pod| {
        p.spec.as_ref().and_then(|s| s.containers[0].image.clone())
    };
    assert!(
        pods.iter()
            .all(|p| image(p).as_deref() == Some("nginx:1.26"))
    );
    let history = c.kubectl(&["-n", "ds1", "rollout", "history", "daemonset/agent"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );

    c.kubectl(&["-n", "ds1", "rollout", "undo", "daemonset/agent"]);
    let api: Api<DaemonSet> = Api::namespaced(c.client.clone(), "ds1");
    eventually("undo rolled back", WAIT, || async {
        let pods = c.pods("ds1", "app=agent").await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| image(p).as_deref() == Some("nginx:1.25") && common::ready(p)))
        .then_some(())
    })
    .await;
    let ds = eventually("status", WAIT, || async {
        let ds = api.get("agent").await.ok()?;
        let s = ds.status.clone()?;
        (s.desired_number_scheduled == 3
            && s.number_ready == 3
            && s.updated_number_scheduled == Some(3)
            && s.number_available == Some(3))
        .then_some(ds)
    })
    .await;
    assert_eq!(ds.name_any(), "agent");
    let described = c.kubectl(&["-n", "ds1", "describe", "daemonset", "agent"]);
    assert!(described.contains("Created pod: agent-"), "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_surges_and_releases_relabelled_pods() {
    let c = Cluster::start(2).await;
    let (informers, token) = (c.informers.clone(), c.shutdown.clone());
    tokio::spawn(k8rs_controllers_apps::daemonset::run(informers, token));
    c.namespace("ds2").await;
    c.apply(&json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ds2"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent"),
                 "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}));
    c.running_pods("ds2", "app=agent", 2).await;
    c.kubectl(&[
        "-n",
        "ds2",
        "set",
        "image",
        "daemonset/agent",
        "c=nginx:1.26",
    ]);
    let out = c.kubectl(&[
        "-n",
        "ds2",
        "rollout",
        "status",
        "daemonset/agent",
        "--timeout=20s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = c.running_pods("ds2", "app=agent", 2).await;
    let image = |p: &k8s_openapi::api::core::v1::Pod| {
        p.spec.as_ref().and_then(|s| s.containers[0].image.clone())
    };
    assert!(
        pods.iter()
            .all(|p| image(p).as_deref() == Some("nginx:1.26"))
    );

    let name = pods[0].name_any();
    c.kubectl(&[
        "-n",
        "ds2",
        "label",
        "pod",
        &name,
        "app=other",
        "--overwrite",
    ]);
    let released = eventually("pod released", WAIT, || async {
        let pods = c.pods("ds2", "app=other").await;
        pods.into_iter().find(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(|o| o.is_empty())
        })
    })
    .await;
    assert_eq!(released.name_any(), name);
    c.running_pods("ds2", "app=agent", 2).await;
}
