//! The proxy programming a network namespace from a real API server, checked with real
//! traffic. Everything runs inside namespaces this test creates (no default route on the
//! "node", no link to the host) after the network-safety guard is in place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8rs_proxy::ProxyConfig;
use k8rs_testing::{TestServer, eventually, netguard};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("spawn");
    assert!(status.success(), "{args:?} failed");
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
            "k8rs-proxy-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A pod namespace at `ip` behind a veth to `node`, answering `reply` on TCP 8080; returns
    /// the namespace and the node's end of the veth.
    fn pod(&mut self, node: &str, ip: Ipv4Addr, reply: &str) -> (String, String) {
        let pod = self.netns();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let (host_if, pod_if) = (format!("kp{n}h"), format!("kp{n}p"));
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
        sh(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            &format!("{ip}/32"),
            "dev",
            &host_if,
        ]);
        sh(&[
            "ip",
            "-n",
            &pod,
            "addr",
            "add",
            &format!("{ip}/32"),
            "dev",
            &pod_if,
        ]);
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
            .args([
                "netns", "exec", &pod, "busybox", "nc", "-ll", "-p", "8080", "-e", "echo", reply,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox nc");
        self.children.push(child);
        (pod, host_if)
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

/// Connects from namespace `ns` to `ip:port`: Ok(reply) or Err(stderr).
fn connect(ns: &str, ip: &str, port: u16) -> Result<String, String> {
    let out = Command::new("timeout")
        .args([
            "3",
            "ip",
            "netns",
            "exec",
            ns,
            "busybox",
            "nc",
            "-w",
            "1",
            ip,
            &port.to_string(),
        ])
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

fn service(name: &str, ip: &str, node_port: Option<i32>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(
                if node_port.is_some() {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                node_port,
                protocol: Some("TCP".into()),
                target_port: Some(
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080),
                ),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn slice(svc: &str, ips: &[Ipv4Addr]) -> EndpointSlice {
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
                node_name: Some("node-a".into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

fn start_proxy(client: kube::Client, config: ProxyConfig) -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        if let Err(err) = k8rs_proxy::run(client, config, stop).await {
            panic!("proxy stopped: {err}");
        }
    });
    token
}

fn list(node: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            node,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_endpoints_and_safety_verdicts_hold() {
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
        "10.42.255.1/32",
        "dev",
        "lo",
    ]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 42, 0, 11), Ipv4Addr::new(10, 42, 0, 12));
    let (pod1, veth1) = lab.pod(&node, ip1, "pod1");
    // The node's own route for the Service range (a real node has its default route); it
    // leads only to pod1's veth inside the test.
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
    lab.pod(&node, ip2, "pod2");

    let server = TestServer::start().await;
    let client = server.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    services
        .create(&pp, &service("web", "10.43.0.50", Some(30080)))
        .await
        .expect("web");
    slices
        .create(&pp, &slice("web", &[ip1, ip2]))
        .await
        .expect("web slice");
    services
        .create(&pp, &service("empty", "10.43.0.51", None))
        .await
        .expect("empty");

    let mut config = ProxyConfig::new("node-a", Ipv4Addr::new(10, 42, 255, 1));
    config.min_sync_period = Duration::from_millis(50);
    config.healthz_bind_address = None;
    config.nft_command = ["ip", "netns", "exec", &node, "nft"]
        .map(String::from)
        .to_vec();
    let proxy = start_proxy(client.clone(), config.clone());

    // ClusterIP, spread over both endpoints.
    eventually("ClusterIP answers", Duration::from_secs(10), || async {
        connect(&node, "10.43.0.50", 80).ok()
    })
    .await;
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        let reply = connect(&node, "10.43.0.50", 80).expect("ClusterIP answers");
        *seen.entry(reply).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both endpoints get traffic: {seen:?}");
    assert!(
        seen.values().all(|n| *n >= 4),
        "spread is random, not skewed: {seen:?}"
    );

    // NodePort on the node's address.
    let reply = connect(&node, "10.42.255.1", 30080).expect("NodePort answers");
    assert!(reply.starts_with("pod"), "{reply}");

    // Hairpin: pod1 reaching itself through the Service.
    let mut hairpin = false;
    for _ in 0..30 {
        if connect(&pod1, "10.43.0.50", 80).as_deref() == Ok("pod1") {
            hairpin = true;
            break;
        }
    }
    assert!(hairpin, "pod1 reached itself through its Service");

    // No endpoints: rejected at once. Unallocated Service address: dropped (times out).
    let started = std::time::Instant::now();
    let err = connect(&node, "10.43.0.51", 80).expect_err("no endpoints");
    assert!(err.contains("refused"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(900));
    let err = connect(&node, "10.43.0.99", 80).expect_err("unallocated");
    assert!(!err.contains("refused"), "dropped, not rejected: {err}");
    // A wrong port on an allocated address is rejected.
    let err = connect(&node, "10.43.0.50", 81).expect_err("wrong port");
    assert!(err.contains("refused"), "{err}");

    // An endpoint change reaches the rules; then a restart leaves exactly one copy.
    slices
        .delete("web-1", &Default::default())
        .await
        .expect("delete slice");
    slices
        .create(&pp, &slice("web", &[ip2]))
        .await
        .expect("web slice");
    eventually("only pod2 behind web", Duration::from_secs(10), || async {
        let t = list(&node);
        (!t.contains("10.42.0.11 . 8080") && t.contains("10.42.0.12 . 8080")).then_some(())
    })
    .await;
    let before = list(&node);
    proxy.cancel();
    let proxy = start_proxy(client.clone(), config.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = eventually(
        "restarted proxy synced",
        Duration::from_secs(10),
        || async {
            let t = list(&node);
            (t.lines().count() == before.lines().count()).then_some(t)
        },
    )
    .await;
    assert_eq!(after.matches("chain services {").count(), 1);
    assert_eq!(
        after.matches("jump services").count(),
        2,
        "nat-prerouting and nat-output"
    );
    assert_eq!(connect(&node, "10.43.0.50", 80).as_deref(), Ok("pod2"));

    proxy.cancel();
    k8rs_proxy::cleanup(&config).expect("cleanup");
    assert!(list(&node).is_empty(), "table removed");
}

/// The node namespace with two pods behind it (as in the first test) and routes for the
/// Service range and the test's external addresses (10.42.250.0/24) through pod1's veth.
fn node_with_two_pods(lab: &mut Lab) -> (String, String) {
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
        "10.42.255.1/32",
        "dev",
        "lo",
    ]);
    let (pod1, veth1) = lab.pod(&node, Ipv4Addr::new(10, 42, 0, 11), "pod1");
    for range in ["10.43.0.0/16", "10.42.250.0/24"] {
        sh(&["ip", "-n", &node, "route", "add", range, "dev", &veth1]);
    }
    lab.pod(&node, Ipv4Addr::new(10, 42, 0, 12), "pod2");
    (node, pod1)
}

fn set_ready(mut s: EndpointSlice, ip: Ipv4Addr, ready: bool) -> EndpointSlice {
    for ep in &mut s.endpoints {
        if ep.addresses.first().map(String::as_str) == Some(&ip.to_string()) {
            ep.conditions = Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(false),
            });
        }
    }
    s
}

