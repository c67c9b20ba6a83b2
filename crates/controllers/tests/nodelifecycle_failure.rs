//! Node lifecycle against the real API server with hollow nodes: `kubectl cordon` taints a node
//! unschedulable; a node whose kubelet stops goes Unknown, is tainted unreachable, its pods are
//! marked not Ready and evicted when their toleration runs out; when it comes back it is
//! untainted. PodGC deletes pods of missing nodes and the oldest terminated pods.
//! `kubectl drain` honours budgets whose status the disruption controller keeps.

use std::process::Command;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers::disruption;
use k8rs_controllers::nodeipam::{self, NodeIpamConfig};
use k8rs_controllers::nodelifecycle::{self, NodeLifecycleConfig};
use k8rs_controllers::podgc::{self, PodGcConfig};
use k8rs_hollow::HollowConfig;
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// Hollow nodes renew their Lease every 10 s; tests use a 2 s grace period, so a task renews
/// them faster, and stops with them.
fn start_node(client: &kube::Client, name_prefix: &str, token: &CancellationToken) {
    let config = HollowConfig {
        count: 1,
        name_prefix: name_prefix.into(),
        zone: Some("zone-a".into()),
        ..HollowConfig::default()
    };
    tokio::spawn(k8rs_hollow::run(client.clone(), config, token.clone()));
    let (leases, node, token) = (
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        format!("{name_prefix}0"),
        token.clone(),
    );
    tokio::spawn(async move {
        while !token.is_cancelled() {
            let body = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
            let _ = leases
                .patch(&node, &PatchParams::default(), &Patch::Merge(&body))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn taint_keys(node: &Node) -> Vec<String> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect()
}

fn pod_ready(pod: &Pod) -> Option<String> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    Some(conds.iter().find(|c| c.type_ == "Ready")?.status.clone())
}

async fn create_pod(pods: &Api<Pod>, name: &str, node: &str, toleration_seconds: i64) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}],
                 "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": toleration_seconds}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_is_tainted_its_pods_evicted_and_it_recovers() {
    let server = TestServer::start().await;
    let client = server.client();
    let config = NodeLifecycleConfig {
        node_monitor_period: Duration::from_millis(200),
        node_monitor_grace_period: Duration::from_secs(2),
        node_eviction_rate: 100.0,
        ..NodeLifecycleConfig::default()
    };
    // The two controllers share the node informer, as in the controller manager.
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(nodelifecycle::run(
        informers.clone(),
        config,
        server.shutdown_token(),
    ));
    tokio::spawn(nodeipam::run(
        informers,
        NodeIpamConfig::default(),
        server.shutdown_token(),
    ));
    let failing = server.shutdown_token().child_token();
    start_node(&client, "nl-a-", &failing);
    start_node(&client, "nl-b-", &server.shutdown_token());
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pod(&pods, "fast", "nl-a-0", 1).await;
    create_pod(&pods, "slow", "nl-a-0", 300).await;
    eventually("pods ready", WAIT, || async {
        let p = pods.get("slow").await.ok()?;
        (pod_ready(&p)? == "True").then_some(())
    })
    .await;

    kubectl(&server, &["cordon", "nl-b-0"]);
    eventually("unschedulable taint", WAIT, || async {
        let n = nodes.get("nl-b-0").await.ok()?;
        taint_keys(&n)
            .contains(&"node.kubernetes.io/unschedulable:NoSchedule".to_string())
            .then_some(())
    })
    .await;
    kubectl(&server, &["uncordon", "nl-b-0"]);
    eventually("unschedulable taint removed", WAIT, || async {
        let n = nodes.get("nl-b-0").await.ok()?;
        taint_keys(&n).is_empty().then_some(())
    })
    .await;

    // The node fails.
    failing.cancel();
    // A status update the node sent just before it stopped may land after the controller's;
    // the controller then marks the node again at its next check, so wait for both together.
    eventually("node unreachable and Ready Unknown", WAIT, || async {
        let n = nodes.get("nl-a-0").await.ok()?;
        let tainted =
            taint_keys(&n).contains(&"node.kubernetes.io/unreachable:NoExecute".to_string());
        let conds = n.status.and_then(|s| s.conditions).unwrap_or_default();
        let ready = conds.into_iter().find(|c| c.type_ == "Ready")?;
        let unknown = (ready.status.as_str(), ready.reason.as_deref())
            == ("Unknown", Some("NodeStatusUnknown"));
        (tainted && unknown).then_some(())
    })
    .await;
    eventually("slow pod not ready", WAIT, || async {
        let p = pods.get("slow").await.ok()?;
        (pod_ready(&p)? == "False").then_some(())
    })
    .await;
    // Deleted with its grace period: it stays Terminating while its kubelet is down.
    let fast = eventually("fast pod evicted", WAIT, || async {
        let p = pods.get_opt("fast").await.ok()??;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    let conds = fast.status.and_then(|s| s.conditions).unwrap_or_default();
    let target = conds
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget");
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    let slow = pods.get("slow").await.expect("slow");
    assert!(
        slow.metadata.deletion_timestamp.is_none(),
        "300 s toleration holds"
    );
    let events: Api<Event> = Api::all(client.clone());
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.contains(&"NodeNotReady".to_string()), "{reasons:?}");
    assert!(
        reasons.contains(&"TaintManagerEviction".to_string()),
        "{reasons:?}"
    );

    // It comes back.
    start_node(&client, "nl-a-", &server.shutdown_token());
    eventually("node untainted", WAIT, || async {
        let n = nodes.get("nl-a-0").await.ok()?;
        taint_keys(&n).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_removes_orphans_and_old_terminated_pods() {
    let server = TestServer::start().await;
    let client = server.client();
    let config = PodGcConfig {
        terminated_pod_gc_threshold: 1,
        gc_check_period: Duration::from_millis(200),
        quarantine: Duration::from_millis(300),
    };
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(podgc::run(informers, config, server.shutdown_token()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pod(&pods, "orphan", "ghost-node", 300).await;
    for name in ["done-1", "done-2"] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create");
        let status = json!({"status": {"phase": "Succeeded"}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("terminate");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    eventually("orphan and oldest terminated pod deleted", WAIT, || async {
        let orphan = pods.get_opt("orphan").await.ok()?;
        let old = pods.get_opt("done-1").await.ok()?;
        (orphan.is_none() && old.is_none()).then_some(())
    })
    .await;
    assert!(pods.get_opt("done-2").await.expect("get").is_some());
}

fn kubectl_output(server: &TestServer, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_honours_budgets_from_the_disruption_controller() {
    let server = TestServer::start().await;
    let client = server.client();
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(disruption::run(informers.clone(), server.shutdown_token()));
    tokio::spawn(nodeipam::run(
        informers,
        NodeIpamConfig::default(),
        server.shutdown_token(),
    ));
    start_node(&client, "dr-", &server.shutdown_token());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"nodeName": "dr-0", "containers": [{"name": "c", "image": "nginx"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    kubectl(
        &server,
        &[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=1",
        ],
    );
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), "default");
    eventually("budget status", WAIT, || async {
        let s = pdbs.get("web").await.ok()?.status?;
        (s.current_healthy == 1 && s.desired_healthy == 1 && s.expected_pods == 1).then_some(())
    })
    .await;
    let (ok, out) = kubectl_output(&server, &["drain", "dr-0", "--force", "--timeout=2s"]);
    assert!(!ok && out.contains("disruption budget"), "{out}");
    assert!(pods.get_opt("web").await.expect("get").is_some());

    kubectl(
        &server,
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":0}}"#,
        ],
    );
    eventually("budget allows a disruption", WAIT, || async {
        let s = pdbs.get("web").await.ok()?.status?;
        (s.disruptions_allowed == 1).then_some(())
    })
    .await;
    let (ok, out) = kubectl_output(&server, &["drain", "dr-0", "--force", "--timeout=5s"]);
    assert!(ok, "{out}");
    assert!(out.contains("evicted"), "{out}");
}
