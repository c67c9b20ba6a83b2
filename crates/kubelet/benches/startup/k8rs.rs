//! The k8rs side: pods created through the API server, started by the kubelet, and seen
//! Running by a watcher of the bench's own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use k8rs_kubelet::cri::{Cri, GrpcCri, pod_filter};

use super::common::IMAGE;

pub const WAIT: Duration = Duration::from_secs(120);

/// When the bench's watcher first saw each pod, and first saw it Running.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub added: Option<Instant>,
    pub running: Option<Instant>,
}

type SeenMap = Arc<Mutex<HashMap<String, Seen>>>;

/// One k8rs pod's timings.
#[derive(Clone, Debug)]
pub struct Sample {
    pub uid: String,
    /// The create call started and returned.
    pub t0: Instant,
    pub created: Instant,
    /// The bench's watcher saw it (any state), and saw it Running.
    pub added: Instant,
    pub running: Instant,
}

impl Sample {
    pub fn latency(&self) -> Duration {
        self.running.saturating_duration_since(self.t0)
    }
}

/// The pod spec both sides run: busybox `sleep` under a shell that exits on SIGTERM, so that
/// teardown does not wait out a grace period.
pub fn pod(name: &str, node: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "startup-bench"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                 "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}
    }))?)
}

/// The API side of the bench.
#[derive(Clone)]
pub struct K8rs {
    pub pods: Api<Pod>,
    pub node: String,
    seen: SeenMap,
    /// A plain CRI client to check teardown.
    cri: GrpcCri,
}

impl K8rs {
    /// Starts the bench's watcher of namespace `default`.
    pub fn new(client: kube::Client, node: &str, cri: GrpcCri) -> K8rs {
        let seen: SeenMap = Arc::default();
        let out = seen.clone();
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let api = pods.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(e) = events.next().await {
                let p = match e {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                    _ => continue,
                };
                let now = Instant::now();
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if let (Some(n), Ok(mut m)) = (p.metadata.name, out.lock()) {
                    let s = m.entry(n).or_default();
                    s.added.get_or_insert(now);
                    if running {
                        s.running.get_or_insert(now);
                    }
                }
            }
        });
        K8rs {
            pods,
            node: node.to_string(),
            seen,
            cri,
        }
    }

    fn seen(&self, name: &str) -> Seen {
        self.seen
            .lock()
            .ok()
            .and_then(|m| m.get(name).copied())
            .unwrap_or_default()
    }

    /// Creates pod `name` and waits until the watcher sees it Running.
    pub async fn start(&self, name: &str) -> anyhow::Result<Sample> {
        let pod = pod(name, &self.node)?;
        let t0 = Instant::now();
        let made = self.pods.create(&PostParams::default(), &pod).await?;
        let created = Instant::now();
        let uid = made.metadata.uid.unwrap_or_default();
        let deadline = t0 + WAIT;
        loop {
            let s = self.seen(name);
            if let (Some(added), Some(running)) = (s.added, s.running) {
                return Ok(Sample {
                    uid,
                    t0,
                    created,
                    added,
                    running,
                });
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} not Running within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Deletes the pods (gracefully) and waits until the kubelet has removed them from the API
    /// and the runtime.
    pub async fn remove(&self, samples: &[(String, Sample)]) -> anyhow::Result<()> {
        for (name, _) in samples {
            self.pods.delete(name, &DeleteParams::default()).await?;
        }
        let deadline = Instant::now() + WAIT;
        for (name, s) in samples {
            loop {
                let gone = self.pods.get_opt(name).await?.is_none()
                    && self
                        .cri
                        .list_pod_sandboxes(pod_filter(&s.uid))
                        .await?
                        .is_empty();
                if gone {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{name} not removed within {WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }
}

pub async fn wait_node_ready(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let ready = nodes.get_opt(name).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("node {name} not Ready within {WAIT:?}")
}
