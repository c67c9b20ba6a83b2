//! The node agent's kubelet, as upstream's: a client of the API server that registers its Node,
//! keeps the node's status and Lease fresh, and runs the pods bound to the node through the
//! Container Runtime Interface (containerd), with probes, restarts and adoption of the pods a
//! previous run left behind. Its HTTPS API ([`server`]) serves container logs and resource
//! metrics to the API server.
//!
//! It talks to the API server only as a client (never depends on the apiserver or store
//! crates), and to the runtime only through the [`cri::Cri`] trait. Starting containerd, images
//! and CNI configuration files belong to the runtime crate, not here.

pub mod backoff;
pub mod cri;
pub mod events;
pub mod housekeeping;
pub mod node;
pub mod pods;
pub mod prober;
pub mod server;
pub mod testing;
pub mod volumes;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Called with the node's pod CIDR.
pub type PodCidrCallback = Arc<dyn Fn(&str) + Send + Sync>;

/// What the kubelet of one node needs to know.
#[derive(Clone)]
pub struct KubeletConfig {
    /// The Node's name.
    pub node_name: String,
    /// The node's InternalIP, also the pods' hostIP.
    pub node_ip: IpAddr,
    /// The CRI socket (containerd's).
    pub cri_endpoint: PathBuf,
    /// The kubelet's own state (termination message files, ...); its filesystem is the node's
    /// ephemeral storage.
    pub data_dir: PathBuf,
    /// Where container logs go: `<log_root>/<ns>_<pod>_<uid>/<container>/<restart>.log`.
    pub log_root: PathBuf,
    /// The cluster DNS servers given to pods with `dnsPolicy: ClusterFirst`.
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// Label the node `node-role.kubernetes.io/control-plane`.
    pub control_plane: bool,
    /// Extra labels to register the node with.
    pub node_labels: BTreeMap<String, String>,
    /// The cgroup under which pod cgroups are made (per QoS class below it).
    pub cgroup_root: String,
    /// The first crash-loop back-off delay (upstream: 10 s); it doubles up to `crash_loop_max`.
    pub crash_loop_base: Duration,
    /// The longest crash-loop back-off delay (upstream: 5 min).
    pub crash_loop_max: Duration,
    /// How often each pod worker re-reads its pod's runtime state (upstream's PLEG relist: 1 s).
    pub relist_period: Duration,
    /// How often node status is checked (written when changed, or every `status_report_period`).
    pub status_update_period: Duration,
    /// How often the node status is written even when unchanged (upstream: 5 min).
    pub status_report_period: Duration,
    /// How often the node's Lease is renewed.
    pub lease_renew_period: Duration,
    /// Images never garbage-collected (the sandbox image).
    pub pinned_images: Vec<String>,
    /// Rotate a container's log when it grows past this many bytes (upstream: 10 MiB).
    pub container_log_max_size: u64,
    /// Keep at most this many log files per container, the live one included (upstream: 5).
    pub container_log_max_files: usize,
    /// Collect unused images when the image filesystem is this full (percent; upstream: 85).
    pub image_gc_high_percent: u64,
    /// ... until it is this full (percent; upstream: 80).
    pub image_gc_low_percent: u64,
    /// Evict pods when the node is under memory or disk pressure (upstream's hard thresholds).
    pub eviction: bool,
    /// Called with the Node's `spec.podCIDR` when it is first seen or changes, so that the
    /// runtime can write its CNI configuration.
    pub on_pod_cidr: Option<PodCidrCallback>,
    /// The port of the kubelet's HTTPS API on `node_ip` (upstream: 10250); 0 serves none.
    pub server_port: u16,
    /// The cluster CA (PEM) that client certificates of the kubelet's API are verified
    /// against; without it every caller is anonymous and refused.
    pub client_ca_pem: Option<String>,
    /// How long to wait for the serving certificate's CSR to be signed before serving on with
    /// a self-signed one (asked again later).
    pub serving_csr_timeout: Duration,
}

impl std::fmt::Debug for KubeletConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletConfig")
            .field("node_name", &self.node_name)
            .field("node_ip", &self.node_ip)
            .field("cri_endpoint", &self.cri_endpoint)
            .field("data_dir", &self.data_dir)
            .field("log_root", &self.log_root)
            .finish_non_exhaustive()
    }
}

impl KubeletConfig {
    /// A configuration with upstream's defaults for everything but the node's identity, its
    /// CRI socket and its data directory (logs under `<data_dir>/pods-logs`).
    pub fn new(
        node_name: impl Into<String>,
        node_ip: IpAddr,
        cri_endpoint: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
    ) -> KubeletConfig {
        let data_dir = data_dir.into();
        KubeletConfig {
            node_name: node_name.into(),
            node_ip,
            cri_endpoint: cri_endpoint.into(),
            log_root: data_dir.join("pod-logs"),
            data_dir,
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            control_plane: false,
            node_labels: BTreeMap::new(),
            cgroup_root: "/kubepods".into(),
            crash_loop_base: Duration::from_secs(10),
            crash_loop_max: Duration::from_secs(300),
            relist_period: Duration::from_secs(1),
            status_update_period: Duration::from_secs(10),
            status_report_period: Duration::from_secs(300),
            lease_renew_period: Duration::from_secs(10),
            pinned_images: Vec::new(),
            container_log_max_size: 10 << 20,
            container_log_max_files: 5,
            image_gc_high_percent: 85,
            image_gc_low_percent: 80,
            eviction: true,
            on_pod_cidr: None,
            server_port: 10250,
            client_ca_pem: None,
            serving_csr_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the kubelet stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRI socket could not be used at start; check the runtime is running.
    #[error(transparent)]
    Cri(#[from] cri::CriError),
    /// An API call failed where the kubelet cannot go on; retry the whole kubelet.
    #[error("API call {op} failed: {source}")]
    Api {
        op: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    /// A local file operation failed (data or log directories).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the kubelet until `shutdown`: registers the node, keeps its status and Lease fresh and
/// runs the pods bound to it. Pods keep running after it returns (a restarted kubelet adopts
/// them).
pub async fn run(
    client: kube::Client,
    config: KubeletConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let cri: Arc<dyn cri::Cri> = Arc::new(cri::GrpcCri::connect_lazy(&config.cri_endpoint)?);
    run_with_cri(client, config, cri, shutdown).await
}

/// [`run`] over any CRI implementation.
pub async fn run_with_cri(
    client: kube::Client,
    config: KubeletConfig,
    cri: Arc<dyn cri::Cri>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    for dir in [&config.data_dir, &config.log_root] {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| Error::Io {
                op: "creating",
                path: dir.clone(),
                source,
            })?;
    }
    let config = Arc::new(config);
    // Stops the node and housekeeping loops when the pods loop ends, for whatever reason.
    let inner = shutdown.child_token();
    let node = tokio::spawn(node::run(
        client.clone(),
        config.clone(),
        cri.clone(),
        inner.clone(),
    ));
    let housekeeping = tokio::spawn(housekeeping::run(
        client.clone(),
        config.clone(),
        cri.clone(),
        inner.clone(),
    ));
    let server = tokio::spawn(server::run(
        client.clone(),
        config.clone(),
        cri.clone(),
        inner.clone(),
    ));
    let pods = pods::run(client, config, cri, inner.clone()).await;
    inner.cancel();
    let _ = server.await;
    let _ = node.await;
    let _ = housekeeping.await;
    pods
}