async fn http_status(port: u16) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_external_addresses_health_checks_and_readiness() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::default();
    let (node, pod1) = node_with_two_pods(&mut lab);
    let (ip1, ip2) = (Ipv4Addr::new(10, 42, 0, 11), Ipv4Addr::new(10, 42, 0, 12));
    let server = TestServer::start().await;
    let client = server.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let mut sticky = service("sticky", "10.43.0.60", None);
    if let Some(spec) = sticky.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
        spec.external_ips = Some(vec!["10.42.250.1".into()]);
    }
    services.create(&pp, &sticky).await.expect("sticky");
    slices
        .create(&pp, &slice("sticky", &[ip1, ip2]))
        .await
        .expect("slice");
    // A LoadBalancer allowing only pod1, with externalTrafficPolicy Local and a health port.
    let health_port = free_port();
    let mut lb = service("lb", "10.43.0.61", Some(30081));
    if let Some(spec) = lb.spec.as_mut() {
        spec.type_ = Some("LoadBalancer".into());
        spec.load_balancer_source_ranges = Some(vec!["10.42.0.11/32".into()]);
        spec.external_traffic_policy = Some("Local".into());
        spec.health_check_node_port = Some(i32::from(health_port));
    }
    let lb = services.create(&pp, &lb).await.expect("lb");
    let mut status = lb.clone();
    status.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
        load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
            ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                ip: Some("10.42.250.2".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    services
        .replace_status("lb", &pp, &status)
        .await
        .expect("lb status");
    let lb_slice = slices
        .create(&pp, &slice("lb", &[ip1, ip2]))
        .await
        .expect("lb slice");

    let mut config = ProxyConfig::new("node-a", Ipv4Addr::new(10, 42, 255, 1));
    config.min_sync_period = Duration::from_millis(100);
    config.healthz_bind_address = None;
    config.health_check_bind_ip = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.nft_command = ["ip", "netns", "exec", &node, "nft"]
        .map(String::from)
        .to_vec();
    let proxy = start_proxy(client.clone(), config.clone());

    // Session affinity: the same client keeps its endpoint across 20 connections.
    let first = eventually("sticky answers", Duration::from_secs(10), || async {
        connect(&node, "10.43.0.60", 80).ok()
    })
    .await;
    for _ in 0..20 {
        assert_eq!(
            connect(&node, "10.43.0.60", 80).as_deref(),
            Ok(first.as_str())
        );
    }
    // externalIPs reach the Service too.
    let reply = connect(&node, "10.42.250.1", 80).expect("external IP answers");
    assert!(reply.starts_with("pod"), "{reply}");
    // loadBalancerSourceRanges: pod1 (allowed) passes, the node's own address is dropped.
    let reply = connect(&pod1, "10.42.250.2", 80).expect("allowed source passes");
    assert!(reply.starts_with("pod"), "{reply}");
    let err = connect(&node, "10.42.250.2", 80).expect_err("other source dropped");
    assert!(!err.contains("refused"), "dropped, not rejected: {err}");

    // healthCheckNodePort: 200 with local endpoints, 503 once none is on this node.
    eventually("health port 200", Duration::from_secs(5), || async {
        (http_status(health_port).await == Some(200)).then_some(())
    })
    .await;
    let mut remote = lb_slice.clone();
    for ep in &mut remote.endpoints {
        ep.node_name = Some("node-b".into());
    }
    slices
        .replace("lb-1", &pp, &remote)
        .await
        .expect("remote lb");
    eventually("health port 503", Duration::from_secs(5), || async {
        (http_status(health_port).await == Some(503)).then_some(())
    })
    .await;

    // An endpoint that turns unready stops receiving traffic within a second.
    services
        .delete("sticky", &Default::default())
        .await
        .expect("delete sticky");
    let web = services
        .create(&pp, &service("web", "10.43.0.62", None))
        .await;
    web.expect("web");
    let web_slice = slices
        .create(&pp, &slice("web", &[ip1, ip2]))
        .await
        .expect("web slice");
    eventually("web answers from both", Duration::from_secs(10), || async {
        let replies: BTreeSet<String> = (0..20)
            .filter_map(|_| connect(&node, "10.43.0.62", 80).ok())
            .collect();
        (replies.len() == 2).then_some(())
    })
    .await;
    slices
        .replace("web-1", &pp, &set_ready(web_slice, ip1, false))
        .await
        .expect("unready");
    let written = std::time::Instant::now();
    let (mut last_pod1, mut tries, mut hits) = (Duration::ZERO, 0, 0);
    while written.elapsed() < Duration::from_secs(2) {
        tries += 1;
        if connect(&node, "10.43.0.62", 80).as_deref() == Ok("pod1") {
            last_pod1 = written.elapsed();
            hits += 1;
        }
    }
    println!(
        "unready endpoint: {hits} of {tries} connections reached it after the API write, \
         the last {last_pod1:?} after it"
    );
    assert!(last_pod1 < Duration::from_secs(1), "{last_pod1:?}");

    proxy.cancel();
    k8rs_proxy::cleanup(&config).expect("cleanup");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
