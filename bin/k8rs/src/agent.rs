//! `k8rs agent`: joins a node to a cluster with the server's join token, then runs the node's
//! components; and `k8rs killall`, which stops everything a node started and cleans up.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use k8rs_auth::join::JoinToken;
use tokio_util::sync::CancellationToken;

use crate::flags::Cidr;

/// The node flags `k8rs server` and `k8rs agent` share.
#[derive(Args, Debug, Clone)]
pub struct NodeFlags {
    /// The node's name (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The node's InternalIP (default: the host's first non-loopback IPv4 address).
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<Ipv4Addr>,
    /// A running CRI socket to use instead of starting containerd.
    #[arg(long, value_name = "SOCKET")]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// The cluster DNS address given to pods.
    #[arg(long, default_value = "10.43.0.10", value_name = "IP")]
    pub cluster_dns: Ipv4Addr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// The Linux bridge pods attach to (nodes sharing a network namespace need different ones).
    #[arg(long, default_value = "cni0", value_name = "NAME")]
    pub cni_bridge: String,
    /// Do not run the service proxy on this node.
    #[arg(long)]
    pub disable_kube_proxy: bool,
    /// How pods reach other nodes' pods: `vxlan` (UDP 8472, MTU lowered by 50), `host-gw`
    /// (plain routes; nodes must share an L2 segment) or `none` (leave the network alone).
    #[arg(long, default_value = "vxlan", value_name = "BACKEND")]
    pub flannel_backend: String,
    /// Do not enforce NetworkPolicies on this node.
    #[arg(long)]
    pub disable_network_policy: bool,
    /// Addresses NodePorts are served on, comma-separated CIDRs (default: the node's address).
    #[arg(long, value_delimiter = ',', value_name = "CIDRS")]
    pub nodeport_addresses: Vec<k8rs_proxy::Cidr>,
}

impl NodeFlags {
    /// The agent configuration for a node whose files live under `data_dir`.
    pub fn agent_config(
        &self,
        data_dir: PathBuf,
        control_plane: bool,
        cidrs: &Cidrs,
    ) -> k8rs_agent::AgentConfig {
        let node_ip = self
            .node_ip
            .unwrap_or_else(|| host_ip(&[cidrs.cluster, cidrs.service]));
        let node_name = self.node_name.clone().unwrap_or_else(host_name);
        let proxy = (!self.disable_kube_proxy).then(|| {
            let mut proxy = k8rs_proxy::ProxyConfig::new(&node_name, node_ip);
            proxy.cluster_cidr = Some(k8rs_proxy::Cidr::new(
                cidrs.cluster.net,
                cidrs.cluster.prefix,
            ));
            proxy.service_cidr = Some(k8rs_proxy::Cidr::new(
                cidrs.service.net,
                cidrs.service.prefix,
            ));
            proxy.nodeport_addresses = self.nodeport_addresses.clone();
            proxy
        });
        let podnet = match self.flannel_backend.as_str() {
            "none" => None,
            backend => {
                let cidr = k8rs_podnet::Cidr::new(cidrs.cluster.net, cidrs.cluster.prefix);
                let backend: Option<k8rs_podnet::Backend> = backend.parse().ok();
                cidr.zip(backend).map(|(cidr, backend)| {
                    let mut config = k8rs_podnet::PodNetConfig::new(&node_name, node_ip, cidr);
                    config.backend = backend;
                    config
                })
            }
        };
        let netpol =
            (!self.disable_network_policy).then(|| k8rs_netpol::NetpolConfig::new(&node_name));
        k8rs_agent::AgentConfig {
            dns: None,
            podnet,
            netpol,
            node_name,
            proxy,
            node_ip: IpAddr::V4(node_ip),
            data_dir,
            cri_endpoint: self.container_runtime_endpoint.clone(),
            cluster_dns: self.cluster_dns,
            cluster_domain: self.cluster_domain.clone(),
            bridge: self.cni_bridge.clone(),
            control_plane,
            client_ca_pem: None,
        }
    }
}

