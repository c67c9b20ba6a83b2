//! The resource quota controller against the real API server: usage follows pods, config maps
//! and services as they come and go, and `kubectl describe quota` / `get quota` show it as
//! upstream.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers::resourcequota::{self, ResourceQuotaConfig};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const NS: &str = "quota-test";
const WAIT: Duration = Duration::from_secs(30);

async fn create<K>(api: &Api<K>, body: Value)
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "resources": {
                "requests": {"cpu": cpu, "memory": memory},
                "limits": {"memory": "1Gi"},
            },
        }]},
    })
}

fn used(q: &ResourceQuota) -> BTreeMap<String, String> {
    let used = q.status.as_ref().and_then(|s| s.used.clone());
    used.into_iter().flatten().map(|(k, v)| (k, v.0)).collect()
}

/// Waits until the quota's used equals `want`; how long that took.
async fn wait_used(quotas: &Api<ResourceQuota>, want: &[(&str, &str)]) -> Duration {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let start = Instant::now();
    eventually(&format!("used = {want:?}"), WAIT, || async {
        let q = quotas.get("compute").await.ok()?;
        (used(&q) == want).then_some(())
    })
    .await;
    start.elapsed()
}

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of `describe quota` as their whitespace-separated cells.
fn rows(describe: &str) -> Vec<Vec<String>> {
    describe
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_follows_pods_configmaps_and_services() {
    let server = TestServer::start().await;
    let client = server.client();
    tokio::spawn(resourcequota::run(
        SharedInformers::new(client.clone(), server.shutdown_token()),
        ResourceQuotaConfig::default(),
        server.shutdown_token(),
    ));
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": NS}}),
    )
    .await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), NS);
    create(
        &quotas,
        json!({
            "metadata": {"name": "compute", "namespace": NS},
            "spec": {"hard": {
                "pods": "5", "requests.cpu": "2", "requests.memory": "2Gi",
                "limits.memory": "4Gi", "configmaps": "5", "count/configmaps": "5",
                "services": "3", "services.nodeports": "2",
            }},
        }),
    )
    .await;
    wait_used(
        &quotas,
        &[
            ("configmaps", "0"),
            ("count/configmaps", "0"),
            ("limits.memory", "0"),
            ("pods", "0"),
            ("requests.cpu", "0"),
            ("requests.memory", "0"),
            ("services", "0"),
            ("services.nodeports", "0"),
        ],
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    create(&pods, pod("a", "500m", "512Mi")).await;
    create(&pods, pod("b", "250m", "256Mi")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    for name in ["one", "two"] {
        create(&cms, json!({"metadata": {"name": name, "namespace": NS}})).await;
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    create(
        &svcs,
        json!({"metadata": {"name": "np", "namespace": NS},
               "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    )
    .await;
    create(
        &svcs,
        json!({"metadata": {"name": "cip", "namespace": NS},
               "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let took = wait_used(
        &quotas,
        &[
            ("configmaps", "2"),
            ("count/configmaps", "2"),
            ("limits.memory", "2Gi"),
            ("pods", "2"),
            ("requests.cpu", "750m"),
            ("requests.memory", "768Mi"),
            ("services", "2"),
            ("services.nodeports", "1"),
        ],
    )
    .await;
    assert!(took < Duration::from_secs(3), "usage took {took:?}");

    let describe = rows(&kubectl(
        &server,
        &["describe", "quota", "compute", "-n", NS],
    ));
    for row in [
        ["Resource", "Used", "Hard"],
        ["configmaps", "2", "5"],
        ["limits.memory", "2Gi", "4Gi"],
        ["pods", "2", "5"],
        ["requests.cpu", "750m", "2"],
        ["requests.memory", "768Mi", "2Gi"],
        ["services", "2", "3"],
        ["services.nodeports", "1", "2"],
    ] {
        assert!(
            describe.iter().any(|r| r == &row),
            "no row {row:?} in {describe:?}"
        );
    }
    let get = kubectl(&server, &["get", "quota", "-n", NS]);
    assert!(get.contains("pods: 2/5"), "{get}");

    // A finished pod and a deleted config map are no longer charged.
    let done = json!({"status": {"phase": "Succeeded"}});
    pods.patch_status("a", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .expect("finish pod");
    cms.delete("one", &DeleteParams::default())
        .await
        .expect("delete config map");
    let took = wait_used(
        &quotas,
        &[
            ("configmaps", "1"),
            ("count/configmaps", "1"),
            ("limits.memory", "1Gi"),
            ("pods", "1"),
            ("requests.cpu", "250m"),
            ("requests.memory", "256Mi"),
            ("services", "2"),
            ("services.nodeports", "1"),
        ],
    )
    .await;
    assert!(took < Duration::from_secs(3), "replenishment took {took:?}");
    let describe = rows(&kubectl(
        &server,
        &["describe", "quota", "compute", "-n", NS],
    ));
    assert!(describe.iter().any(|r| r == &["requests.cpu", "250m", "2"]));
}
