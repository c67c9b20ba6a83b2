//! The Deployment controller (with the ReplicaSet controller) on hollow nodes, driven and
//! observed through kubectl's rollout commands.

mod common;

use common::{Cluster, WAIT, template};
use k8rs_testing::eventually;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

async fn cluster(nodes: usize) -> Cluster {
    let c = Cluster::start(nodes).await;
    let (informers, token) = (c.informers.clone(), c.shutdown.clone());
    tokio::spawn(k8rs_controllers_apps::replicaset::run(informers, token));
    let (informers, token) = (c.informers.clone(), c.shutdown.clone());
    tokio::spawn(k8rs_controllers_apps::deployment::run(informers, token));
    c
}

fn deployment(
    ns: &str,
    name: &str,
    replicas: i32,
    strategy: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "strategy": strategy, "template": template(name)}
    })
}

fn rollout_status(c: &Cluster, ns: &str, name: &str) -> String {
    c.kubectl(&[
        "-n",
        ns,
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=20s",
    ])
}

async fn replica_sets(c: &Cluster, ns: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_history_and_undo_through_kubectl() {
    let c = cluster(2).await;
    c.namespace("dep1").await;
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    c.apply(&deployment("dep1", "web", 3, strategy));
    let out = rollout_status(&c, "dep1", "web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    c.running_pods("dep1", "app=web", 3).await;

    c.kubectl(&[
        "-n",
        "dep1",
        "set",
        "image",
        "deployment/web",
        "c=nginx:1.26",
    ]);
    let out = rollout_status(&c, "dep1", "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = c.running_pods("dep1", "app=web", 3).await;
    let rss = replica_sets(&c, "dep1").await;
    assert_eq!(rss.len(), 2);
    let new = rss
        .iter()
        .find(|r| {
            r.annotations()
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str)
                == Some("2")
        })
        .expect("revision 2");
    let hash = new
        .labels()
        .get("pod-template-hash")
        .cloned()
        .unwrap_or_default();
    assert_eq!(new.name_any(), format!("web-{hash}"));
    assert!(
        pods.iter()
            .all(|p| p.labels().get("pod-template-hash") == Some(&hash))
    );

    let history = c.kubectl(&["-n", "dep1", "rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let described = c.kubectl(&["-n", "dep1", "describe", "deployment", "web"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(
        described.contains(&format!("Scaled up replica set web-{hash} from 0 to 1")),
        "{described}"
    );
    assert!(described.contains("NewReplicaSetAvailable"), "{described}");
    assert!(
        described.contains("MinimumReplicasAvailable"),
        "{described}"
    );

    c.kubectl(&["-n", "dep1", "rollout", "undo", "deployment/web"]);
    let out = rollout_status(&c, "dep1", "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "dep1");
    let d = deployments.get("web").await.expect("deployment");
    assert_eq!(image_of(&d), "nginx:1.25");
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    let rss = replica_sets(&c, "dep1").await;
    if rss.len() != 2 {
        for rs in &rss {
            eprintln!(
                "{}",
                serde_json::to_string(&rs.spec.as_ref().and_then(|s| s.template.clone()))
                    .unwrap_or_default()
            );
        }
        eprintln!(
            "{}",
            serde_json::to_string(&d.spec.as_ref().map(|s| s.template.clone())).unwrap_or_default()
        );
    }
    assert_eq!(rss.len(), 2, "the old replica set was reused");

    c.kubectl(&[
        "-n",
        "dep1",
        "rollout",
        "undo",
        "deployment/web",
        "--to-revision=2",
    ]);
    rollout_status(&c, "dep1", "web");
    let d = deployments.get("web").await.expect("deployment");
    assert_eq!(image_of(&d), "nginx:1.26");
    c.running_pods("dep1", "app=web", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_scale_pause_and_history_limit() {
    let c = cluster(2).await;
    c.namespace("dep2").await;
    let mut d = deployment("dep2", "db", 2, json!({"type": "Recreate"}));
    d["spec"]["revisionHistoryLimit"] = json!(1);
    c.apply(&d);
    rollout_status(&c, "dep2", "db");
    for image in ["nginx:1.26", "nginx:1.27"] {
        c.kubectl(&[
            "-n",
            "dep2",
            "set",
            "image",
            "deployment/db",
            &format!("c={image}"),
        ]);
        let out = rollout_status(&c, "dep2", "db");
        assert!(out.contains("successfully rolled out"), "{out}");
    }
    eventually("history trimmed to 1 old set", WAIT, || async {
        (replica_sets(&c, "dep2").await.len() == 2).then_some(())
    })
    .await;
    c.kubectl(&["-n", "dep2", "scale", "deployment/db", "--replicas=4"]);
    c.running_pods("dep2", "app=db", 4).await;
    rollout_status(&c, "dep2", "db");

    c.kubectl(&["-n", "dep2", "rollout", "pause", "deployment/db"]);
    c.kubectl(&[
        "-n",
        "dep2",
        "set",
        "image",
        "deployment/db",
        "c=nginx:1.28",
    ]);
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "dep2");
    eventually("paused condition", WAIT, || async {
        let d = deployments.get("db").await.ok()?;
        let conds = d.status?.conditions?;
        conds
            .iter()
            .any(|c| c.reason.as_deref() == Some("DeploymentPaused"))
            .then_some(())
    })
    .await;
    let rss = replica_sets(&c, "dep2").await;
    let images: Vec<String> = rss
        .iter()
        .filter_map(|r| {
            r.spec
                .as_ref()?
                .template
                .as_ref()?
                .spec
                .as_ref()?
                .containers[0]
                .image
                .clone()
        })
        .collect();
    assert!(
        !images.contains(&"nginx:1.28".to_string()),
        "no rollout while paused: {images:?}"
    );
    c.kubectl(&["-n", "dep2", "rollout", "resume", "deployment/db"]);
    let out = rollout_status(&c, "dep2", "db");
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = c.running_pods("dep2", "app=db", 4).await;
    assert!(
        pods.iter()
            .all(|p| p.spec.as_ref().map(|s| s.containers[0].image.clone())
                == Some(Some("nginx:1.28".into())))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_is_reported_to_rollout_status() {
    let c = cluster(1).await;
    c.namespace("dep3").await;
    let mut d = deployment("dep3", "stuck", 1, json!({"type": "RollingUpdate"}));
    d["spec"]["progressDeadlineSeconds"] = json!(2);
    // No node fits: the pod never becomes available.
    d["spec"]["template"]["spec"]["nodeSelector"] = json!({"no-such": "node"});
    c.apply(&d);
    let out = c.kubectl_raw(&[
        "-n",
        "dep3",
        "rollout",
        "status",
        "deployment/stuck",
        "--timeout=20s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
}
