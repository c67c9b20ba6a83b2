//! An SCTP ClusterIP Service programmed by the proxy inside network namespaces this test
//! creates (no default route on the "node", no link to the host; the network-safety guard
//! first), checked with real SCTP packets.
//!
//! This machine's kernel has no SCTP sockets (`CONFIG_IP_SCTP` is off and there is no
//! `modprobe`: no `/proc/net/sctp`), but its netfilter tracks and NATs SCTP
//! (`CONFIG_NF_CT_PROTO_SCTP=y`), which is all a Service needs; so the proxy programs SCTP
//! Services exactly as upstream does and this test speaks SCTP over raw IP sockets: a client
//! sends an INIT to the ClusterIP, an endpoint pod answers every INIT to its target port with an
//! INIT ACK whose initiate tag is its own address, and the client checks that the answer comes
//! from the ClusterIP and Service port (reverse NAT) with the tag of one of the endpoints. A
//! Service without endpoints is rejected with ICMP port unreachable.
//!
//! The endpoint and the client are this test binary, run inside the namespaces with
//! `ip netns exec` as one of the helper tests below (which do nothing unless their environment
//! variable is set).

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use k8rs_testing::{eventually, netguard};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use support::{
    ApiServer, Lab, Pod, helper_output, helper_test, nft_table, proxy_config, quiet, service,
    slice, start_proxy,
};

const ENDPOINT_ENV: &str = "K8RS_SCTP_ENDPOINT_PORT";
const CLIENT_ENV: &str = "K8RS_SCTP_CLIENT";
const VIP: &str = "10.43.0.80";
const EMPTY_VIP: &str = "10.43.0.81";
const PORT: u16 = 9;
const TARGET: u16 = 9999;
const IPPROTO_SCTP: i32 = 132;
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;

/// An SCTP packet: common header and its first chunk (INIT or INIT ACK, no parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sctp {
    src_port: u16,
    dst_port: u16,
    vtag: u32,
    chunk: u8,
    initiate_tag: u32,
}

impl Sctp {
    /// The packet's bytes, CRC32c included.
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(32);
        p.extend(self.src_port.to_be_bytes());
        p.extend(self.dst_port.to_be_bytes());
        p.extend(self.vtag.to_be_bytes());
        p.extend([0; 4]); // checksum, below
        p.extend([self.chunk, 0]);
        p.extend(20u16.to_be_bytes()); // chunk length
        p.extend(self.initiate_tag.to_be_bytes());
        p.extend(65535u32.to_be_bytes()); // advertised receiver window
        p.extend(1u16.to_be_bytes()); // outbound streams
        p.extend(1u16.to_be_bytes()); // inbound streams
        p.extend(1u32.to_be_bytes()); // initial TSN
        let crc = crc32c(&p);
        p[8..12].copy_from_slice(&crc.to_le_bytes());
        p
    }

    /// The SCTP packet in an IPv4 datagram `ip` (as a raw socket reads it), and its source and
    /// destination addresses.
    fn decode(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, Sctp)> {
        let (src, dst, payload) = ipv4_payload(ip, IPPROTO_SCTP)?;
        let word = |at: usize| u32::from_be_bytes([0, 1, 2, 3].map(|i| payload[at + i]));
        if payload.len() < 20 {
            return None;
        }
        let sctp = Sctp {
            src_port: u16::from_be_bytes([payload[0], payload[1]]),
            dst_port: u16::from_be_bytes([payload[2], payload[3]]),
            vtag: word(4),
            chunk: payload[12],
            initiate_tag: word(16),
        };
        Some((src, dst, sctp))
    }
}

/// The source, destination and payload of IPv4 datagram `ip` if it carries `protocol`.
fn ipv4_payload(ip: &[u8], protocol: i32) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let header = usize::from(ip.first()? & 0x0f) * 4;
    if ip.len() < header.max(20) || i32::from(ip[9]) != protocol {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some((addr(12), addr(16), &ip[header..]))
}

