//! The node's own object: registration with the well-known labels, status (capacity from the
//! host, allocatable net of the eviction thresholds, addresses, nodeInfo, images, the pressure
//! and Ready conditions) written when it changes or every report period, and the node Lease in
//! `kube-node-lease` renewed every 10 s.

mod host;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use host::HostInfo;

use crate::KubeletConfig;
use crate::cri::{Cri, Image};

/// The kubelet version reported in `nodeInfo.kubeletVersion`.
pub const KUBELET_VERSION: &str = "v1.33.0-k8rs";
/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `spec.leaseDurationSeconds` of the node Lease, as upstream.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The kubelet's port, reported in `daemonEndpoints`.
pub const KUBELET_PORT: i32 = 10250;
/// The eviction threshold `memory.available<100Mi`.
pub const EVICTION_MEMORY_BYTES: u64 = 100 << 20;
/// The eviction threshold `nodefs.available<10%`.
pub const EVICTION_NODEFS_PERCENT: u64 = 10;
/// Pods per node.
pub const MAX_PODS: u32 = 110;
/// At most this many images in `status.images` (upstream's default).
pub const MAX_IMAGES: usize = 50;

/// What the node status is computed from, read at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub host: HostInfo,
    /// `runtime_name://runtime_version`, or `None` when the runtime does not answer.
    pub runtime_version: Option<String>,
    pub images: Vec<Image>,
}

/// The node's labels.
pub fn node_labels(config: &KubeletConfig) -> BTreeMap<String, String> {
    let arch = go_arch();
    let mut labels = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            config.node_name.clone(),
        ),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch.to_string()),
    ]);
    if config.control_plane {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            String::new(),
        );
    }
    labels.extend(config.node_labels.clone());
    labels
}

/// Go's name for this machine's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn quantity(v: impl ToString) -> Quantity {
    Quantity(v.to_string())
}

/// Capacity and allocatable (capacity less the hard eviction thresholds).
pub fn resources(host: &HostInfo) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), quantity(host.cpus)),
        (
            "memory".to_string(),
            quantity(format!("{}Ki", host.memory_bytes / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            quantity(format!("{}Ki", host.storage_bytes / 1024)),
        ),
        ("pods".to_string(), quantity(MAX_PODS)),
    ]);
    let memory = host.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES);
    let storage = host.storage_bytes - host.storage_bytes * EVICTION_NODEFS_PERCENT / 100;
    let allocatable = BTreeMap::from([
        ("cpu".to_string(), quantity(host.cpus)),
        (
            "memory".to_string(),
            quantity(format!("{}Ki", memory / 1024)),
        ),
        ("ephemeral-storage".to_string(), quantity(storage)),
        ("pods".to_string(), quantity(MAX_PODS)),
    ]);
    (capacity, allocatable)
}

