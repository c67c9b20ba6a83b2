//! The worker with volumes, against the recording fake CRI, a fake mounter and a mock API: the
//! exact CRI mounts of a pod with every volume type, FailedMount for an unbound claim, and
//! clean-up at teardown.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::worker::{Next, Worker};
use crate::KubeletConfig;
use crate::testing::FakeCri;
use crate::volumes::{FakeMounter, PodVolumes};

type Log = Arc<Mutex<Vec<(String, String, String)>>>;

fn answer(method: &str, path: &str, bound: bool, pv_dir: &str) -> (u16, Value) {
    let ns = "/api/v1/namespaces/default";
    let not_found = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404});
    match (method, path.strip_prefix(ns).unwrap_or(path)) {
        ("GET", "/configmaps/cfg") => (
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                   "data": {"MODE": "fast", "ca.crt": "CA"}}),
        ),
        ("GET", "/secrets/creds") => (
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                   "data": {"password": "aHVudGVyMg=="}}),
        ),
        ("POST", "/serviceaccounts/default/token") => (
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"name": "default"}, "spec": {"audiences": []},
                   "status": {"token": "tok-1", "expirationTimestamp": "2099-01-01T00:00:00Z"}}),
        ),
        ("GET", "/persistentvolumeclaims/data") => (
            200,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                   "spec": {"volumeName": if bound { "pv1" } else { "" }},
                   "status": {"phase": if bound { "Bound" } else { "Pending" }}}),
        ),
        ("GET", "/api/v1/persistentvolumes/pv1") => (
            200,
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
                   "spec": {"hostPath": {"path": pv_dir, "type": "DirectoryOrCreate"}}}),
        ),
        ("GET", _) => (404, not_found),
        _ => (
            200,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}),
        ),
    }
}

fn mock_client(log: Log, bound: Arc<AtomicBool>, pv_dir: String) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (log, bound, pv_dir) = (log.clone(), bound.clone(), pv_dir.clone());
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            if let Ok(mut l) = log.lock() {
                l.push((method.clone(), path.clone(), body));
            }
            let (code, resp) = answer(&method, &path, bound.load(Ordering::SeqCst), &pv_dir);
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

fn volume_pod(host_dir: &str) -> Pod {
    let mounts = json!([
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "mem", "mountPath": "/mem"},
        {"name": "host", "mountPath": "/host", "readOnly": true},
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "sec", "mountPath": "/etc/sec"},
        {"name": "info", "mountPath": "/etc/info"},
        {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
        {"name": "data", "mountPath": "/data", "subPath": "app"}
    ]);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "uidv", "resourceVersion": "1"},
        "spec": {
            "nodeName": "n1", "serviceAccountName": "default",
            "containers": [{"name": "app", "image": "img:1", "volumeMounts": mounts}],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "host", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}},
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "MODE", "path": "mode"}]}},
                {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "cfg", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
            ]
        },
        "status": {"phase": "Pending"}
    }))
    .unwrap_or_default()
}

struct Harness {
    fake: Arc<FakeCri>,
    mounter: Arc<FakeMounter>,
    log: Log,
    bound: Arc<AtomicBool>,
    worker: Worker,
    dir: tempfile::TempDir,
}

fn harness(bound: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let fake = Arc::new(FakeCri::with_images(&["img:1"]));
    let log: Log = Arc::default();
    let bound = Arc::new(AtomicBool::new(bound));
    let pv_dir = d.join("pv1").to_string_lossy().into_owned();
    let client = mock_client(log.clone(), bound.clone(), pv_dir);
    let ip = std::net::IpAddr::from([10, 0, 0, 5]);
    let config = Arc::new(KubeletConfig::new("n1", ip, "/x.sock", d.join("kubelet")));
    let pod = volume_pod(&d.join("host").to_string_lossy());
    let mut worker = Worker::new(
        client,
        config,
        fake.clone(),
        "uidv".into(),
        "fake".into(),
        Some(pod),
        super::services::Services::fixed(Vec::new()),
    );
    let mounter = Arc::new(FakeMounter::default());
    worker.volumes = PodVolumes::new(mounter.clone());
    Harness {
        fake,
        mounter,
        log,
        bound,
        worker,
        dir,
    }
}

