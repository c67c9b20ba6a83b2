//! A cluster for the workload controller tests: the real API server in-process, hollow nodes,
//! the scheduler and the controllers under test, plus `kubectl` against it.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use k8rs_controllers_apps::SharedInformers;
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How long a test waits for the cluster to converge.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub server: TestServer,
    pub client: kube::Client,
    pub shutdown: CancellationToken,
    /// The informers the controllers under test share, as in the controller manager.
    pub informers: SharedInformers,
}

impl Cluster {
    /// A server with `nodes` hollow nodes (`node-0`...) and the scheduler.
    pub async fn start(nodes: usize) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "k8rs_controllers_apps=info".into()),
            )
            .with_test_writer()
            .try_init();
        let server = TestServer::start().await;
        let client = server.client();
        let shutdown = server.shutdown_token();
        let config = k8rs_hollow::HollowConfig {
            count: nodes,
            name_prefix: "node-".into(),
            ..Default::default()
        };
        tokio::spawn(k8rs_hollow::run(client.clone(), config, shutdown.clone()));
        let sched = k8rs_scheduler::SchedulerConfig {
            leader_election: false,
            ..Default::default()
        };
        tokio::spawn(k8rs_scheduler::run(client.clone(), sched, shutdown.clone()));
        tokio::spawn(assign_pod_cidrs(client.clone(), shutdown.clone()));
        let informers = SharedInformers::new(client.clone(), shutdown.clone());
        Cluster {
            server,
            client,
            shutdown,
            informers,
        }
    }

    /// Creates namespace `ns`.
    pub async fn namespace(&self, ns: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let obj = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create namespace");
    }

    /// Runs kubectl against the server; returns stdout, panicking with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_raw(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kubectl_raw(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Applies a manifest with `kubectl apply -f -`.
    pub fn apply(&self, manifest: &serde_json::Value) -> String {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .args(["apply", "--validate=false", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(manifest.to_string().as_bytes())
                .expect("write manifest");
        }
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pods of `ns` matching `selector`, without those being deleted.
    pub async fn pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Waits until exactly `n` pods match, all Running and Ready; returns them.
    pub async fn running_pods(&self, ns: &str, selector: &str, n: usize) -> Vec<Pod> {
        eventually(
            &format!("{n} ready pods {selector} in {ns}"),
            WAIT,
            || async {
                let pods = self.pods(ns, selector).await;
                (pods.len() == n && pods.iter().all(ready)).then_some(pods)
            },
        )
        .await
    }
}

/// Gives each node a podCIDR (what node IPAM does; kept here so these tests depend only on the
/// components they exercise).
async fn assign_pod_cidrs(client: kube::Client, shutdown: CancellationToken) {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Patch, PatchParams};
    let nodes: Api<Node> = Api::all(client);
    while !shutdown.is_cancelled() {
        for node in nodes
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let name = node.metadata.name.clone().unwrap_or_default();
            let has = node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_ref())
                .is_some();
            let index: Option<u8> = name.rsplit('-').next().and_then(|i| i.parse().ok());
            if let (false, Some(i)) = (has, index) {
                let cidr = format!("10.42.{i}.0/24");
                let body = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
                let _ = nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod template labelled `app: APP`.
pub fn template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}
    })
}