/// The cluster's address ranges, as the node needs them.
#[derive(Args, Debug, Clone)]
pub struct Cidrs {
    /// Range of Service ClusterIPs.
    #[arg(
        long = "service-cidr",
        default_value = "10.43.0.0/16",
        value_name = "CIDR"
    )]
    pub service: Cidr,
    /// Range of pod IPs; each node gets a slice of it.
    #[arg(
        long = "cluster-cidr",
        default_value = "10.42.0.0/16",
        value_name = "CIDR"
    )]
    pub cluster: Cidr,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The server to join, `https://HOST:6443`.
    #[arg(long, value_name = "URL")]
    server: String,
    /// A file holding the server's join token (its `<data-dir>/token`).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The join token itself.
    #[arg(long, value_name = "TOKEN", env = "K8RS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Directory for the agent's state (containerd, kubelet, logs, certificates).
    #[arg(long, default_value = "/var/lib/k8rs", value_name = "DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeFlags,
    #[command(flatten)]
    cidrs: Cidrs,
}

/// Joins, then runs the node until SIGTERM/SIGINT.
pub async fn agent(args: AgentArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    crate::spawn_signal_handler(shutdown.clone());
    let text = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the join token from {}", path.display()))?,
        (None, None) => anyhow::bail!(
            "a join token is required: --token-file FILE (the server's <data-dir>/token) or --token"
        ),
    };
    let token = JoinToken::parse(&text).context("--token-file")?;
    let mut config = args
        .node
        .agent_config(args.data_dir.clone(), false, &args.cidrs);
    let join = k8rs_agent::JoinConfig {
        server: args.server.trim_end_matches('/').to_string(),
        token,
        node_name: config.node_name.clone(),
        dir: config.agent_dir(),
    };
    let kubeconfig = k8rs_agent::bootstrap(&join).await?;
    config.client_ca_pem = k8rs_agent::bootstrap::cluster_ca(&kubeconfig);
    let client = client_from(&kubeconfig).await?;
    tracing::info!(node = %config.node_name, "starting the node");
    k8rs_agent::run(client, config, shutdown).await?;
    Ok(())
}

async fn client_from(path: &std::path::Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("loading the node kubeconfig")?;
    kube::Client::try_from(config).context("building the API client")
}

#[derive(Args, Debug, Clone)]
pub struct KillallArgs {
    /// The data dir of the node to clean up.
    #[arg(long, default_value = "/var/lib/k8rs", value_name = "DIR")]
    data_dir: PathBuf,
}

/// Stops every pod, containerd and its shims of the node at `data_dir`, and removes what the
/// node programmed into the kernel (nftables tables, pod routes, the VXLAN device).
pub async fn killall(args: KillallArgs) -> Result<()> {
    let report = k8rs_runtime::killall(&args.data_dir).await?;
    println!("{report:#?}");
    k8rs_kubelet::volumes::unmount_under(&args.data_dir);
    for problem in k8rs_agent::node::cleanup_network(host_ip(&[])).await {
        eprintln!("{problem}");
    }
    Ok(())
}

/// The host name, as the kubelet defaults its node name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "k8rs-node".into())
}

/// The host's address for cluster traffic, as k3s chooses it: the source address of the default
/// route, else the first non-loopback address. Addresses in `avoid` (the cluster's own pod and
/// Service ranges: a VXLAN or bridge address from an earlier run) are never chosen.
pub fn host_ip(avoid: &[Cidr]) -> Ipv4Addr {
    let usable = |a: &Ipv4Addr| !a.is_loopback() && !avoid.iter().any(|c| c.contains(*a));
    default_route_source()
        .filter(usable)
        .or_else(|| {
            k8rs_auth::pki::host_ipv4_addresses()
                .into_iter()
                .find(usable)
        })
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

/// The address the kernel would send from towards the internet: connecting a UDP socket
/// chooses a route and a source address without sending anything.
fn default_route_source() -> Option<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // TEST-NET-1 (RFC 5737): only the routing table is consulted.
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}
