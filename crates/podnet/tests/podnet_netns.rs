//! Two nodes, each in its own network namespace on this machine, joined by a veth pair; each
//! with a bridge holding one "pod" namespace in its podCIDR; a third namespace "internet"
//! reachable only through node A. The pod network of each node runs against one in-process API
//! server with its commands pointed into its namespace. Checked: pod A reaches pod B with its
//! own source address (no NAT), for host-gw and VXLAN; traffic leaving the cluster CIDR arrives
//! masqueraded to node A's address; routes follow Nodes and drift is repaired; cleanup removes
//! everything.
//!
//! Network safety: `netguard::ensure()` runs first, and every node namespace has no route out
//! of the machine (the namespaces hold only their own links).

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use k8rs_podnet::{Backend, Commands, PodNetConfig};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
use kube::api::{Api, DeleteParams, PostParams};
use tokio_util::sync::CancellationToken;

const CLUSTER_CIDR: &str = "10.42.0.0/16";
const WAIT: Duration = Duration::from_secs(20);

/// Runs `argv`, returning its stdout; fails with its stderr.
fn sh(argv: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {argv:?}"))?;
    if !out.status.success() {
        bail!(
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces of one test, removed (with every process started in them) on drop.
struct Topology {
    node_a: String,
    node_b: String,
    pod_a: String,
    pod_b: String,
    internet: String,
    children: Vec<Child>,
}

impl Topology {
    fn new(tag: &str) -> Self {
        let ns = |n: &str| format!("k8rs-podnet-{}-{tag}-{n}", std::process::id());
        Topology {
            node_a: ns("a"),
            node_b: ns("b"),
            pod_a: ns("pa"),
            pod_b: ns("pb"),
            internet: ns("net"),
            children: Vec::new(),
        }
    }

    fn all(&self) -> [&str; 5] {
        [
            &self.node_a,
            &self.node_b,
            &self.pod_a,
            &self.pod_b,
            &self.internet,
        ]
    }

    /// Builds the namespaces and links (addresses only inside them).
    fn build(&self) -> anyhow::Result<()> {
        for ns in self.all() {
            sh(&["ip", "netns", "add", ns])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        let (a, b) = (self.node_a.as_str(), self.node_b.as_str());
        sh(&[
            "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
            b,
        ])?;
        for (ns, addr) in [(a, "192.168.77.1/24"), (b, "192.168.77.2/24")] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"])?;
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
        }
        self.pod(a, &self.pod_a, 1)?;
        self.pod(b, &self.pod_b, 2)?;
        let net = self.internet.as_str();
        sh(&[
            "ip", "-n", a, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns",
            net,
        ])?;
        sh(&[
            "ip",
            "-n",
            a,
            "addr",
            "add",
            "203.0.113.254/24",
            "dev",
            "eth1",
        ])?;
        sh(&["ip", "-n", a, "link", "set", "eth1", "up"])?;
        sh(&[
            "ip",
            "-n",
            net,
            "addr",
            "add",
            "203.0.113.1/24",
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", net, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// A bridge `cni0` on `node` with 10.42.`k`.1/24 and the pod namespace at 10.42.`k`.2.
    fn pod(&self, node: &str, pod: &str, k: u8) -> anyhow::Result<()> {
        let gw = format!("10.42.{k}.1");
        sh(&["ip", "-n", node, "link", "add", "cni0", "type", "bridge"])?;
        sh(&[
            "ip",
            "-n",
            node,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            "cni0",
        ])?;
        sh(&["ip", "-n", node, "link", "set", "cni0", "up"])?;
        sh(&[
            "ip", "-n", node, "link", "add", "vethpod", "type", "veth", "peer", "name", "eth0",
            "netns", pod,
        ])?;
        sh(&[
            "ip", "-n", node, "link", "set", "vethpod", "master", "cni0", "up",
        ])?;
        let addr = format!("10.42.{k}.2/24");
        sh(&["ip", "-n", pod, "addr", "add", &addr, "dev", "eth0"])?;
        sh(&["ip", "-n", pod, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", pod, "route", "add", "default", "via", &gw])?;
        Ok(())
    }

    /// Connects from `from` to `to:8080` where a one-shot server in `server_ns` answers with
    /// its `netstat`; returns the peer address the server saw.
    fn peer_seen(&mut self, server_ns: &str, from: &str, to: &str) -> anyhow::Result<String> {
        let server = Command::new("ip")
            .args([
                "netns", "exec", server_ns, "busybox", "nc", "-l", "-p", "8080",
            ])
            .args(["-e", "busybox", "netstat", "-tn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(server);
        std::thread::sleep(Duration::from_millis(200));
        let out = sh(&[
            "timeout", "5", "ip", "netns", "exec", from, "busybox", "nc", "-w", "3", to, "8080",
        ])?;
        out.lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() >= 5 && cols[3].ends_with(":8080")).then(|| cols[4].to_string())
            })
            .next()
            .map(|peer| peer.trim_start_matches("::ffff:").to_string())
            .and_then(|peer| peer.rsplit_once(':').map(|(a, _)| a.to_string()))
            .with_context(|| format!("no connection in the server's netstat:\n{out}"))
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        sh(&[
            "ip", "netns", "exec", from, "busybox", "ping", "-c", "1", "-W", "1", to,
        ])
        .is_ok()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.all() {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

fn node(name: &str, ip: &str, pod_cidr: &str) -> Node {
    let mut node = Node::default();
    node.metadata.name = Some(name.into());
    node.spec = Some(NodeSpec {
        pod_cidr: Some(pod_cidr.into()),
        pod_cidrs: Some(vec![pod_cidr.into()]),
        ..NodeSpec::default()
    });
    node.status = Some(NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: ip.into(),
        }]),
        ..NodeStatus::default()
    });
    node
}

fn config(name: &str, ip: &str, ns: &str, backend: Backend) -> anyhow::Result<PodNetConfig> {
    let mut c = PodNetConfig::new(name, ip.parse::<Ipv4Addr>()?, CLUSTER_CIDR.parse()?);
    c.backend = backend;
    c.commands = Commands::netns(ns);
    c.resync_period = Duration::from_secs(1);
    Ok(c)
}

/// The whole scenario for one backend; returns the topology and configs for extra checks.
async fn two_nodes(
    tag: &str,
    backend: Backend,
) -> anyhow::Result<(
    TestServer,
    Topology,
    PodNetConfig,
    PodNetConfig,
    CancellationToken,
)> {
    k8rs_testing::netguard::ensure().context("network safety guard")?;
    let topo = Topology::new(tag);
    topo.build()?;
    let server = TestServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    nodes
        .create(
            &PostParams::default(),
            &node("node-a", "192.168.77.1", "10.42.1.0/24"),
        )
        .await?;
    nodes
        .create(
            &PostParams::default(),
            &node("node-b", "192.168.77.2", "10.42.2.0/24"),
        )
        .await?;
    let a = config("node-a", "192.168.77.1", &topo.node_a, backend.clone())?;
    let b = config("node-b", "192.168.77.2", &topo.node_b, backend)?;
    let token = server.shutdown_token();
    for c in [a.clone(), b.clone()] {
        tokio::spawn(k8rs_podnet::run(server.client(), c, token.clone()));
    }
    Ok((server, topo, a, b, token))
}

async fn check_pod_to_pod_and_masquerade(topo: &mut Topology) -> anyhow::Result<()> {
    let (pa, pb) = (topo.pod_a.clone(), topo.pod_b.clone());
    eventually("pod A pings pod B", WAIT, || async {
        topo.ping(&pa, "10.42.2.2").then_some(())
    })
    .await;
    let seen = topo.peer_seen(&pb, &pa, "10.42.2.2")?;
    assert_eq!(seen, "10.42.1.2", "pod B sees pod A's own address (no NAT)");
    let seen = topo.peer_seen(&pa, &pb, "10.42.1.2")?;
    assert_eq!(seen, "10.42.2.2", "and the other way round");
    let net = topo.internet.clone();
    let seen = topo.peer_seen(&net, &pa, "203.0.113.1")?;
    assert_eq!(
        seen, "203.0.113.254",
        "leaving the cluster CIDR masquerades to node A"
    );
    let table = sh(&[
        "ip",
        "netns",
        "exec",
        &topo.node_a,
        "nft",
        "list",
        "table",
        "ip",
        "k8rs-podnet",
    ])?;
    assert!(
        table.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade"),
        "{table}"
    );
    for ns in [&topo.node_a, &topo.node_b] {
        let fwd = sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-n",
            "net.ipv4.ip_forward",
        ])?;
        assert_eq!(fwd.trim(), "1");
        let br = sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-n",
            "net.bridge.bridge-nf-call-iptables",
        ])?;
        assert_eq!(br.trim(), "1");
    }
    Ok(())
}

fn routes(ns: &str) -> String {
    sh(&["ip", "-n", ns, "route", "show", "proto", "120"]).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_pods_reach_each_other_without_nat() -> anyhow::Result<()> {
    let (server, mut topo, _a, _b, token) = two_nodes("h", Backend::HostGw).await?;
    check_pod_to_pod_and_masquerade(&mut topo).await?;
    assert_eq!(
        routes(&topo.node_a).trim(),
        "10.42.2.0/24 via 192.168.77.2 dev eth0"
    );

    // Drift is repaired at the next resync.
    sh(&["ip", "-n", &topo.node_a, "route", "del", "10.42.2.0/24"])?;
    let a = topo.node_a.clone();
    eventually("the deleted route comes back", WAIT, || async {
        routes(&a).contains("10.42.2.0/24").then_some(())
    })
    .await;

    // A node that goes away loses its route on the others.
    let nodes: Api<Node> = Api::all(server.client());
    nodes.delete("node-b", &DeleteParams::default()).await?;
    eventually("node B's route is removed", WAIT, || async {
        routes(&a).trim().is_empty().then_some(())
    })
    .await;
    token.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_pods_reach_each_other_without_nat() -> anyhow::Result<()> {
    let (server, mut topo, a, _b, token) = two_nodes("v", Backend::vxlan()).await?;
    check_pod_to_pod_and_masquerade(&mut topo).await?;
    let link = sh(&[
        "ip",
        "-n",
        &topo.node_a,
        "-j",
        "-d",
        "link",
        "show",
        "dev",
        "k8rs.1",
    ])?;
    let link: serde_json::Value = serde_json::from_str(&link)?;
    assert_eq!(link[0]["mtu"], 1450, "underlay 1500 minus 50");
    assert_eq!(link[0]["linkinfo"]["info_data"]["port"], 8472);
    assert_eq!(link[0]["linkinfo"]["info_data"]["id"], 1);
    assert_eq!(
        routes(&topo.node_a).trim(),
        "10.42.2.0/24 via 10.42.2.0 dev k8rs.1 onlink"
    );
    let nodes: Api<Node> = Api::all(server.client());
    let published = nodes.get("node-b").await?;
    let annotations = published.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("k8rs.io/vxlan-mac").map(String::as_str),
        Some("0e:6b:c0:a8:4d:02")
    );
    assert_eq!(k8rs_podnet::pod_mtu(&a).await?, 1450);

    // Clean uninstall: table, routes and device of node A are gone.
    token.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    k8rs_podnet::cleanup(&a).await?;
    assert!(routes(&topo.node_a).trim().is_empty());
    assert!(sh(&["ip", "-n", &topo.node_a, "link", "show", "dev", "k8rs.1"]).is_err());
    let tables = sh(&["ip", "netns", "exec", &topo.node_a, "nft", "list", "tables"])?;
    assert!(!tables.contains("k8rs-podnet"), "{tables}");
    Ok(())
}
