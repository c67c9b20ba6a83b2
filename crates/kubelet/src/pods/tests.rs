//! Pod worker tests against the recording fake CRI and a mock API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::services::Services;
use super::worker::{Next, Worker};
use crate::KubeletConfig;
use crate::testing::FakeCri;

type Log = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A kube client whose API answers from fixtures and records every request.
fn mock_client(log: Log) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let log = log.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Ok(mut l) = log.lock() {
                l.push((method.clone(), path.clone(), body));
            }
            let (code, resp) = answer(&method, &path);
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(resp.to_string())))
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    kube::Client::new(svc, "default")
}

fn answer(method: &str, path: &str) -> (u16, Value) {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}});
    match (method, path) {
        ("GET", "/api/v1/namespaces/default/configmaps/cfg") => (
            200,
            json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
            "data": {"MODE": "fast", "LEVEL": "3"}}),
        ),
        ("GET", "/api/v1/namespaces/default/secrets/creds") => (
            200,
            json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "data": {"password": "aHVudGVyMg=="}}),
        ),
        ("GET", _) => (
            404,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}),
        ),
        _ => (200, pod),
    }
}

/// The kubelet's Services: only the master Service.
fn services() -> Services {
    let master = json!({"metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}});
    Services::fixed(serde_json::from_value(master).into_iter().collect())
}

fn config() -> Arc<KubeletConfig> {
    let dir = std::env::temp_dir().join(format!("k8rs-kubelet-unit-{}", std::process::id()));
    let mut c = KubeletConfig::new(
        "n1",
        "10.0.0.5"
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        "/x.sock",
        dir,
    );
    c.crash_loop_base = Duration::from_millis(1000);
    Arc::new(c)
}

fn pod(v: Value) -> Pod {
    let mut base = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "uid1", "resourceVersion": "1"},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "img:1", "command": ["sh"]}]},
        "status": {"phase": "Pending"}
    });
    merge(&mut base, v);
    serde_json::from_value(base).unwrap_or_default()
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

struct Harness {
    fake: Arc<FakeCri>,
    log: Log,
    worker: Worker,
}

fn harness(p: Pod) -> Harness {
    let fake = Arc::new(FakeCri::with_images(&["img:1"]));
    let log: Log = Arc::default();
    let worker = Worker::new(
        mock_client(log.clone()),
        config(),
        fake.clone(),
        "uid1".into(),
        "fake".into(),
        Some(p),
        services(),
    );
    Harness { fake, log, worker }
}

impl Harness {
    fn last_status(&self) -> Value {
        let l = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        l.iter()
            .rev()
            .find(|(m, p, _)| m == "PATCH" && p.ends_with("/status"))
            .map(|(_, _, b)| b["status"].clone())
            .unwrap_or(Value::Null)
    }

    fn requests(&self, method: &str) -> Vec<String> {
        let l = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        l.iter()
            .filter(|(m, _, _)| m == method)
            .map(|(_, p, _)| p.clone())
            .collect()
    }
}

#[tokio::test]
async fn first_sync_makes_the_sandbox_then_the_container_and_reports_running() {
    let mut h = harness(pod(json!({})));
    assert_eq!(h.worker.sync().await, Next::Continue);
    assert_eq!(
        h.fake.take_mutations(),
        [
            "RunPodSandbox attempt=0",
            "CreateContainer app attempt=0",
            "StartContainer app"
        ]
    );
    let st = h.last_status();
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["podIP"], "10.42.0.9");
    assert_eq!(st["hostIP"], "10.0.0.5");
    assert_eq!(st["qosClass"], "BestEffort");
    let cs = &st["containerStatuses"][0];
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|s| s.starts_with("fake://"))
    );
    let conds: Vec<(String, String)> = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").into(),
                c["status"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        conds.contains(&("Ready".into(), "True".into())),
        "{conds:?}"
    );
    assert!(conds.contains(&("PodReadyToStartContainers".into(), "True".into())));
    // Level-triggered: a second sync changes nothing and writes nothing new.
    let patches = h.requests("PATCH").len();
    h.worker.sync().await;
    assert!(h.fake.take_mutations().is_empty());
    assert_eq!(h.requests("PATCH").len(), patches);
}

#[tokio::test]
async fn init_containers_run_in_order_before_the_app() {
    let p = pod(json!({"spec": {"initContainers": [
        {"name": "a", "image": "img:1"}, {"name": "b", "image": "img:1"}]}}));
    let mut h = harness(p);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        [
            "RunPodSandbox attempt=0",
            "CreateContainer a attempt=0",
            "StartContainer a"
        ]
    );
    assert_eq!(
        h.last_status()["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    h.worker.sync().await;
    assert!(h.fake.take_mutations().is_empty(), "waits for a");
    h.fake.exit("a", 0);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        ["CreateContainer b attempt=0", "StartContainer b"]
    );
    h.fake.exit("b", 0);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        ["CreateContainer app attempt=0", "StartContainer app"]
    );
    assert_eq!(h.last_status()["phase"], "Running");
}

