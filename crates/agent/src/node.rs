//! One node's components, started in order: the container runtime (the machine's containerd,
//! run by k8rs with its own config under the data dir, unless a CRI socket is given), the
//! air-gap images, then the kubelet, whose first sight of the node's `spec.podCIDR` writes the
//! CNI configuration.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use k8rs_kubelet::KubeletConfig;
use k8rs_runtime::{CniNetwork, ContainerdConfig};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// How one node agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// The node's InternalIP.
    pub node_ip: IpAddr,
    /// Everything of this agent lives under `<data_dir>/agent`.
    pub data_dir: PathBuf,
    /// A running CRI socket to use instead of starting containerd.
    pub cri_endpoint: Option<PathBuf>,
    /// The cluster DNS address given to pods (the tenth address of the service CIDR).
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// The pods' bridge (agents sharing a network namespace need different ones).
    pub bridge: String,
    /// Register the node with the control-plane role label (the server's own node).
    pub control_plane: bool,
    /// The service proxy's settings; `None` runs no proxy (`--disable-kube-proxy`).
    pub proxy: Option<k8rs_proxy::ProxyConfig>,
    /// Cluster DNS served from this node (servers only); `None` serves none.
    pub dns: Option<crate::dns::ClusterDns>,
    /// Routes to other nodes' pods and egress masquerade; `None` leaves the network alone
    /// (`--flannel-backend=none`).
    pub podnet: Option<k8rs_podnet::PodNetConfig>,
    /// NetworkPolicy enforcement; `None` enforces none (`--disable-network-policy`).
    pub netpol: Option<k8rs_netpol::NetpolConfig>,
    /// The cluster CA (PEM) the kubelet's API verifies callers (the API server) against;
    /// `None` refuses every caller, so `kubectl logs` cannot reach this node.
    pub client_ca_pem: Option<String>,
}

impl AgentConfig {
    /// The agent's own directory.
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}

/// Removes what a node programmed into the kernel: the proxy's, pod network's and network
/// policy's nftables tables, pod routes and the VXLAN device (for `k8rs killall`). Problems are
/// returned as text; cleaning goes on past them.
pub async fn cleanup_network(node_ip: std::net::Ipv4Addr) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = k8rs_proxy::cleanup(&k8rs_proxy::ProxyConfig::new("", node_ip)) {
        problems.push(format!("service proxy: {e}"));
    }
    if let Err(e) = k8rs_netpol::cleanup(&k8rs_netpol::NetpolConfig::new("")) {
        problems.push(format!("network policy: {e}"));
    }
    if let Some(cidr) = k8rs_podnet::Cidr::new(std::net::Ipv4Addr::new(10, 42, 0, 0), 16) {
        for backend in [k8rs_podnet::Backend::vxlan(), k8rs_podnet::Backend::HostGw] {
            let mut config = k8rs_podnet::PodNetConfig::new("", node_ip, cidr);
            config.backend = backend;
            if let Err(e) = k8rs_podnet::cleanup(&config).await {
                problems.push(format!("pod network: {e}"));
            }
        }
    }
    problems
}