struct Cond {
    kind: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

fn desired_conditions(observed: &Observed) -> Vec<Cond> {
    let h = &observed.host;
    let mem = h.memory_available_bytes < EVICTION_MEMORY_BYTES;
    let disk = h.storage_bytes > 0
        && h.storage_available_bytes * 100 < h.storage_bytes * EVICTION_NODEFS_PERCENT;
    let pid = h.pid_max > 0 && h.pids_in_use * 100 > h.pid_max * 90;
    let pair = |kind, status, yes: (&'static str, &str), no: (&'static str, &str)| {
        let (reason, message) = if status { yes } else { no };
        Cond {
            kind,
            status,
            reason,
            message: message.to_string(),
        }
    };
    let mut conds = vec![
        pair(
            "MemoryPressure",
            mem,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        pair(
            "DiskPressure",
            disk,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        pair(
            "PIDPressure",
            pid,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
    ];
    conds.push(match observed.runtime_version {
        Some(_) => pair(
            "Ready",
            true,
            ("KubeletReady", "kubelet is posting ready status"),
            ("", ""),
        ),
        None => pair(
            "Ready",
            false,
            ("", ""),
            ("KubeletNotReady", "container runtime is down"),
        ),
    });
    conds
}

fn conditions(
    observed: &Observed,
    previous: &[NodeCondition],
    now: DateTime<Utc>,
) -> Vec<NodeCondition> {
    desired_conditions(observed)
        .into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let prev = previous.iter().find(|p| p.type_ == c.kind);
            let transition = match prev {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Some(Time(to_ts(now))),
            };
            NodeCondition {
                type_: c.kind.to_string(),
                status: status.to_string(),
                reason: Some(c.reason.to_string()),
                message: Some(c.message),
                last_heartbeat_time: Some(Time(to_ts(now))),
                last_transition_time: transition,
            }
        })
        .collect()
}

/// A chrono time as the API's timestamp type.
pub fn to_ts(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

fn images(images: &[Image]) -> Vec<ContainerImage> {
    let mut out: Vec<ContainerImage> = images
        .iter()
        .map(|i| ContainerImage {
            names: Some(i.repo_digests.iter().chain(&i.repo_tags).cloned().collect()),
            size_bytes: i64::try_from(i.size).ok(),
        })
        .collect();
    out.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    out.truncate(MAX_IMAGES);
    out
}

/// The node's whole status at `now`, keeping the transition times of unchanged conditions.
pub fn node_status(
    config: &KubeletConfig,
    observed: &Observed,
    previous: &[NodeCondition],
    now: DateTime<Utc>,
) -> NodeStatus {
    let (capacity, allocatable) = resources(&observed.host);
    let h = &observed.host;
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions(observed, previous, now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.server_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            operating_system: "linux".into(),
            kernel_version: h.kernel_version.clone(),
            os_image: h.os_image.clone(),
            boot_id: h.boot_id.clone(),
            machine_id: h.machine_id.clone(),
            system_uuid: h.system_uuid.clone(),
            container_runtime_version: observed.runtime_version.clone().unwrap_or_default(),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            ..Default::default()
        }),
        images: Some(images(&observed.images)),
        ..Default::default()
    }
}

/// The status with heartbeat times blanked: what decides whether a write is due.
fn comparable(status: &NodeStatus) -> NodeStatus {
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
    }
    s
}

/// The node object to register.
pub fn node_object(config: &KubeletConfig, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(node_labels(config)),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        },
        spec: None,
        status: Some(status),
    }
}

async fn observe(config: &KubeletConfig, cri: &dyn Cri) -> Observed {
    let runtime_version = cri
        .version()
        .await
        .ok()
        .map(|v| format!("{}://{}", v.runtime_name, v.runtime_version));
    let images = cri.list_images().await.unwrap_or_default();
    Observed {
        host: HostInfo::read(&config.data_dir),
        runtime_version,
        images,
    }
}

fn api_err(op: &'static str) -> impl FnOnce(kube::Error) -> crate::Error {
    move |e| crate::Error::Api {
        op,
        source: Box::new(e),
    }
}

/// Creates the Node, or brings an existing one's labels and status up to date.
async fn register(
    nodes: &Api<Node>,
    config: &KubeletConfig,
    status: NodeStatus,
) -> Result<Node, crate::Error> {
    let node = node_object(config, status.clone());
    match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => Ok(n),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let labels = json!({"metadata": {"labels": node_labels(config)}});
            let params = PatchParams::default();
            nodes
                .patch(&config.node_name, &params, &Patch::Merge(&labels))
                .await
                .map_err(api_err("patching the node's labels"))?;
            nodes
                .patch_status(
                    &config.node_name,
                    &params,
                    &Patch::Merge(json!({"status": status})),
                )
                .await
                .map_err(api_err("updating the node's status"))
        }
        Err(e) => Err(api_err("registering the node")(e)),
    }
}

