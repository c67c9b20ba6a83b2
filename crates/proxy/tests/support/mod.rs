//! What the proxy's namespace tests (and `examples/latency_bench.rs`, which includes this file
//! by path) share: a lab of network namespaces (a "node" with pods behind veths; no default
//! route, no link to the host), commands run inside them, this executable run as a helper
//! inside them, Service and EndpointSlice builders, and the proxy started against a node.
//!
//! Callers load the network-safety guard (`k8rs_testing::netguard::ensure`) before sending any
//! packet. Everything the lab creates is removed on drop, also when a test fails.

#![allow(dead_code)] // each test binary uses a part

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8rs_proxy::ProxyConfig;
use k8rs_testing::TestServer;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

/// The node's own address (on its loopback), where NodePorts are served.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 42, 255, 1);
/// The node's address on every pod veth: the pods' gateway.
pub const GATEWAY: &str = "10.42.0.1";
/// The node's name in the tests' EndpointSlices and proxy config.
pub const NODE_NAME: &str = "node-a";
/// The name of every Service port and EndpointSlice port the builders make.
pub const PORT_NAME: &str = "p";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `args[0] args[1..]`; an error unless it succeeds.
pub fn sh(args: &[&str]) -> io::Result<()> {
    let status = Command::new(args[0]).args(&args[1..]).status()?;
    if !status.success() {
        return Err(io::Error::other(format!("{args:?} failed: {status}")));
    }
    Ok(())
}

/// `ip netns exec NS program`.
pub fn in_netns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// This executable (the test binary or the example), for running helpers inside namespaces.
pub fn self_exe() -> io::Result<String> {
    Ok(std::env::current_exe()?.to_string_lossy().into_owned())
}

/// This executable run in `ns` with `args`.
pub fn self_in(ns: &str, args: &[&str]) -> io::Result<Command> {
    let mut cmd = in_netns(ns, &self_exe()?);
    cmd.args(args);
    Ok(cmd)
}

/// This test binary run in `ns` as the helper test `test`, which acts only when its
/// environment variable `key` is set (to `value`).
pub fn helper_test(ns: &str, test: &str, key: &str, value: &str) -> io::Result<Command> {
    let mut cmd = self_in(ns, &["--exact", test, "--nocapture"])?;
    cmd.env(key, value);
    Ok(cmd)
}

