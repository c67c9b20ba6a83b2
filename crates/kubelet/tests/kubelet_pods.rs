//! End to end: the kubelet runs pods on a real containerd (own root and socket per test) for
//! an in-process API server.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use common::IMAGE;
use k8rs_testing::eventually;

const WAIT: Duration = Duration::from_secs(30);

fn pod(name: &str, node: &str, spec: serde_json::Value) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2}
    });
    if let (Some(s), Some(extra)) = (v["spec"].as_object_mut(), spec.as_object()) {
        for (k, val) in extra {
            s.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).unwrap_or_default()
}

fn container(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", script]})
}

fn cstatus(p: &Pod, i: usize) -> k8s_openapi::api::core::v1::ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.get(i).cloned())
        .unwrap_or_default()
}

fn condition(p: &Pod, kind: &str) -> Option<String> {
    let conds = p.status.as_ref()?.conditions.as_ref()?;
    Some(conds.iter().find(|c| c.type_ == kind)?.status.clone())
}

async fn get(api: &Api<Pod>, name: &str) -> Option<Pod> {
    api.get_opt(name).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_report_status_env_and_readiness() -> anyhow::Result<()> {
    let cidr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = cidr.clone();
    let node = common::Node::start_with(11, move |c| {
        c.on_pod_cidr = Some(std::sync::Arc::new(move |v: &str| {
            if let Ok(mut s) = seen.lock() {
                *s = v.to_string();
            }
        }));
    })
    .await?;
    let client = node.server.client();
    let name = node.config.node_name.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The node registers and turns Ready.
    let nodes: Api<Node> = Api::all(client.clone());
    let n = eventually("node Ready", WAIT, || async {
        let n = nodes.get_opt(&name).await.ok().flatten()?;
        let ready = n
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(n)
    })
    .await;
    let st = n.status.unwrap_or_default();
    let info = st.node_info.unwrap_or_default();
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{info:?}"
    );
    assert!(st.capacity.unwrap_or_default().contains_key("memory"));
    let labels = n.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname"), Some(&name));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    eventually("node lease", WAIT, || async {
        leases.get_opt(&name).await.ok().flatten()
    })
    .await;
    eventually("node images", WAIT, || async {
        let n = nodes.get_opt(&name).await.ok().flatten()?;
        let images = n.status?.images?;
        images
            .iter()
            .any(|i| i.names.iter().flatten().any(|n| n == IMAGE))
            .then_some(())
    })
    .await;
    // The node's podCIDR reaches the runtime's callback.
    let patch = json!({"spec": {"podCIDR": "10.42.11.0/24"}});
    nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    eventually("podCIDR callback", WAIT, || async {
        let v = cidr.lock().map(|s| s.clone()).unwrap_or_default();
        (v == "10.42.11.0/24").then_some(())
    })
    .await;

    // A host-network pod gets the node's IP.
    let host = container("host", "sleep 3600");
    pods.create(
        &PostParams::default(),
        &pod(
            "host",
            &name,
            json!({"hostNetwork": true, "containers": [host]}),
        ),
    )
    .await?;

    // A web server pod: Running, with a pod IP, ready through an HTTP readiness probe.
    let mut web = container(
        "web",
        "mkdir -p /www && echo hello > /www/index.html && echo started && exec httpd -f -p 8080 -h /www",
    );
    web["readinessProbe"] = json!({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1});
    pods.create(
        &PostParams::default(),
        &pod("web", &name, json!({"containers": [web]})),
    )
    .await?;
    let p = eventually("web Ready", WAIT, || async {
        let p = get(&pods, "web").await?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    let status = p.status.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(
        status
            .pod_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.42.11.")),
        "{status:?}"
    );
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert!(status.start_time.is_some());
    let cs = cstatus(&p, 0);
    assert!(cs.ready && cs.started == Some(true));
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("containerd://"))
    );
    assert!(!cs.image_id.is_empty());
    // Its log is where the CRI layout says.
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let log = node
        .config
        .log_root
        .join(format!("default_web_{uid}"))
        .join("web/0.log");
    let text = eventually("log written", WAIT, || async {
        let t = std::fs::read_to_string(&log).ok()?;
        t.contains("started").then_some(t)
    })
    .await;
    assert!(text.contains("stdout"));

    let p = eventually("host Running", WAIT, || async {
        let p = get(&pods, "host").await?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    assert_eq!(
        p.status.and_then(|s| s.pod_ip).as_deref(),
        Some("127.0.0.1")
    );

    // Readiness gates Ready: not ready until the file appears.
    let mut gated = container("gated", "sleep 3; touch /tmp/ready; sleep 3600");
    gated["readinessProbe"] =
        json!({"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1});
    pods.create(
        &PostParams::default(),
        &pod("gated", &name, json!({"containers": [gated]})),
    )
    .await?;
    eventually("gated Running but not Ready", WAIT, || async {
        let p = get(&pods, "gated").await?;
        let running = p.status.as_ref()?.phase.as_deref() == Some("Running");
        (running && condition(&p, "Ready").as_deref() == Some("False")).then_some(())
    })
    .await;
    eventually("gated Ready", WAIT, || async {
        let p = get(&pods, "gated").await?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await;

    // Env from a secret and a configMap, reported through the termination message.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
        "metadata": {"name": "cfg"}, "data": {"color": "blue"}}))?,
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}))?,
        )
        .await?;
    let mut envc = container(
        "env",
        "echo -n \"$COLOR $TOKEN $KUBERNETES_SERVICE_HOST\" > /dev/termination-log",
    );
    envc["env"] = json!([
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]);
    pods.create(
        &PostParams::default(),
        &pod(
            "env",
            &name,
            json!({"restartPolicy": "Never", "containers": [envc]}),
        ),
    )
    .await?;
    let p = eventually("env Succeeded", WAIT, || async {
        let p = get(&pods, "env").await?;
        (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
    })
    .await;
    let term = cstatus(&p, 0)
        .state
        .and_then(|s| s.terminated)
        .unwrap_or_default();
    assert_eq!(term.exit_code, 0);
    assert_eq!(term.reason.as_deref(), Some("Completed"));
    assert_eq!(term.message.as_deref(), Some("blue s3cret 10.43.0.1"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_back_off_and_liveness_failures_restart() -> anyhow::Result<()> {
    let node = common::Node::start(12).await?;
    let client = node.server.client();
    let name = node.config.node_name.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    pods.create(
        &PostParams::default(),
        &pod(
            "crash",
            &name,
            json!({"containers": [container("c", "echo boom; exit 3")]}),
        ),
    )
    .await?;
    let mut live = container(
        "l",
        "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600",
    );
    live["livenessProbe"] = json!({"exec": {"command": ["test", "-f", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1});
    pods.create(
        &PostParams::default(),
        &pod("live", &name, json!({"containers": [live]})),
    )
    .await?;

    let mut side = container("side", "sleep 3600");
    side["restartPolicy"] = json!("Always");
    let inits = json!([container("first", "sleep 1"), side]);
    pods.create(
        &PostParams::default(),
        &pod(
            "init",
            &name,
            json!({"initContainers": inits, "containers": [container("app", "sleep 3600")]}),
        ),
    )
    .await?;

    let saw_backoff = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p = eventually("crash restarted twice", WAIT, || {
        let pods = pods.clone();
        let saw = saw_backoff.clone();
        async move {
            let p = get(&pods, "crash").await?;
            let cs = cstatus(&p, 0);
            let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
            if waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff") {
                saw.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            (cs.restart_count >= 2 && saw.load(std::sync::atomic::Ordering::SeqCst)).then_some(p)
        }
    })
    .await;
    let cs = cstatus(&p, 0);
    let last = cs.last_state.and_then(|s| s.terminated).unwrap_or_default();
    assert_eq!(last.exit_code, 3);
    assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Running"));

    let p = eventually("liveness restart", WAIT, || async {
        let p = get(&pods, "live").await?;
        (cstatus(&p, 0).restart_count >= 1).then_some(p)
    })
    .await;
    let last = cstatus(&p, 0)
        .last_state
        .and_then(|s| s.terminated)
        .unwrap_or_default();
    assert_eq!(last.exit_code, 137, "killed after the grace period");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_and_deletion_is_graceful() -> anyhow::Result<()> {
    let mut node = common::Node::start(13).await?;
    let client = node.server.client();
    let name = node.config.node_name.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut c = container("app", "trap 'exit 0' TERM; while true; do sleep 0.2; done");
    c["lifecycle"] = json!({"preStop": {"exec": {"command": ["sleep", "2"]}}});
    let mut p = pod("keep", &name, json!({"containers": [c]}));
    if let Some(s) = p.spec.as_mut() {
        s.termination_grace_period_seconds = Some(10);
    }
    pods.create(&PostParams::default(), &p).await?;
    let running = eventually("keep Running", WAIT, || async {
        let p = get(&pods, "keep").await?;
        cstatus(&p, 0).ready.then_some(p)
    })
    .await;
    let id = cstatus(&running, 0).container_id;
    pods.create(
        &PostParams::default(),
        &pod(
            "gone",
            &name,
            json!({"containers": [container("g", "sleep 3600")]}),
        ),
    )
    .await?;
    let gone = eventually("gone Running", WAIT, || async {
        let p = get(&pods, "gone").await?;
        cstatus(&p, 0).ready.then_some(p)
    })
    .await;
    let gone_uid = gone.metadata.uid.clone().unwrap_or_default();

    // A restarted kubelet adopts the pod: same container, no duplicate; and removes the pod
    // deleted while it was down.
    node.stop_kubelet().await;
    pods.delete(
        "gone",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    node.start_kubelet();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cri = node.cri();
    let uid = running.metadata.uid.clone().unwrap_or_default();
    let containers = cri
        .list_containers(k8rs_kubelet::cri::pod_filter(&uid))
        .await?;
    assert_eq!(containers.len(), 1, "{containers:?}");
    let sandboxes = cri
        .list_pod_sandboxes(k8rs_kubelet::cri::pod_filter(&uid))
        .await?;
    assert_eq!(sandboxes.len(), 1);
    let p = get(&pods, "keep").await.unwrap_or_default();
    assert_eq!(cstatus(&p, 0).container_id, id);
    assert_eq!(cstatus(&p, 0).restart_count, 0);
    let cri2 = cri.clone();
    eventually("orphan removed", WAIT, || {
        let (cri, uid) = (cri2.clone(), gone_uid.clone());
        async move {
            let left = cri
                .list_pod_sandboxes(k8rs_kubelet::cri::pod_filter(&uid))
                .await
                .ok()?;
            left.is_empty().then_some(())
        }
    })
    .await;

    // Deletion runs the preStop hook (2 s), stops the container, removes the sandbox and then
    // the pod object.
    let start = Instant::now();
    pods.delete("keep", &DeleteParams::default()).await?;
    eventually("keep gone", WAIT, || async {
        get(&pods, "keep").await.is_none().then_some(())
    })
    .await;
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(2), "preStop ran: {took:?}");
    assert!(
        took < Duration::from_secs(9),
        "the container stopped on SIGTERM: {took:?}"
    );
    let sandboxes = cri
        .list_pod_sandboxes(k8rs_kubelet::cri::pod_filter(&uid))
        .await?;
    assert!(sandboxes.is_empty());
    Ok(())
}