/// Runs the node until `shutdown`. Running pods outlive it (their shims stay), and a restarted
/// agent adopts them.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let containerd_config = ContainerdConfig::new(&config.data_dir);
    let cni_conf_dir = containerd_config.cni_conf_dir.clone();
    // The sandbox image and the air-gap images are never garbage-collected (as k3s pins them).
    let mut pinned = vec![containerd_config.sandbox_image.clone()];
    let socket = match &config.cri_endpoint {
        Some(socket) => socket.clone(),
        None => {
            let containerd = k8rs_runtime::ensure_containerd(&containerd_config)
                .await
                .map_err(Error::Runtime)?;
            tracing::info!(
                socket = %containerd.socket.display(),
                version = %containerd.runtime_version,
                reused = containerd.reused,
                "containerd is serving the CRI"
            );
            let images = config.agent_dir().join("images");
            if images.is_dir() {
                let report = k8rs_runtime::import_images(&containerd, &images)
                    .await
                    .map_err(Error::Runtime)?;
                tracing::info!(?report, "imported air-gap images");
                pinned.extend(report.imported.iter().flat_map(|(_, names)| names.clone()));
            }
            containerd.socket
        }
    };
    let mut kubelet = KubeletConfig::new(
        &config.node_name,
        config.node_ip,
        socket,
        config.agent_dir().join("kubelet"),
    );
    kubelet.log_root = config.agent_dir().join("logs/pods");
    kubelet.pinned_images = pinned;
    kubelet.cluster_dns = vec![IpAddr::V4(config.cluster_dns)];
    kubelet.cluster_domain = config.cluster_domain.clone();
    kubelet.control_plane = config.control_plane;
    kubelet.cgroup_root = format!("/k8rs-{}", config.node_name);
    kubelet.client_ca_pem = config.client_ca_pem.clone();
    let mtu = match &config.podnet {
        Some(podnet) => k8rs_podnet::pod_mtu(podnet).await.map_err(Error::PodNet)?,
        None => 1500,
    };
    let (data_dir, bridge) = (config.data_dir.clone(), config.bridge.clone());
    let (cidr_tx, cidr_rx) = tokio::sync::watch::channel(None::<String>);
    kubelet.on_pod_cidr = Some(Arc::new(move |cidr: &str| {
        cidr_tx.send_replace(Some(cidr.to_string()));
        let mut net = CniNetwork::new(&data_dir, cidr);
        net.bridge = bridge.clone();
        net.mtu = mtu;
        match k8rs_runtime::write_cni_config(&cni_conf_dir, &net) {
            Ok(true) => tracing::info!(pod_cidr = cidr, "wrote the CNI configuration"),
            Ok(false) => {}
            Err(err) => tracing::error!(%err, "writing the CNI configuration failed"),
        }
    }));
    let podnet = config.podnet.clone().map(|podnet| {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        spawn_logged(
            "the pod network",
            k8rs_podnet::run(client, podnet, shutdown),
        )
    });
    let netpol = config.netpol.clone().map(|netpol| {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        spawn_logged(
            "network policy enforcement",
            k8rs_netpol::run(client, netpol, shutdown),
        )
    });
    let proxy = config.proxy.clone().map(|proxy| {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        spawn_logged(
            "the service proxy",
            k8rs_proxy::run(client, proxy, shutdown),
        )
    });
    let dns = config.dns.clone().map(|dns| {
        let (client, shutdown, node) = (client.clone(), shutdown.clone(), config.node_name.clone());
        spawn_logged(
            "cluster DNS",
            crate::dns::run(client, node, dns, cidr_rx, shutdown),
        )
    });
    let kubelet = k8rs_kubelet::run(client, kubelet, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(task) = podnet {
        match task.await {
            Ok(Err(_)) => {} // logged when it happened
            Err(err) => tracing::error!(%err, "the pod network panicked"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(task) = netpol {
        match task.await {
            Ok(Err(_)) => {} // logged when it happened
            Err(err) => tracing::error!(%err, "network policy enforcement panicked"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(dns) = dns {
        match dns.await {
            Ok(Err(_)) => {} // logged when it happened
            Err(err) => tracing::error!(%err, "cluster DNS panicked"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(proxy) = proxy {
        match proxy.await {
            Ok(Err(err)) => return Err(Error::Proxy(err)),
            Err(err) => tracing::error!(%err, "the service proxy panicked"),
            Ok(Ok(())) => {}
        }
    }
    kubelet.map_err(Error::Kubelet)
}

/// Spawns a node component whose failure is logged when it happens (the node runs on without
/// it), not only when the node stops.
fn spawn_logged<E>(
    name: &'static str,
    component: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), E>>
where
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(async move {
        let result = component.await;
        if let Err(err) = &result {
            tracing::error!(%err, "{name} stopped");
        }
        result
    })
}
