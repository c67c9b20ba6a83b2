//! UDP Services programmed by the proxy inside network namespaces this test creates (no default
//! route on the "node", no link to the host; the network-safety guard first):
//!
//! - both endpoints answer, and removing an endpoint flushes its stale conntrack entry so the
//!   next datagram of the same 5-tuple reaches the remaining endpoint;
//! - a Service without endpoints is rejected with ICMP port unreachable (a connected client
//!   socket sees ECONNREFUSED), from the node itself and from a pod, as upstream's nftables
//!   mode does; a wrong port on a Service address is rejected too; an unallocated address of
//!   the Service range is dropped (no answer at all).
//!
//! busybox `nc` has no UDP mode here, so the echo servers and the client are this test binary
//! itself, started inside the namespaces with `ip netns exec` to run one of the two helper
//! tests below (which do nothing unless their environment variable is set).

mod support;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8rs_testing::{eventually, netguard};
use kube::api::PostParams;
use support::{
    ApiServer, Lab, NODE_IP, Pod, helper_output, helper_test, nft_table, proxy_config, quiet,
    service, sh, slice, start_proxy,
};

const ECHO_ENV: &str = "K8RS_UDP_ECHO_REPLY";
const CLIENT_ENV: &str = "K8RS_UDP_CLIENT";
const VIP: &str = "10.43.0.70";
const EP_PORT: u16 = 5353;

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

/// Helper mode: `$CLIENT_ENV` = "SRC_IP:SRC_PORT DST_IP:DST_PORT"; sends one datagram on a
/// socket bound to SRC and connected to DST, and prints `REPLY=<answer>`, `REFUSED` (an ICMP
/// port unreachable came back) or `NONE` (nothing within 500 ms). A failed send is printed
/// (`SEND=<error>`) and the answer still awaited: a datagram of the node's own that a filter
/// rule drops or rejects in the output hook fails its send with EPERM, and the ICMP error of
/// a reject still reaches the socket.
#[test]
fn udp_client_helper() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    let (src, dst) = spec.split_once(' ').expect("two addresses");
    let sock = UdpSocket::bind(src).expect("bind client");
    sock.connect(dst).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    if let Err(e) = sock.send(b"ping") {
        println!("SEND={:?}", e.kind());
    }
    let mut buf = [0u8; 512];
    match sock.recv(&mut buf) {
        Ok(n) => println!("REPLY={}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => println!("REFUSED"),
        Err(e) => println!("NONE {:?}", e.kind()),
    }
}

/// What one datagram from `src` to `dst` got.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Reply(String),
    Refused,
    Nothing,
}

/// One datagram from `src` to `dst` in namespace `ns` (through `udp_client_helper`).
fn ask(ns: &str, src: &str, dst: &str) -> Answer {
    let spec = format!("{src} {dst}");
    let stdout = helper_output(ns, "udp_client_helper", CLIENT_ENV, &spec).expect("client");
    // libtest may print its own words before the helper's on the same line.
    if let Some((_, rest)) = stdout.split_once("REPLY=") {
        let reply = rest.lines().next().unwrap_or_default();
        return Answer::Reply(reply.to_string());
    }
    if stdout.contains("REFUSED") {
        return Answer::Refused;
    }
    Answer::Nothing
}

/// One datagram from `NODE_IP:src_port` in namespace `ns` to the Service; the reply, if any.
fn from_node(ns: &str, src_port: u16) -> Option<String> {
    match ask(ns, &format!("{NODE_IP}:{src_port}"), &format!("{VIP}:53")) {
        Answer::Reply(reply) => Some(reply),
        _ => None,
    }
}

