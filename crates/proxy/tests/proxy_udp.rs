//! A UDP ClusterIP Service programmed by the proxy inside network namespaces this test creates
//! (no default route on the "node", no link to the host; the network-safety guard first):
//! both endpoints answer, and removing an endpoint flushes its stale conntrack entry so the
//! next datagram of the same 5-tuple reaches the remaining endpoint.
//!
//! busybox `nc` has no UDP mode here, so the echo servers and the client are this test binary
//! itself, started inside the namespaces with `ip netns exec` to run one of the two helper
//! tests below (which do nothing unless their environment variable is set).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8rs_proxy::ProxyConfig;
use k8rs_testing::{TestServer, eventually, netguard};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

const ECHO_ENV: &str = "K8RS_UDP_ECHO_REPLY";
const CLIENT_ENV: &str = "K8RS_UDP_CLIENT";
const VIP: &str = "10.43.0.70";
const NODE_IP: &str = "10.42.255.1";
const EP_PORT: u16 = 5353;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Helper mode: a UDP echo server on port 5353 answering every datagram with `$ECHO_ENV`.
#[test]
fn udp_echo_helper() {
    let Ok(reply) = std::env::var(ECHO_ENV) else {
        return;
    };
    let sock = UdpSocket::bind(("0.0.0.0", EP_PORT)).expect("bind echo");
    let mut buf = [0u8; 512];
    loop {
        if let Ok((_, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(reply.as_bytes(), from);
        }
    }
}

/// Helper mode: `$CLIENT_ENV` = "SRC_IP:SRC_PORT DST_IP:DST_PORT"; sends one datagram and
/// prints `REPLY=<answer>` if one comes within 500 ms.
#[test]
fn udp_client_helper() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    let (src, dst) = spec.split_once(' ').expect("two addresses");
    let sock = UdpSocket::bind(src).expect("bind client");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    sock.send_to(b"ping", dst).expect("send");
    let mut buf = [0u8; 512];
    if let Ok((n, _)) = sock.recv_from(&mut buf) {
        println!("REPLY={}", String::from_utf8_lossy(&buf[..n]));
    }
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("spawn");
    assert!(status.success(), "{args:?} failed");
}

fn self_exe() -> String {
    std::env::current_exe()
        .expect("test binary path")
        .to_string_lossy()
        .into_owned()
}