#[tokio::test]
async fn a_crashing_container_restarts_under_back_off() {
    let mut h = harness(pod(json!({})));
    h.worker.sync().await;
    h.fake.take_mutations();
    h.fake.exit("app", 1);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        ["CreateContainer app attempt=1", "StartContainer app"],
        "first restart is immediate"
    );
    h.fake.exit("app", 1);
    h.worker.sync().await;
    assert!(h.fake.take_mutations().is_empty(), "held back");
    let cs = &h.last_status()["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(
        cs["state"]["waiting"]["message"],
        "back-off 1s restarting failed container=app pod=p_default(uid1)"
    );
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(h.last_status()["phase"], "Running");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        [
            "RemoveContainer app",
            "CreateContainer app attempt=2",
            "StartContainer app"
        ],
        "the oldest dead container is collected, the last one kept"
    );
}

#[tokio::test]
async fn restart_policy_never_ends_succeeded_and_stops_the_sandbox() {
    let mut h = harness(pod(json!({"spec": {"restartPolicy": "Never"}})));
    h.worker.sync().await;
    h.fake.take_mutations();
    h.fake.exit("app", 0);
    h.worker.sync().await;
    assert_eq!(h.fake.take_mutations(), ["StopPodSandbox sb1"]);
    let st = h.last_status();
    assert_eq!(st["phase"], "Succeeded");
    assert_eq!(
        st["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[tokio::test]
async fn failed_init_container_with_never_fails_the_pod() {
    let p = pod(
        json!({"spec": {"restartPolicy": "Never", "initContainers": [{"name": "a", "image": "img:1"}]}}),
    );
    let mut h = harness(p);
    h.worker.sync().await;
    h.fake.exit("a", 2);
    h.worker.sync().await;
    assert_eq!(h.last_status()["phase"], "Failed");
}

#[tokio::test]
async fn env_comes_from_configmaps_secrets_fields_and_services() {
    let p = pod(
        json!({"spec": {"containers": [{"name": "app", "image": "img:1",
        "command": ["echo", "$(MODE)", "$$(MODE)", "$(NOPE)"],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "BOTH", "value": "$(MODE)-$(NODE)"}]}]}}),
    );
    let mut h = harness(p);
    h.worker.sync().await;
    let env: std::collections::HashMap<String, String> = h.fake.env_of("app").into_iter().collect();
    assert_eq!(env["CFG_MODE"], "fast");
    assert_eq!(env["CFG_LEVEL"], "3");
    assert_eq!(env["MODE"], "fast");
    assert_eq!(env["PASS"], "hunter2");
    assert_eq!(env["IP"], "10.42.0.9");
    assert_eq!(env["NODE"], "n1");
    assert_eq!(env["BOTH"], "fast-n1");
    assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
    assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
    assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://10.43.0.1:443");
    // Services come from the kubelet's reflector, not from a list per container start.
    let gets = h.requests("GET");
    assert!(gets.iter().all(|p| !p.contains("/services")), "{gets:?}");
}

#[tokio::test]
async fn a_missing_secret_is_a_create_container_config_error() {
    let p = pod(
        json!({"spec": {"containers": [{"name": "app", "image": "img:1",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}]}}),
    );
    let mut h = harness(p);
    h.worker.sync().await;
    let w = &h.last_status()["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(w["reason"], "CreateContainerConfigError");
    assert_eq!(w["message"], "secret \"nope\" not found");
    assert_eq!(h.last_status()["phase"], "Pending");
}

#[tokio::test]
async fn image_pull_errors_then_back_off() {
    let p = pod(json!({"spec": {"containers": [{"name": "app", "image": "missing:latest"}]}}));
    let mut h = harness(p);
    h.worker.sync().await;
    let w = h.last_status()["containerStatuses"][0]["state"]["waiting"].clone();
    assert_eq!(w["reason"], "ErrImagePull");
    h.worker.sync().await;
    let w = h.last_status()["containerStatuses"][0]["state"]["waiting"].clone();
    assert_eq!(w["reason"], "ImagePullBackOff");
    assert_eq!(w["message"], "Back-off pulling image \"missing:latest\"");
}

#[tokio::test]
async fn deletion_runs_pre_stop_stops_removes_and_deletes_the_pod() {
    let mut h = harness(pod(
        json!({"spec": {"containers": [{"name": "app", "image": "img:1",
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}}}]}}),
    ));
    h.worker.sync().await;
    h.fake.take_mutations();
    let deleting = pod(
        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 7},
        "spec": {"containers": [{"name": "app", "image": "img:1",
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}}}]}}),
    );
    h.worker.pod = Some(deleting);
    assert_eq!(h.worker.sync().await, Next::Done);
    let calls = h.fake.calls();
    let exec = calls.iter().position(|c| c == "ExecSync app sleep 1");
    let stop = calls
        .iter()
        .position(|c| c.starts_with("StopContainer app timeout=7"));
    assert!(exec.is_some() && stop.is_some() && exec < stop, "{calls:?}");
    let muts = h.fake.take_mutations();
    assert_eq!(
        &muts[muts.len() - 3..],
        [
            "StopPodSandbox sb1",
            "RemoveContainer app",
            "RemovePodSandbox sb1"
        ]
    );
    assert_eq!(h.requests("DELETE"), ["/api/v1/namespaces/default/pods/p"]);
}