/// Registers the node (retrying until it works), then keeps its status and Lease fresh.
pub async fn run(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    cri: Arc<dyn Cri>,
    shutdown: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut wait = Duration::from_millis(200);
    let node = loop {
        let observed = observe(&config, cri.as_ref()).await;
        let status = node_status(&config, &observed, &[], Utc::now());
        match register(&nodes, &config, status).await {
            Ok(node) => break node,
            Err(err) => tracing::warn!(%err, "registering the node failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    };
    tracing::info!(node = %config.node_name, "node registered");
    let uid = node.metadata.uid.clone().unwrap_or_default();
    report_pod_cidr(&config, &node, &mut None);
    let lease = tokio::spawn(lease_loop(client, config.clone(), uid, shutdown.clone()));
    status_loop(&nodes, &config, cri.as_ref(), node, &shutdown).await;
    let _ = lease.await;
}

fn report_pod_cidr(config: &KubeletConfig, node: &Node, last: &mut Option<String>) {
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    if cidr.is_some() && cidr != *last {
        if let (Some(cb), Some(c)) = (&config.on_pod_cidr, &cidr) {
            cb(c);
        }
        *last = cidr;
    }
}

async fn status_loop(
    nodes: &Api<Node>,
    config: &KubeletConfig,
    cri: &dyn Cri,
    node: Node,
    shutdown: &CancellationToken,
) {
    let mut last_cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    let mut written = node.status.clone().unwrap_or_default();
    let mut written_at = tokio::time::Instant::now();
    loop {
        // Until the node has a podCIDR (and so a CNI configuration), look every second: pods
        // cannot get a network before that.
        let period = if last_cidr.is_none() {
            config
                .status_update_period
                .min(std::time::Duration::from_secs(1))
        } else {
            config.status_update_period
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let current = match nodes.get(&config.node_name).await {
            Ok(n) => n,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::warn!("the node object is gone; registering again");
                let observed = observe(config, cri).await;
                let status = node_status(config, &observed, &[], Utc::now());
                if let Err(err) = register(nodes, config, status).await {
                    tracing::warn!(%err, "registering the node again failed");
                }
                continue;
            }
            Err(err) => {
                tracing::warn!(%err, "reading the node failed");
                continue;
            }
        };
        report_pod_cidr(config, &current, &mut last_cidr);
        let previous = current.status.clone().unwrap_or_default();
        let prev_conds = previous.conditions.clone().unwrap_or_default();
        let observed = observe(config, cri).await;
        let status = node_status(config, &observed, &prev_conds, Utc::now());
        let changed = comparable(&status) != comparable(&previous)
            || comparable(&status) != comparable(&written);
        if !changed && written_at.elapsed() < config.status_report_period {
            continue;
        }
        let patch = Patch::Merge(json!({"status": status}));
        match nodes
            .patch_status(&config.node_name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                written = status;
                written_at = tokio::time::Instant::now();
            }
            Err(err) => tracing::warn!(%err, "updating the node status failed"),
        }
    }
}

/// The node's Lease at `now`.
pub fn lease_object(node: &str, node_uid: &str, now: DateTime<Utc>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_string(),
                uid: node_uid.to_string(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(to_ts(now))),
            ..Default::default()
        }),
    }
}

async fn renew(leases: &Api<Lease>, config: &KubeletConfig, uid: &str) -> Result<(), kube::Error> {
    let now = Utc::now();
    match leases.get_opt(&config.node_name).await? {
        None => {
            let lease = lease_object(&config.node_name, uid, now);
            leases.create(&PostParams::default(), &lease).await?;
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(MicroTime(to_ts(now)));
            spec.holder_identity = Some(config.node_name.clone());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            leases
                .replace(&config.node_name, &PostParams::default(), &lease)
                .await?;
        }
    }
    Ok(())
}

async fn lease_loop(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    uid: String,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    loop {
        if let Err(err) = renew(&leases, &config, &uid).await {
            tracing::warn!(%err, "renewing the node lease failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.lease_renew_period) => {}
        }
    }
}

#[cfg(test)]
mod tests;