/// The standard output of [`helper_test`] run to completion (without stdin and stderr).
pub fn helper_output(ns: &str, test: &str, key: &str, value: &str) -> io::Result<String> {
    let out = helper_test(ns, test, key, value)?
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `busybox nc` in `ns` answering every TCP connection on `port` with `reply`.
pub fn busybox_echo(ns: &str, port: u16, reply: &str) -> Command {
    let mut cmd = in_netns(ns, "busybox");
    cmd.args(["nc", "-ll", "-p", &port.to_string(), "-e", "echo", reply]);
    cmd
}

/// `nft list table ip k8rs-proxy` in `ns`; empty when there is none.
pub fn nft_table(ns: &str) -> String {
    in_netns(ns, "nft")
        .args(["list", "table", "ip", "k8rs-proxy"])
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// A pod's namespace and the node's end of its veth.
#[derive(Clone, Debug)]
pub struct Pod {
    pub ns: String,
    pub veth: String,
}

/// Quiet: no stdin, stdout or stderr.
pub fn quiet(mut cmd: Command) -> Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Network namespaces and helper processes, removed on drop (also on failure).
pub struct Lab {
    prefix: &'static str,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    /// A lab whose namespaces are named `k8rs-<prefix>-<pid>-<n>`.
    pub fn new(prefix: &'static str) -> Lab {
        Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A new namespace with loopback up.
    pub fn netns(&mut self) -> io::Result<String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("k8rs-{}-{}-{n}", self.prefix, std::process::id());
        sh(&["ip", "netns", "add", &name])?;
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// A node namespace: forwarding on, [`NODE_IP`] on its loopback.
    pub fn node(&mut self) -> io::Result<String> {
        let node = self.netns()?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        let ip = format!("{NODE_IP}/32");
        sh(&["ip", "-n", &node, "addr", "add", &ip, "dev", "lo"])?;
        Ok(node)
    }

    /// A pod namespace at `ip` behind a veth to `node`, routing the cluster's ranges through
    /// the node.
    pub fn pod(&mut self, node: &str, ip: Ipv4Addr) -> io::Result<Pod> {
        let ns = self.netns()?;
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let (veth, pod_if) = (format!("kv{n}h"), format!("kv{n}p"));
        let ip32 = format!("{ip}/32");
        sh(&[
            "ip", "-n", node, "link", "add", &veth, "type", "veth", "peer", "name", &pod_if,
            "netns", &ns,
        ])?;
        let gw = format!("{GATEWAY}/32");
        sh(&["ip", "-n", node, "addr", "add", &gw, "dev", &veth])?;
        sh(&["ip", "-n", node, "link", "set", &veth, "up"])?;
        sh(&["ip", "-n", node, "route", "add", &ip32, "dev", &veth])?;
        sh(&["ip", "-n", &ns, "addr", "add", &ip32, "dev", &pod_if])?;
        sh(&["ip", "-n", &ns, "link", "set", &pod_if, "up"])?;
        for range in ["10.42.0.0/16", "10.43.0.0/16"] {
            sh(&[
                "ip", "-n", &ns, "route", "add", range, "via", GATEWAY, "dev", &pod_if, "onlink",
            ])?;
        }
        Ok(Pod { ns, veth })
    }

    /// Routes `range` in `node` out of `dev`: a real node's default route, kept inside the
    /// test (it leads to a pod).
    pub fn route(&self, node: &str, range: &str, dev: &str) -> io::Result<()> {
        sh(&["ip", "-n", node, "route", "add", range, "dev", dev])
    }

    /// Starts `cmd` as set up and keeps it (killed when the lab drops).
    pub fn spawn(&mut self, mut cmd: Command) -> io::Result<&mut Child> {
        let child = cmd.spawn()?;
        self.children.push(child);
        let last = self.children.len() - 1;
        Ok(&mut self.children[last])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// An in-process API server and the `default` namespace's Services and EndpointSlices.
pub struct ApiServer {
    pub server: TestServer,
    pub services: Api<Service>,
    pub slices: Api<EndpointSlice>,
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let server = TestServer::start().await;
        let client = server.client();
        ApiServer {
            services: Api::namespaced(client.clone(), "default"),
            slices: Api::namespaced(client, "default"),
            server,
        }
    }

    pub fn client(&self) -> kube::Client {
        self.server.client()
    }

    pub async fn create_service(&self, svc: &Service) -> kube::Result<Service> {
        self.services.create(&PostParams::default(), svc).await
    }

    pub async fn create_slice(&self, slice: &EndpointSlice) -> kube::Result<EndpointSlice> {
        self.slices.create(&PostParams::default(), slice).await
    }
}

/// A proxy config for the node namespace `node`: syncs at most every `min_sync`, no healthz
/// server, `nft` (and `conntrack`, `ip`) run inside the namespace.
pub fn proxy_config(node: &str, min_sync: Duration) -> ProxyConfig {
    let mut config = ProxyConfig::new(NODE_NAME, NODE_IP);
    config.min_sync_period = min_sync;
    config.healthz_bind_address = None;
    config.nft_command = ["ip", "netns", "exec", node, "nft"]
        .map(String::from)
        .to_vec();
    config
}

/// Runs the proxy as a task until the returned token is cancelled.
pub fn start_proxy(client: kube::Client, config: ProxyConfig) -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        if let Err(err) = k8rs_proxy::run(client, config, stop).await {
            eprintln!("the proxy stopped: {err}");
        }
    });
    token
}

/// A ClusterIP Service `name` at `ip` with one port ([`PORT_NAME`]) `port` -> `target`.
pub fn service(name: &str, ip: &str, protocol: &str, port: u16, target: u16) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: i32::from(port),
                protocol: Some(protocol.into()),
                target_port: Some(IntOrString::Int(i32::from(target))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// `svc` turned into a NodePort Service on `node_port`.
pub fn with_node_port(mut svc: Service, node_port: u16) -> Service {
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
        for port in spec.ports.iter_mut().flatten() {
            port.node_port = Some(i32::from(node_port));
        }
    }
    svc
}

/// EndpointSlice `<svc>-1` of Service `svc`: ready endpoints `ips` on this node, port `port`.
pub fn slice(svc: &str, protocol: &str, port: u16, ips: &[Ipv4Addr]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{svc}-1")),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                svc.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(NODE_NAME.into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some(PORT_NAME.into()),
            port: Some(i32::from(port)),
            protocol: Some(protocol.into()),
            ..Default::default()
        }]),
    }
}

/// Connects from namespace `ns` to `ip:port`: Ok(reply) or Err(stderr).
pub fn connect(ns: &str, ip: &str, port: u16) -> Result<String, String> {
    let out = Command::new("timeout")
        .args([
            "3", "ip", "netns", "exec", ns, "busybox", "nc", "-w", "1", ip,
        ])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("nc");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if stdout.is_empty() {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    } else {
        Ok(stdout)
    }
}