/// CRC32c (Castagnoli), as SCTP uses it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

fn raw_socket(protocol: i32, timeout: Duration) -> Socket {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(protocol)))
        .expect("raw socket (root)");
    sock.set_read_timeout(Some(timeout)).expect("timeout");
    sock
}

fn to(ip: Ipv4Addr) -> SockAddr {
    SockAddr::from(SocketAddrV4::new(ip, 0))
}

/// Helper mode: an SCTP endpoint on port `$ENDPOINT_ENV`, answering every INIT with an INIT
/// ACK whose initiate tag is the address the INIT was sent to.
#[test]
fn sctp_endpoint_helper() {
    let Some(port) = std::env::var(ENDPOINT_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
    else {
        return;
    };
    let sock = raw_socket(IPPROTO_SCTP, Duration::from_secs(60));
    let mut buf = [0u8; 1500];
    loop {
        let Ok(n) = (&sock).read(&mut buf) else {
            continue;
        };
        let Some((from, me, init)) = Sctp::decode(&buf[..n]) else {
            continue;
        };
        if init.chunk != INIT || init.dst_port != port {
            continue;
        }
        let ack = Sctp {
            src_port: port,
            dst_port: init.src_port,
            vtag: init.initiate_tag,
            chunk: INIT_ACK,
            initiate_tag: u32::from(me),
        };
        let _ = sock.send_to(&ack.encode(), &to(from));
    }
}

/// Helper mode: `$CLIENT_ENV` = "DST_IP:DST_PORT SRC_PORT TAG"; sends one INIT and prints
/// `ACK from=<source address> port=<source port> tag=<initiate tag as an address>` for the
/// INIT ACK answering it, `REFUSED` for an ICMP port unreachable about it, or `NONE` after 1 s.
#[test]
fn sctp_client_helper() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    let dst: SocketAddrV4 = words[0].parse().expect("destination");
    let (src_port, tag): (u16, u32) = (
        words[1].parse().expect("port"),
        words[2].parse().expect("tag"),
    );
    let sctp = raw_socket(IPPROTO_SCTP, Duration::from_millis(20));
    let icmp = raw_socket(1, Duration::from_millis(20));
    let init = Sctp {
        src_port,
        dst_port: dst.port(),
        vtag: 0,
        chunk: INIT,
        initiate_tag: tag,
    };
    if let Err(e) = sctp.send_to(&init.encode(), &to(*dst.ip())) {
        println!("SEND={:?}", e.kind());
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        if let Ok(n) = (&sctp).read(&mut buf)
            && let Some((from, _, ack)) = Sctp::decode(&buf[..n])
            && ack.chunk == INIT_ACK
            && ack.dst_port == src_port
            && ack.vtag == tag
        {
            let tag = Ipv4Addr::from(ack.initiate_tag);
            println!("ACK from={from} port={} tag={tag}", ack.src_port);
            return;
        }
        if let Ok(n) = (&icmp).read(&mut buf)
            && is_port_unreachable_for(&buf[..n], &init)
        {
            println!("REFUSED");
            return;
        }
    }
    println!("NONE");
}

/// Whether IPv4 datagram `ip` is an ICMP port unreachable about `sent`.
fn is_port_unreachable_for(ip: &[u8], sent: &Sctp) -> bool {
    let Some((_, _, icmp)) = ipv4_payload(ip, 1) else {
        return false;
    };
    if icmp.len() < 8 || icmp[0] != 3 || icmp[1] != 3 {
        return false;
    }
    let Some((_, _, quoted)) = ipv4_payload(&icmp[8..], IPPROTO_SCTP) else {
        return false;
    };
    quoted.len() >= 4
        && quoted[..2] == sent.src_port.to_be_bytes()
        && quoted[2..4] == sent.dst_port.to_be_bytes()
}

/// What one INIT got.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// An INIT ACK from this address and port, tagged with this endpoint address.
    Ack(String, u16, String),
    Refused,
    Nothing,
}

