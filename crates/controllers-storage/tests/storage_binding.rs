//! The binder and the local-path provisioner on a real API server with hollow nodes and the
//! scheduler, seen through the API and `kubectl`. Each test has its own server (volumes are
//! cluster-scoped).

use std::process::Command;
use std::time::Duration;

use k8rs_controllers_storage::{SharedInformers, localpath, pvbinder};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A server with two hollow nodes, the scheduler, the binder and the provisioner.
async fn start() -> TestServer {
    let server = TestServer::start().await;
    let (client, token) = (server.client(), server.shutdown_token());
    let hollow = k8rs_hollow::HollowConfig {
        count: 2,
        ..Default::default()
    };
    tokio::spawn(k8rs_hollow::run(client.clone(), hollow, token.clone()));
    let sched = k8rs_scheduler::SchedulerConfig::default();
    tokio::spawn(k8rs_scheduler::run(client.clone(), sched, token.clone()));
    // Both controllers share one watch and cache per type, as in the controller manager.
    let informers = SharedInformers::new(client, token.clone());
    let binder = pvbinder::PvBinderConfig::default();
    tokio::spawn(pvbinder::run(informers.clone(), binder, token.clone()));
    let lp = localpath::LocalPathConfig {
        storage_root: "/var/lib/k8rs/storage".into(),
    };
    tokio::spawn(localpath::run(informers, lp, token));
    server
}

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid fixture")
}

fn claim(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    });
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    from(json!({"metadata": {"name": name}, "spec": spec}))
}

fn pv_phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref()?.phase.as_deref()
}

fn pvc_phase(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.status.as_ref()?.phase.as_deref()
}

async fn pv_in_phase(pvs: &Api<PersistentVolume>, name: &str, phase: &str) -> PersistentVolume {
    eventually(&format!("pv {name} {phase}"), WAIT, || async {
        let pv = pvs.get_opt(name).await.ok()??;
        (pv_phase(&pv) == Some(phase)).then_some(pv)
    })
    .await
}

async fn claim_bound(pvcs: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    eventually(&format!("pvc {name} Bound"), WAIT, || async {
        let pvc = pvcs.get_opt(name).await.ok()??;
        (pvc_phase(&pvc) == Some("Bound")).then_some(pvc)
    })
    .await
}

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_volume_binds_and_is_released_with_retain() {
    let server = start().await;
    let client = server.client();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, "default");
    let pv = |name: &str, size: &str| -> PersistentVolume {
        from(json!({
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/tmp/{name}")},
            },
        }))
    };
    let pp = PostParams::default();
    pvs.create(&pp, &pv("big", "10Gi"))
        .await
        .expect("create pv");
    pvs.create(&pp, &pv("fit", "2Gi")).await.expect("create pv");
    // Only Available volumes are matched: wait for both, so the smallest fit is certain.
    pv_in_phase(&pvs, "big", "Available").await;
    pv_in_phase(&pvs, "fit", "Available").await;
    pvcs.create(&pp, &claim("data", Some("")))
        .await
        .expect("create pvc");

    let pvc = claim_bound(&pvcs, "data").await;
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("fit")
    );
    let bound = pv_in_phase(&pvs, "fit", "Bound").await;
    let claim_ref = bound.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    assert_eq!(claim_ref.and_then(|r| r.uid.clone()), pvc.metadata.uid);
    pv_in_phase(&pvs, "big", "Available").await;
    let out = kubectl(&server, &["get", "pv,pvc", "--no-headers"]);
    let bound_rows: Vec<&str> = out.lines().filter(|l| l.contains("Bound")).collect();
    assert_eq!(bound_rows.len(), 2, "{out}");
    assert!(bound_rows[0].contains("default/data"), "{out}");

    pvcs.delete("data", &DeleteParams::default())
        .await
        .expect("delete pvc");
    let released = pv_in_phase(&pvs, "fit", "Released").await;
    assert!(
        released
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some(),
        "a retained volume keeps its claimRef"
    );
}

async fn reasons(events: &Api<Event>, object: &str) -> Vec<String> {
    let list = events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_first_consumer_provisions_on_the_pods_node_and_deletes_on_release() {
    let server = start().await;
    let client = server.client();
    localpath::ensure_default_storage_class(client.clone())
        .await
        .expect("default class");
    localpath::ensure_default_storage_class(client.clone())
        .await
        .expect("idempotent");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client, "default");
    let pp = PostParams::default();
    let created = pvcs
        .create(&pp, &claim("data", None))
        .await
        .expect("create pvc");
    let class = created
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone());
    assert_eq!(class.as_deref(), Some("local-path"), "DefaultStorageClass");

    eventually("WaitForFirstConsumer event", WAIT, || async {
        reasons(&events, "data")
            .await
            .iter()
            .any(|r| r == "WaitForFirstConsumer")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pending = pvcs.get("data").await.expect("get pvc");
    assert_eq!(pvc_phase(&pending), Some("Pending"));
    assert!(
        pvs.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );

    let pod: Pod = from(json!({
        "metadata": {"name": "user"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox",
                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }));
    pods.create(&pp, &pod).await.expect("create pod");
    let node = eventually("pod scheduled", WAIT, || async {
        pods.get("user").await.ok()?.spec?.node_name
    })
    .await;

    let pvc = claim_bound(&pvcs, "data").await;
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some(name.as_str())
    );
    let pv = pv_in_phase(&pvs, &name, "Bound").await;
    let spec = pv.spec.clone().unwrap_or_default();
    let affinity = serde_json::to_value(&spec.node_affinity).expect("json");
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!([node])
    );
    assert_eq!(
        spec.host_path.map(|h| h.path),
        Some(format!("/var/lib/k8rs/storage/{name}_default_data"))
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    let seen = reasons(&events, "data").await;
    for want in [
        "ExternalProvisioning",
        "Provisioning",
        "ProvisioningSucceeded",
    ] {
        assert!(seen.iter().any(|r| r == want), "{want} in {seen:?}");
    }

    pods.delete("user", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    pvcs.delete("data", &DeleteParams::default())
        .await
        .expect("delete pvc");
    eventually("provisioned volume deleted", WAIT, || async {
        pvs.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
}