/// Network namespaces and processes, removed on drop (also on failure).
#[derive(Default)]
struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn netns(&mut self) -> String {
        let name = format!(
            "k8rs-proxy-udp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A pod namespace at `ip` behind a veth to `node`, echoing `reply` on UDP 5353; returns
    /// the node's end of the veth.
    fn pod(&mut self, node: &str, ip: Ipv4Addr, reply: &str) -> String {
        let pod = self.netns();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let (host_if, pod_if) = (format!("ku{n}h"), format!("ku{n}p"));
        let ip32 = format!("{ip}/32");
        sh(&[
            "ip", "-n", node, "link", "add", &host_if, "type", "veth", "peer", "name", &pod_if,
            "netns", &pod,
        ]);
        sh(&[
            "ip",
            "-n",
            node,
            "addr",
            "add",
            "10.42.0.1/32",
            "dev",
            &host_if,
        ]);
        sh(&["ip", "-n", node, "link", "set", &host_if, "up"]);
        sh(&["ip", "-n", node, "route", "add", &ip32, "dev", &host_if]);
        sh(&["ip", "-n", &pod, "addr", "add", &ip32, "dev", &pod_if]);
        sh(&["ip", "-n", &pod, "link", "set", &pod_if, "up"]);
        for range in ["10.42.0.0/16", "10.43.0.0/16"] {
            sh(&[
                "ip",
                "-n",
                &pod,
                "route",
                "add",
                range,
                "via",
                "10.42.0.1",
                "dev",
                &pod_if,
                "onlink",
            ]);
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &pod, &self_exe()])
            .args(["--exact", "udp_echo_helper", "--nocapture"])
            .env(ECHO_ENV, reply)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo server");
        self.children.push(child);
        host_if
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

/// One datagram from `NODE_IP:src_port` in namespace `ns` to the Service; the reply, if any.
fn ask(ns: &str, src_port: u16) -> Option<String> {
    let out = Command::new("timeout")
        .args(["3", "ip", "netns", "exec", ns, &self_exe()])
        .args(["--exact", "udp_client_helper", "--nocapture"])
        .env(CLIENT_ENV, format!("{NODE_IP}:{src_port} {VIP}:53"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("udp client");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("REPLY=").map(str::to_string))
}

/// The UDP conntrack entries for the Service address in namespace `ns`.
fn conntrack(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "conntrack", "-L", "-p", "udp"])
        .args(["--orig-dst", VIP])
        .stderr(Stdio::null())
        .output()
        .expect("conntrack -L");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft_table(ns: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nft",
            "list",
            "table",
            "ip",
            "k8rs-proxy",
        ])
        .output()
        .expect("nft list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn udp_service() -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("dns".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(VIP.into()),
            cluster_ips: Some(vec![VIP.into()]),
            ports: Some(vec![ServicePort {
                name: Some("dns".into()),
                port: 53,
                protocol: Some("UDP".into()),
                target_port: Some(IntOrString::Int(i32::from(EP_PORT))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn udp_slice(ips: &[Ipv4Addr]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some("dns-1".into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                "dns".to_string(),
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
                node_name: Some("node-a".into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("dns".into()),
            port: Some(i32::from(EP_PORT)),
            protocol: Some("UDP".into()),
            ..Default::default()
        }]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_service_answers_and_stale_conntrack_is_flushed() {
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::default();
    let node = lab.netns();
    sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    sh(&[
        "ip",
        "-n",
        &node,
        "addr",
        "add",
        &format!("{NODE_IP}/32"),
        "dev",
        "lo",
    ]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 42, 0, 21), Ipv4Addr::new(10, 42, 0, 22));
    let veth1 = lab.pod(&node, ip1, "pod1");
    lab.pod(&node, ip2, "pod2");
    // The node's route for the Service range leads only to pod1's veth inside the test.
    sh(&[
        "ip",
        "-n",
        &node,
        "route",
        "add",
        "10.43.0.0/16",
        "dev",
        &veth1,
    ]);

    let server = TestServer::start().await;
    let client = server.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    services.create(&pp, &udp_service()).await.expect("service");
    let created = slices
        .create(&pp, &udp_slice(&[ip1, ip2]))
        .await
        .expect("slice");

    let mut config = ProxyConfig::new("node-a", NODE_IP.parse().expect("node ip"));
    config.min_sync_period = Duration::from_millis(50);
    config.healthz_bind_address = None;
    config.nft_command = ["ip", "netns", "exec", &node, "nft"]
        .map(String::from)
        .to_vec();
    let proxy = CancellationToken::new();
    let stop = proxy.clone();
    tokio::spawn(k8rs_proxy::run(client.clone(), config.clone(), stop));

    let ep = |ip: Ipv4Addr| format!("{ip} . {EP_PORT}");
    eventually(
        "both endpoints programmed",
        Duration::from_secs(10),
        || async {
            let t = nft_table(&node);
            (t.contains(&ep(ip1)) && t.contains(&ep(ip2))).then_some(())
        },
    )
    .await;

    // Both endpoints answer (a new source port is a new flow, balanced at random).
    let replies: BTreeSet<String> = (0..20).filter_map(|i| ask(&node, 41000 + i)).collect();
    assert_eq!(replies, BTreeSet::from(["pod1".into(), "pod2".into()]));

    // One fixed client 5-tuple; its conntrack entry names the endpoint it was sent to.
    const SRC: u16 = 40000;
    let first = ask(&node, SRC).expect("the Service answers");
    let (gone, gone_ip, stays, stays_ip) = if first == "pod1" {
        ("pod1", ip1, "pod2", ip2)
    } else {
        ("pod2", ip2, "pod1", ip1)
    };
    let entries = conntrack(&node);
    let flow = format!("sport={SRC}");
    assert!(
        entries
            .lines()
            .any(|l| l.contains(&flow) && l.contains(&format!("src={gone_ip} "))),
        "conntrack entry to {gone}: {entries}"
    );
    assert_eq!(ask(&node, SRC).as_deref(), Some(gone), "the flow sticks");

    // The endpoint that served the flow is removed from the EndpointSlice.
    let mut shrunk = udp_slice(&[stays_ip]);
    shrunk.metadata.resource_version = created.metadata.resource_version.clone();
    slices.replace("dns-1", &pp, &shrunk).await.expect("shrink");
    eventually(
        "endpoint removed from the rules",
        Duration::from_secs(10),
        || async { (!nft_table(&node).contains(&ep(gone_ip))).then_some(()) },
    )
    .await;
    eventually(
        "stale conntrack entry flushed",
        Duration::from_secs(5),
        || async {
            let entries = conntrack(&node);
            (!entries.contains(&format!("src={gone_ip} "))).then_some(())
        },
    )
    .await;
    // The pod that was removed still runs: without the flush the flow would still reach it.
    assert_eq!(ask(&node, SRC).as_deref(), Some(stays));
    let entries = conntrack(&node);
    assert!(
        entries
            .lines()
            .any(|l| l.contains(&flow) && l.contains(&format!("src={stays_ip} "))),
        "the same 5-tuple is now tracked to {stays}: {entries}"
    );

    proxy.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    k8rs_proxy::cleanup(&config).expect("cleanup");
}