/// One INIT from namespace `ns` to `dst` from source port `src_port`.
fn ask(ns: &str, dst: &str, src_port: u16) -> Answer {
    let spec = format!("{dst} {src_port} {}", 0x1000_0000 + u32::from(src_port));
    let stdout = helper_output(ns, "sctp_client_helper", CLIENT_ENV, &spec).expect("client");
    // libtest may print its own words before the helper's on the same line.
    if let Some((_, rest)) = stdout.split_once("ACK ") {
        let field = |name: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_default()
                .to_string()
        };
        let port = field("port=").parse().unwrap_or(0);
        return Answer::Ack(field("from="), port, field("tag="));
    }
    if stdout.contains("REFUSED") {
        return Answer::Refused;
    }
    Answer::Nothing
}

/// A pod at `ip` behind `node` running the SCTP endpoint on [`TARGET`].
fn sctp_pod(lab: &mut Lab, node: &str, ip: Ipv4Addr) -> Pod {
    let pod = lab.pod(node, ip).expect("pod");
    let target = TARGET.to_string();
    let helper = helper_test(&pod.ns, "sctp_endpoint_helper", ENDPOINT_ENV, &target);
    lab.spawn(quiet(helper.expect("helper"))).expect("endpoint");
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sctp_service_reaches_both_endpoints_through_the_cluster_ip() {
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::new("proxy-sctp");
    let node = lab.node().expect("node");
    let (ip1, ip2) = (Ipv4Addr::new(10, 42, 0, 31), Ipv4Addr::new(10, 42, 0, 32));
    let pod1 = sctp_pod(&mut lab, &node, ip1);
    sctp_pod(&mut lab, &node, ip2);
    lab.route(&node, "10.43.0.0/16", &pod1.veth).expect("route");
    let client = lab.pod(&node, Ipv4Addr::new(10, 42, 0, 33)).expect("pod");

    let api = ApiServer::start().await;
    for (name, vip) in [("assoc", VIP), ("empty", EMPTY_VIP)] {
        let svc = service(name, vip, "SCTP", PORT, TARGET);
        api.create_service(&svc).await.expect("service");
    }
    let eps = slice("assoc", "SCTP", TARGET, &[ip1, ip2]);
    api.create_slice(&eps).await.expect("slice");
    let config = proxy_config(&node, Duration::from_millis(50));
    let proxy = start_proxy(api.client(), config.clone());
    let programmed = [
        format!("{VIP} . sctp . {PORT} . 0x00000000 : {ip1} . {TARGET}"),
        format!("{VIP} . sctp . {PORT} . 0x00000001 : {ip2} . {TARGET}"),
        format!("{EMPTY_VIP} . sctp . {PORT} : goto reject-chain"),
    ];
    eventually(
        "SCTP Services programmed",
        Duration::from_secs(10),
        || async {
            let table = nft_table(&node);
            programmed.iter().all(|p| table.contains(p)).then_some(())
        },
    )
    .await;

    // From a pod (forwarded by the node) and from the node itself: the answer comes back from
    // the ClusterIP and Service port; new associations spread over both endpoints.
    let dst = format!("{VIP}:{PORT}");
    for (who, ns) in [("a pod", &client.ns), ("the node", &node)] {
        let mut tags = BTreeSet::new();
        for src_port in 40000..40020 {
            match ask(ns, &dst, src_port) {
                Answer::Ack(from, port, tag) if from == VIP && port == PORT => {
                    tags.insert(tag);
                }
                other => panic!("{who}: INIT to {dst} got {other:?}"),
            }
        }
        let want = BTreeSet::from([ip1.to_string(), ip2.to_string()]);
        assert_eq!(tags, want, "{who}: both endpoints answer");
    }
    let answer = ask(&client.ns, &format!("{EMPTY_VIP}:{PORT}"), 40100);
    assert_eq!(answer, Answer::Refused, "a Service without endpoints");

    proxy.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    k8rs_proxy::cleanup(&config).expect("cleanup");
}