#[tokio::test]
async fn a_new_worker_adopts_the_running_pod() {
    let mut h = harness(pod(json!({})));
    h.worker.sync().await;
    h.fake.take_mutations();
    let log: Log = Arc::default();
    let mut again = Worker::new(
        mock_client(log),
        config(),
        h.fake.clone(),
        "uid1".into(),
        "fake".into(),
        Some(pod(json!({}))),
        services(),
    );
    again.sync().await;
    assert!(
        h.fake.take_mutations().is_empty(),
        "no duplicate sandbox or container"
    );
}

#[tokio::test]
async fn a_vanished_pod_is_torn_down() {
    let mut h = harness(pod(json!({})));
    h.worker.sync().await;
    h.fake.take_mutations();
    h.worker.pod = None;
    assert_eq!(h.worker.sync().await, Next::Done);
    assert_eq!(
        h.fake.take_mutations(),
        [
            "StopContainer app timeout=2",
            "StopPodSandbox sb1",
            "RemoveContainer app",
            "RemovePodSandbox sb1"
        ]
    );
    assert!(h.requests("DELETE").is_empty());
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_and_readiness_gates_ready() {
    let p = pod(
        json!({"spec": {"containers": [{"name": "app", "image": "img:1",
        "livenessProbe": {"exec": {"command": ["live"]}, "periodSeconds": 1, "failureThreshold": 1},
        "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 1}}]}}),
    );
    let mut h = harness(p);
    h.fake.set_exec_exit("app", 1);
    h.worker.sync().await;
    h.fake.take_mutations();
    // The probes run at once; wait for their verdicts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.worker.sync().await;
    let st = h.last_status();
    assert_eq!(st["containerStatuses"][0]["ready"], false);
    assert_eq!(h.fake.take_mutations(), ["StopContainer app timeout=30"]);
    h.fake.set_exec_exit("app", 0);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        ["CreateContainer app attempt=1", "StartContainer app"]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.worker.sync().await;
    let st = h.last_status();
    assert_eq!(st["containerStatuses"][0]["ready"], true);
    assert_eq!(st["containerStatuses"][0]["restartCount"], 1);
}

#[tokio::test]
async fn sidecars_start_first_and_keep_running_beside_the_app() {
    let p = pod(json!({"spec": {"initContainers": [
        {"name": "side", "image": "img:1", "restartPolicy": "Always"}, {"name": "init", "image": "img:1"}]}}));
    let mut h = harness(p);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        [
            "RunPodSandbox attempt=0",
            "CreateContainer side attempt=0",
            "StartContainer side"
        ]
    );
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        ["CreateContainer init attempt=0", "StartContainer init"],
        "the sidecar started: next init"
    );
    h.fake.exit("init", 0);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        ["CreateContainer app attempt=0", "StartContainer app"]
    );
    h.fake.exit("side", 1);
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        ["CreateContainer side attempt=1", "StartContainer side"],
        "sidecars restart"
    );
    let st = h.last_status();
    assert_eq!(st["phase"], "Running");
}

#[tokio::test]
async fn an_exceeded_active_deadline_fails_the_pod() {
    let p = pod(
        json!({"spec": {"activeDeadlineSeconds": 1}, "status": {"startTime": "2020-01-01T00:00:00Z"}}),
    );
    let mut h = harness(p);
    h.worker.sync().await;
    let st = h.last_status();
    assert_eq!(st["phase"], "Failed");
    assert_eq!(st["reason"], "DeadlineExceeded");
    assert_eq!(
        st["message"],
        "Pod was active on the node longer than the specified deadline"
    );
}

#[tokio::test]
async fn a_changed_image_restarts_the_container() {
    let mut h = harness(pod(json!({})));
    h.worker.sync().await;
    h.fake.take_mutations();
    h.worker.pod = Some(pod(
        json!({"spec": {"containers": [{"name": "app", "image": "img:2", "command": ["sh"]}]}}),
    ));
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        [
            "StopContainer app timeout=30",
            "PullImage img:2",
            "CreateContainer app attempt=1",
            "StartContainer app"
        ]
    );
    h.worker.sync().await;
    assert!(h.fake.take_mutations().is_empty());
}

#[tokio::test]
async fn the_manager_adopts_bound_pods_and_removes_orphans_after_the_first_list() {
    use crate::cri::Cri;
    use kube::runtime::watcher::Event;
    let fake = Arc::new(FakeCri::with_images(&["img:1"]));
    let orphan = k8s_cri::v1::PodSandboxConfig {
        labels: [("io.kubernetes.pod.uid".to_string(), "gone".to_string())].into(),
        ..Default::default()
    };
    let _ = fake.run_pod_sandbox(orphan).await;
    fake.take_mutations();
    let log: Log = Arc::default();
    let client = mock_client(log);
    let token = tokio_util::sync::CancellationToken::new();
    let mut m = super::Manager {
        watches: crate::volumes::watches::ObjectWatches::new(client.clone(), token.clone()),
        services: services(),
        client,
        config: config(),
        cri: fake.clone(),
        runtime_name: "fake".into(),
        workers: Default::default(),
        bound: Default::default(),
        listing: Default::default(),
        synced: false,
        shutdown: token,
    };
    m.remove_orphans().await;
    assert!(
        m.workers.is_empty(),
        "nothing is an orphan before the first list"
    );
    m.on_event(Event::Init).await;
    m.on_event(Event::InitApply(pod(json!({})))).await;
    m.on_event(Event::InitDone).await;
    for _ in 0..50 {
        let calls = fake.calls();
        if calls.iter().any(|c| c == "RemovePodSandbox sb1")
            && calls.iter().any(|c| c == "StartContainer app")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c == "RemovePodSandbox sb1"),
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c == "StartContainer app"), "{calls:?}");
    m.shutdown.cancel();
}