/// A pod at `ip` behind `node` echoing `reply` on UDP 5353.
fn echo_pod(lab: &mut Lab, node: &str, ip: Ipv4Addr, reply: &str) -> Pod {
    let pod = lab.pod(node, ip).expect("pod");
    let echo = helper_test(&pod.ns, "udp_echo_helper", ECHO_ENV, reply).expect("helper");
    lab.spawn(quiet(echo)).expect("echo server");
    pod
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_service_answers_and_stale_conntrack_is_flushed() {
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::new("proxy-udp");
    let node = lab.node().expect("node");
    let (ip1, ip2) = (Ipv4Addr::new(10, 42, 0, 21), Ipv4Addr::new(10, 42, 0, 22));
    let pod1 = echo_pod(&mut lab, &node, ip1, "pod1");
    echo_pod(&mut lab, &node, ip2, "pod2");
    // The node's route for the Service range leads only to pod1's veth inside the test.
    lab.route(&node, "10.43.0.0/16", &pod1.veth).expect("route");

    let api = ApiServer::start().await;
    let (client, services, slices) = (api.client(), &api.services, &api.slices);
    let pp = PostParams::default();
    services
        .create(&pp, &service("dns", VIP, "UDP", 53, EP_PORT))
        .await
        .expect("service");
    let created = slices
        .create(&pp, &slice("dns", "UDP", EP_PORT, &[ip1, ip2]))
        .await
        .expect("slice");

    let config = proxy_config(&node, Duration::from_millis(50));
    let proxy = start_proxy(client.clone(), config.clone());

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
    let replies: BTreeSet<String> = (0..20)
        .filter_map(|i| from_node(&node, 41000 + i))
        .collect();
    assert_eq!(replies, BTreeSet::from(["pod1".into(), "pod2".into()]));

    // One fixed client 5-tuple; its conntrack entry names the endpoint it was sent to.
    const SRC: u16 = 40000;
    let first = from_node(&node, SRC).expect("the Service answers");
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
    assert_eq!(
        from_node(&node, SRC).as_deref(),
        Some(gone),
        "the flow sticks"
    );

    // The endpoint that served the flow is removed from the EndpointSlice.
    let mut shrunk = slice("dns", "UDP", EP_PORT, &[stays_ip]);
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
    assert_eq!(from_node(&node, SRC).as_deref(), Some(stays));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_without_endpoints_is_rejected_and_unallocated_is_dropped() {
    const EMPTY: &str = "10.43.0.72";
    const UNALLOCATED: &str = "10.43.0.99";
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::new("proxy-udp");
    let node = lab.node().expect("node");
    // The node routes the Service range to a pod that owns the unallocated address: a datagram
    // to it that got past the proxy would come back as port unreachable, and one to the empty
    // Service would vanish. So REFUSED for the empty Service and silence for the unallocated
    // address are the proxy's verdicts (checked again below without the proxy).
    let sink = lab.pod(&node, Ipv4Addr::new(10, 42, 0, 25)).expect("pod");
    let vip32 = format!("{UNALLOCATED}/32");
    sh(&["ip", "-n", &sink.ns, "addr", "add", &vip32, "dev", "lo"]).expect("address");
    lab.route(&node, "10.43.0.0/16", &sink.veth).expect("route");
    let client = lab.pod(&node, Ipv4Addr::new(10, 42, 0, 26)).expect("pod");

    let api = ApiServer::start().await;
    let empty = service("empty", EMPTY, "UDP", 53, EP_PORT);
    api.create_service(&empty).await.expect("service");
    let config = proxy_config(&node, Duration::from_millis(50));
    let proxy = start_proxy(api.client(), config.clone());
    let rejected = format!("{EMPTY} . udp . 53 : goto reject-chain");
    eventually(
        "no-endpoint verdict programmed",
        Duration::from_secs(10),
        || async { nft_table(&node).contains(&rejected).then_some(()) },
    )
    .await;

    let any = "0.0.0.0:0";
    for (who, ns) in [("the node", &node), ("a pod", &client.ns)] {
        let started = Instant::now();
        let answer = ask(ns, any, &format!("{EMPTY}:53"));
        assert_eq!(
            answer,
            Answer::Refused,
            "{who} to a Service without endpoints"
        );
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "{who}: at once"
        );
        let answer = ask(ns, any, &format!("{EMPTY}:54"));
        assert_eq!(answer, Answer::Refused, "{who} to a wrong port");
        let answer = ask(ns, any, &format!("{UNALLOCATED}:53"));
        assert_eq!(answer, Answer::Nothing, "{who} to an unallocated address");
    }

    proxy.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    k8rs_proxy::cleanup(&config).expect("cleanup");
    assert_eq!(
        ask(&node, any, &format!("{UNALLOCATED}:53")),
        Answer::Refused
    );
    assert_eq!(ask(&node, any, &format!("{EMPTY}:53")), Answer::Nothing);
}
