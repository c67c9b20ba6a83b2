//! The proxy programming a network namespace from a real API server, checked with real
//! traffic. Everything runs inside namespaces this test creates (no default route on the
//! "node", no link to the host) after the network-safety guard is in place.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8rs_testing::{eventually, netguard};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};
use kube::api::PostParams;
use support::{
    ApiServer, Lab, Pod, busybox_echo, connect, nft_table, proxy_config, quiet, service, slice,
    start_proxy, with_node_port,
};

/// A pod at `ip` behind `node` answering `reply` on TCP 8080.
fn echo_pod(lab: &mut Lab, node: &str, ip: Ipv4Addr, reply: &str) -> Pod {
    let pod = lab.pod(node, ip).expect("pod");
    lab.spawn(quiet(busybox_echo(&pod.ns, 8080, reply)))
        .expect("busybox nc");
    pod
}

/// The TCP Service `name` at `ip`, port 80 to 8080, NodePort `node_port` if given.
fn tcp_service(name: &str, ip: &str, node_port: Option<u16>) -> Service {
    let svc = service(name, ip, "TCP", 80, 8080);
    match node_port {
        Some(port) => with_node_port(svc, port),
        None => svc,
    }
}

fn tcp_slice(svc: &str, ips: &[Ipv4Addr]) -> EndpointSlice {
    slice(svc, "TCP", 8080, ips)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_endpoints_and_safety_verdicts_hold() {
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::new("proxy-test");
    let (ip1, ip2) = (Ipv4Addr::new(10, 42, 0, 11), Ipv4Addr::new(10, 42, 0, 12));
    let (node, pod1) = node_with_two_pods(&mut lab);

    let api = ApiServer::start().await;
    let (client, services, slices) = (api.client(), &api.services, &api.slices);
    let pp = PostParams::default();
    services
        .create(&pp, &tcp_service("web", "10.43.0.50", Some(30080)))
        .await
        .expect("web");
    slices
        .create(&pp, &tcp_slice("web", &[ip1, ip2]))
        .await
        .expect("web slice");
    services
        .create(&pp, &tcp_service("empty", "10.43.0.51", None))
        .await
        .expect("empty");

    let config = proxy_config(&node, Duration::from_millis(50));
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
        .create(&pp, &tcp_slice("web", &[ip2]))
        .await
        .expect("web slice");
    eventually("only pod2 behind web", Duration::from_secs(10), || async {
        let t = nft_table(&node);
        (!t.contains("10.42.0.11 . 8080") && t.contains("10.42.0.12 . 8080")).then_some(())
    })
    .await;
    let before = nft_table(&node);
    proxy.cancel();
    let proxy = start_proxy(client.clone(), config.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = eventually(
        "restarted proxy synced",
        Duration::from_secs(10),
        || async {
            let t = nft_table(&node);
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
    assert!(nft_table(&node).is_empty(), "table removed");
}

/// A node namespace with pods 10.42.0.11 ("pod1") and 10.42.0.12 ("pod2") behind it, and
/// routes for the Service range and the test's external addresses (10.42.250.0/24) through
/// pod1's veth; the node's namespace and pod1's.
fn node_with_two_pods(lab: &mut Lab) -> (String, String) {
    let node = lab.node().expect("node");
    let pod1 = echo_pod(lab, &node, Ipv4Addr::new(10, 42, 0, 11), "pod1");
    for range in ["10.43.0.0/16", "10.42.250.0/24"] {
        lab.route(&node, range, &pod1.veth).expect("route");
    }
    echo_pod(lab, &node, Ipv4Addr::new(10, 42, 0, 12), "pod2");
    (node, pod1.ns)
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
    let mut lab = Lab::new("proxy-test");
    let (node, pod1) = node_with_two_pods(&mut lab);
    let (ip1, ip2) = (Ipv4Addr::new(10, 42, 0, 11), Ipv4Addr::new(10, 42, 0, 12));
    let api = ApiServer::start().await;
    let (client, services, slices) = (api.client(), &api.services, &api.slices);
    let pp = PostParams::default();

    let mut sticky = tcp_service("sticky", "10.43.0.60", None);
    if let Some(spec) = sticky.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
        spec.external_ips = Some(vec!["10.42.250.1".into()]);
    }
    services.create(&pp, &sticky).await.expect("sticky");
    slices
        .create(&pp, &tcp_slice("sticky", &[ip1, ip2]))
        .await
        .expect("slice");
    // A LoadBalancer allowing only pod1, with externalTrafficPolicy Local and a health port.
    let health_port = free_port();
    let mut lb = tcp_service("lb", "10.43.0.61", Some(30081));
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
        .create(&pp, &tcp_slice("lb", &[ip1, ip2]))
        .await
        .expect("lb slice");

    let mut config = proxy_config(&node, Duration::from_millis(100));
    config.health_check_bind_ip = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);
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
        .create(&pp, &tcp_service("web", "10.43.0.62", None))
        .await;
    web.expect("web");
    let web_slice = slices
        .create(&pp, &tcp_slice("web", &[ip1, ip2]))
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
