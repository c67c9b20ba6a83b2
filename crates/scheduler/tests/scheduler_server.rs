//! The scheduler against the real API server: `target/debug/k8rs server --disable-agent` is
//! started on a free port and the scheduler runs in this process as its client. Pods use their
//! own `schedulerName`, so a scheduler the server may run itself leaves them alone.
//!
//! Needs the `k8rs` binary (`cargo build -p k8rs`); without it the tests say so and pass.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8rs_scheduler::{SchedulerConfig, run};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SCHEDULER: &str = "k8rs-test-scheduler";

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let p = target.join("debug/k8rs");
    p.exists().then_some(p)
}

async fn start() -> Result<Option<(Server, kube::Client)>> {
    // A missing binary is a failure, not a skip: the README's test command builds it first.
    let Some(bin) = binary() else {
        panic!("target/debug/k8rs is missing: build it with `cargo build -p k8rs` first");
    };
    let dir = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(bin)
        .args(["server", "--disable-agent", "--bind-address=127.0.0.1"])
        .arg(format!("--https-port={port}"))
        .arg(format!("--data-dir={}", dir.path().display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let server = Server { child, dir };
    let kubeconfig = server.dir.path().join("admin.kubeconfig");
    for _ in 0..400 {
        if kubeconfig.exists() {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            let client = kube::Client::try_from(config)?;
            let ns: Api<Namespace> = Api::all(client.clone());
            if ns.get_opt("kube-system").await.ok().flatten().is_some() {
                return Ok(Some((server, client)));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
    bail!("server not ready:\n{log}")
}

fn config(leader_election: bool) -> SchedulerConfig {
    SchedulerConfig {
        scheduler_name: SCHEDULER.into(),
        leader_election,
        identity: "test-scheduler-1".into(),
        ..SchedulerConfig::default()
    }
}

async fn add_node(client: &kube::Client, name: &str, cpu: &str, extra: Value) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
    });
    if let (Some(n), Some(e)) = (node.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            match (n.get_mut(k), v) {
                (Some(Value::Object(dst)), Value::Object(src)) => dst.extend(src.clone()),
                _ => {
                    n.insert(k.clone(), v.clone());
                }
            }
        }
    }
    nodes
        .create(&PostParams::default(), &serde_json::from_value(node)?)
        .await?;
    let status = json!({"status": {
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

fn pod(name: &str, cpu: &str, extra: Value) -> Result<Pod> {
    let mut spec = json!({
        "schedulerName": SCHEDULER,
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?)
}

/// Polls the pod until `f` holds (10 s).
async fn wait_pod(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    f: impl Fn(&Pod) -> bool,
) -> Result<Pod> {
    let mut last = None;
    for _ in 0..200 {
        if let Some(p) = pods.get_opt(name).await? {
            if f(&p) {
                return Ok(p);
            }
            last = Some(p);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("pod {name} never {what}: {:?}", last.map(|p| p.status))
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref()
}

fn scheduled_condition(p: &Pod) -> Option<(String, String)> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.message.clone().unwrap_or_default()))
}

async fn events_for(client: &kube::Client, pod: &str) -> Result<Vec<(String, String)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect())
}

async fn wait_event(client: &kube::Client, pod: &str, reason: &str) -> Result<String> {
    for _ in 0..100 {
        if let Some((_, note)) = events_for(client, pod)
            .await?
            .into_iter()
            .find(|(r, _)| r == reason)
        {
            return Ok(note);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "no {reason} event for {pod}: {:?}",
        events_for(client, pod).await?
    )
}

#[tokio::test]
async fn binds_fitting_pods_and_explains_the_rest() -> Result<()> {
    let Some((_server, client)) = start().await? else {
        return Ok(());
    };
    add_node(&client, "a", "2", json!({})).await?;
    add_node(
        &client,
        "b",
        "2",
        json!({"metadata": {"labels": {"disk": "ssd"}}}),
    )
    .await?;
    add_node(&client, "cp", "8", json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}})).await?;
    let shutdown = CancellationToken::new();
    let scheduler = tokio::spawn(run(client.clone(), config(false), shutdown.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    pods.create(&PostParams::default(), &pod("fits", "1", json!({}))?)
        .await?;
    let p = wait_pod(&pods, "fits", "bound", |p| node_of(p).is_some()).await?;
    let node = node_of(&p).unwrap_or_default().to_owned();
    assert!(
        node == "a" || node == "b",
        "never on the tainted node: {node}"
    );
    let note = wait_event(&client, "fits", "Scheduled").await?;
    assert_eq!(
        note,
        format!("Successfully assigned default/fits to {node}")
    );

    pods.create(
        &PostParams::default(),
        &pod("ssd", "500m", json!({"nodeSelector": {"disk": "ssd"}}))?,
    )
    .await?;
    let p = wait_pod(&pods, "ssd", "bound", |p| node_of(p).is_some()).await?;
    assert_eq!(node_of(&p), Some("b"));

    pods.create(&PostParams::default(), &pod("huge", "3", json!({}))?)
        .await?;
    let p = wait_pod(&pods, "huge", "marked unschedulable", |p| {
        scheduled_condition(p).is_some()
    })
    .await?;
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
                2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..";
    assert_eq!(scheduled_condition(&p), Some(("False".into(), want.into())));
    assert_eq!(wait_event(&client, "huge", "FailedScheduling").await?, want);

    // Another scheduler's pods are left alone.
    let mut other = pod("other", "100m", json!({}))?;
    if let Some(s) = other.spec.as_mut() {
        s.scheduler_name = Some("someone-else".into());
    }
    pods.create(&PostParams::default(), &other).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pods.get("other").await.ok().as_ref().and_then(node_of),
        None
    );

    shutdown.cancel();
    scheduler.await?.context("scheduler")?;
    Ok(())
}

#[tokio::test]
async fn preempts_lower_priority_pods() -> Result<()> {
    let Some((_server, client)) = start().await? else {
        return Ok(());
    };
    add_node(&client, "only", "2", json!({})).await?;
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
    let high = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000});
    classes
        .create(&PostParams::default(), &serde_json::from_value(high)?)
        .await?;
    let shutdown = CancellationToken::new();
    let scheduler = tokio::spawn(run(client.clone(), config(false), shutdown.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    pods.create(&PostParams::default(), &pod("low", "2", json!({}))?)
        .await?;
    wait_pod(&pods, "low", "bound", |p| node_of(p).is_some()).await?;
    pods.create(
        &PostParams::default(),
        &pod("urgent", "2", json!({"priorityClassName": "high"}))?,
    )
    .await?;
    let p = wait_pod(&pods, "urgent", "nominated", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            == Some("only")
    })
    .await?;
    assert_eq!(node_of(&p), None);
    let victim = wait_pod(&pods, "low", "marked for deletion", |p| {
        p.metadata.deletion_timestamp.is_some()
    })
    .await?;
    let target = victim
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionTarget").cloned());
    assert_eq!(
        target.and_then(|c| c.reason).as_deref(),
        Some("PreemptionByScheduler")
    );
    // Without a kubelet the victim stays terminating: finish its deletion as a kubelet would.
    let _ = pods
        .delete(
            "low",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await;
    let p = wait_pod(&pods, "urgent", "bound", |p| node_of(p).is_some()).await?;
    assert_eq!(node_of(&p), Some("only"));

    shutdown.cancel();
    scheduler.await?.context("scheduler")?;
    Ok(())
}

#[tokio::test]
async fn holds_and_releases_the_lease() -> Result<()> {
    let Some((_server, client)) = start().await? else {
        return Ok(());
    };
    add_node(&client, "n", "2", json!({})).await?;
    let shutdown = CancellationToken::new();
    let scheduler = tokio::spawn(run(client.clone(), config(true), shutdown.clone()));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = || async {
        let l = leases.get_opt("kube-scheduler").await.ok().flatten();
        l.and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    };
    let mut held = String::new();
    for _ in 0..100 {
        held = holder().await;
        if !held.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!held.is_empty(), "someone holds the scheduler lease");
    if held == "test-scheduler-1" {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("led", "1", json!({}))?)
            .await?;
        wait_pod(&pods, "led", "bound", |p| node_of(p).is_some()).await?;
        shutdown.cancel();
        scheduler.await?.context("scheduler")?;
        assert_eq!(holder().await, "", "released on shutdown");
    } else {
        shutdown.cancel();
        scheduler.await?.context("scheduler")?;
    }
    Ok(())
}