fn mount(container_path: &str, host: &Path, readonly: bool) -> cri::Mount {
    cri::Mount {
        container_path: container_path.into(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        ..Default::default()
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[tokio::test]
async fn every_volume_type_becomes_the_exact_cri_mounts() {
    let mut h = harness(true);
    assert_eq!(h.worker.sync().await, Next::Continue);
    assert_eq!(
        h.fake.take_mutations(),
        [
            "RunPodSandbox attempt=0",
            "CreateContainer app attempt=0",
            "StartContainer app"
        ]
    );
    let d = h.dir.path();
    let vols = d.join("kubelet/pods/uidv/volumes");
    let sa = vols.join("kubernetes.io~projected/kube-api-access-abcde");
    let mut got = h.fake.mounts_of("app");
    let term = got.pop().unwrap_or_default();
    assert_eq!(term.container_path, "/dev/termination-log");
    let want = vec![
        mount(
            "/scratch",
            &vols.join("kubernetes.io~empty-dir/scratch"),
            false,
        ),
        mount("/mem", &vols.join("kubernetes.io~empty-dir/mem"), false),
        mount("/host", &d.join("host"), true),
        mount("/etc/cfg", &vols.join("kubernetes.io~configmap/cfg"), true),
        mount("/etc/sec", &vols.join("kubernetes.io~secret/sec"), true),
        mount(
            "/etc/info",
            &vols.join("kubernetes.io~downward-api/info"),
            true,
        ),
        mount("/var/run/secrets/kubernetes.io/serviceaccount", &sa, true),
        mount("/data", &d.join("pv1/app"), false),
    ];
    assert_eq!(got, want);

    // Files, modes, and what is memory-backed.
    assert_eq!(read(&vols.join("kubernetes.io~configmap/cfg/mode")), "fast");
    let pw = vols.join("kubernetes.io~secret/sec/password");
    assert_eq!(read(&pw), "hunter2");
    let mode = std::fs::metadata(&pw).map(|m| m.permissions().mode() & 0o7777);
    assert_eq!(mode.unwrap_or(0), 0o400);
    assert_eq!(
        read(&vols.join("kubernetes.io~downward-api/info/name")),
        "p"
    );
    assert_eq!(read(&sa.join("token")), "tok-1");
    assert_eq!(read(&sa.join("ca.crt")), "CA");
    assert_eq!(read(&sa.join("namespace")), "default");
    assert!(d.join("host").is_dir() && d.join("pv1/app").is_dir());
    let tmpfs: Vec<String> = h.mounter.calls();
    let shown = |rel: &str| format!("{}", vols.join(rel).display());
    let mut want_tmpfs = vec![format!(
        "tmpfs {} size=Some(67108864)",
        shown("kubernetes.io~empty-dir/mem")
    )];
    for rel in [
        "kubernetes.io~secret/sec",
        "kubernetes.io~downward-api/info",
        "kubernetes.io~projected/kube-api-access-abcde",
    ] {
        want_tmpfs.push(format!("tmpfs {} size=None", shown(rel)));
    }
    assert_eq!(tmpfs, want_tmpfs);
    let mounted = want_tmpfs.len();
    let token_requests: Vec<String> = h
        .log
        .lock()
        .map(|l| {
            l.iter()
                .filter(|(m, p, _)| m == "POST" && p.ends_with("/token"))
                .map(|(_, _, b)| b.clone())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(token_requests.len(), 1);
    let req: Value = serde_json::from_str(&token_requests[0]).unwrap_or_default();
    assert_eq!(
        req["spec"]["boundObjectRef"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "uidv"})
    );
    assert_eq!(req["spec"]["expirationSeconds"], 3607);

    // Teardown unmounts the memory-backed volumes and removes the pod's directory.
    h.worker.pod = None;
    assert_eq!(h.worker.sync().await, Next::Done);
    let calls = h.mounter.calls();
    let unmounts = calls.iter().filter(|c| c.starts_with("unmount")).count();
    assert_eq!(unmounts, mounted);
    assert!(!vols.exists());
    assert!(d.join("pv1/app").is_dir(), "persistent data stays");
}

#[tokio::test]
async fn an_unbound_claim_is_a_failed_mount_until_bound() {
    let mut h = harness(false);
    h.worker.sync().await;
    assert!(
        h.fake.take_mutations().is_empty(),
        "nothing starts before the volumes are ready"
    );
    let status = h.worker.last_written.clone().unwrap_or_default();
    let cs = status.container_statuses.unwrap_or_default();
    let waiting = cs
        .first()
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    assert_eq!(waiting.as_deref(), Some("ContainerCreating"));
    let event = k8rs_wait_event(&h.log, "FailedMount").await;
    assert!(
        event.contains("MountVolume.SetUp failed for volume \\\"data\\\" : persistentvolumeclaim \\\"data\\\" not bound"),
        "{event}"
    );
    // Bound now: the retry (after RETRY) mounts it and the pod starts.
    h.bound.store(true, Ordering::SeqCst);
    tokio::time::sleep(crate::volumes::RETRY).await;
    h.worker.sync().await;
    assert_eq!(
        h.fake.take_mutations(),
        [
            "RunPodSandbox attempt=0",
            "CreateContainer app attempt=0",
            "StartContainer app"
        ]
    );
}

/// Waits (bounded) for an event POST whose body mentions `reason`; its body.
async fn k8rs_wait_event(log: &Log, reason: &str) -> String {
    for _ in 0..100 {
        let found = log.lock().ok().and_then(|l| {
            l.iter()
                .find(|(m, p, b)| m == "POST" && p.contains("events") && b.contains(reason))
                .map(|(_, _, b)| b.clone())
        });
        if let Some(b) = found {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    String::new()
}

/// The filesystem type mounted on `path` (the topmost mount), from mountinfo.
fn fs_type(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    info.lines().rev().find_map(|l| {
        let (fields, rest) = l.split_once(" - ")?;
        (fields.split(' ').nth(4)? == want).then(|| rest.split(' ').next().map(str::to_string))?
    })
}

/// Unmounts whatever a failed test left under its directory.
struct Unmounts<'a>(&'a Path);

impl Drop for Unmounts<'_> {
    fn drop(&mut self) {
        crate::volumes::unmount_under(self.0);
    }
}

#[tokio::test]
async fn secrets_and_tokens_are_tmpfs_mounts_until_teardown() {
    let mut h = harness(true);
    h.worker.volumes = PodVolumes::new(Arc::new(crate::volumes::SysMounter));
    let d = h.dir.path().to_path_buf();
    let _cleanup = Unmounts(&d);
    h.worker.sync().await;
    let vols = d.join("kubelet/pods/uidv/volumes");
    for rel in [
        "kubernetes.io~secret/sec",
        "kubernetes.io~downward-api/info",
        "kubernetes.io~projected/kube-api-access-abcde",
        "kubernetes.io~empty-dir/mem",
    ] {
        assert_eq!(fs_type(&vols.join(rel)).as_deref(), Some("tmpfs"), "{rel}");
    }
    assert_eq!(fs_type(&vols.join("kubernetes.io~configmap/cfg")), None);
    assert_eq!(
        read(&vols.join("kubernetes.io~secret/sec/password")),
        "hunter2"
    );
    let sa = vols.join("kubernetes.io~projected/kube-api-access-abcde/token");
    assert_eq!(read(&sa), "tok-1");

    // A re-sync writes into the same mounts (no second tmpfs on top).
    h.worker.volumes.expire();
    h.worker.sync().await;
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let under = |info: &str| {
        info.lines()
            .filter(|l| l.contains(d.to_str().unwrap_or("?")))
            .count()
    };
    assert_eq!(under(&info), 4, "{info}");

    h.worker.pod = None;
    assert_eq!(h.worker.sync().await, Next::Done);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert_eq!(under(&info), 0, "{info}");
    assert!(!vols.exists());
}