#[tokio::test]
async fn a_startup_probe_holds_back_liveness_and_its_failure_restarts() {
    let p = pod(
        json!({"spec": {"containers": [{"name": "app", "image": "img:1",
        "startupProbe": {"exec": {"command": ["started"]}, "periodSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"exec": {"command": ["live"]}, "periodSeconds": 1, "failureThreshold": 1}}]}}),
    );
    let mut h = harness(p);
    h.fake.set_exec_exit("app", 1);
    h.worker.sync().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let execs: Vec<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("ExecSync"))
        .collect();
    assert_eq!(
        execs,
        ["ExecSync app started"],
        "liveness waits for the startup probe"
    );
    h.worker.sync().await;
    let st = h.last_status();
    assert_eq!(st["containerStatuses"][0]["started"], false);
    let muts = h.fake.take_mutations();
    assert_eq!(
        muts.last().map(String::as_str),
        Some("StopContainer app timeout=30")
    );
}

#[tokio::test]
async fn a_sync_records_upstream_events() {
    let mut h = harness(pod(json!({})));
    h.worker.sync().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let l = h.log.lock().map(|l| l.clone()).unwrap_or_default();
    let events: Vec<(String, String)> = l
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/events"))
        .map(|(_, _, b)| {
            (
                b["reason"].as_str().unwrap_or("").to_string(),
                b["note"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        events.contains(&(
            "Pulled".into(),
            "Container image \"img:1\" already present on machine".into()
        )),
        "{events:?}"
    );
    assert!(
        events.contains(&("Created".into(), "Created container: app".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("Started".into(), "Started container app".into())),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_dead_sandbox_is_replaced_and_collected_once_empty() {
    use crate::cri::Cri;
    let mut h = harness(pod(json!({})));
    h.worker.sync().await;
    let _ = h.fake.stop_pod_sandbox("sb1").await;
    h.fake.take_mutations();
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        [
            "RunPodSandbox attempt=1",
            "CreateContainer app attempt=1",
            "StartContainer app"
        ]
    );
    h.fake.exit("app", 1);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the back-off
    h.worker.sync().await; // restart: the attempt-0 container (old sandbox) is collected
    h.worker.sync().await;
    let muts = h.fake.take_mutations();
    assert!(
        muts.contains(&"RemoveContainer app".to_string()),
        "{muts:?}"
    );
    assert!(
        muts.contains(&"RemovePodSandbox sb1".to_string()),
        "{muts:?}"
    );
}
