use super::*;
use crate::config::ProxyConfig;
use crate::nft::transaction_text;
use crate::render::skeleton;
use crate::state::TableState;
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn port(host_port: i32, container_port: i32, protocol: &str, host_ip: &str) -> ContainerPort {
    ContainerPort {
        host_port: Some(host_port),
        container_port,
        protocol: Some(protocol.into()),
        host_ip: (!host_ip.is_empty()).then(|| host_ip.to_string()),
        ..Default::default()
    }
}

fn pod(name: &str, ip: &str, phase: &str, ports: Vec<ContainerPort>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(ports),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
            pod_ips: (!ip.is_empty()).then(|| vec![PodIP { ip: ip.into() }]),
            ..Default::default()
        }),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

#[test]
fn running_pods_publish_their_host_ports() {
    let p = pod(
        "web",
        "10.42.0.7",
        "Running",
        vec![
            port(18080, 8080, "TCP", ""),
            port(18081, 8081, "UDP", "10.0.0.5"),
            port(18082, 8082, "SCTP", "0.0.0.0"),
            port(0, 9000, "TCP", ""),
            port(18083, 8083, "TCP", "fd00::1"),
        ],
    );
    let got = pod_host_ports(&p);
    let hp = |host_ip: Option<&str>, protocol, host_port, container_port| HostPort {
        host_ip: host_ip.map(ip),
        protocol,
        host_port,
        pod_ip: ip("10.42.0.7"),
        container_port,
    };
    assert_eq!(
        got,
        [
            hp(None, Proto::Tcp, 18080, 8080),
            hp(None, Proto::Sctp, 18082, 8082),
            hp(Some("10.0.0.5"), Proto::Udp, 18081, 8081),
        ]
    );
}

#[test]
fn pods_without_ip_finished_or_on_the_host_network_publish_nothing() {
    let ports = || vec![port(18080, 8080, "TCP", "")];
    assert!(pod_host_ports(&pod("a", "", "Pending", ports())).is_empty());
    assert!(pod_host_ports(&pod("a", "10.42.0.7", "Succeeded", ports())).is_empty());
    assert!(pod_host_ports(&pod("a", "10.42.0.7", "Failed", ports())).is_empty());
    let mut host = pod("a", "10.42.0.7", "Running", ports());
    if let Some(spec) = host.spec.as_mut() {
        spec.host_network = Some(true);
    }
    assert!(pod_host_ports(&host).is_empty());
    assert_eq!(
        pod_host_ports(&pod("a", "10.42.0.7", "Pending", ports())).len(),
        1
    );
}

#[test]
fn host_ports_are_map_elements_with_hairpin() {
    let p = pod(
        "web",
        "10.42.0.7",
        "Running",
        vec![
            port(18080, 8080, "TCP", ""),
            port(53, 5353, "UDP", "10.0.0.5"),
        ],
    );
    let f = hostport_fragment(&pod_host_ports(&p));
    assert!(f.chains.is_empty() && f.sets.is_empty());
    let lines: Vec<String> = f
        .elements
        .iter()
        .map(|(set, key, value)| match value {
            Some(v) => format!("{set} {key} : {v}"),
            None => format!("{set} {key}"),
        })
        .collect();
    assert_eq!(
        lines,
        [
            "hostport-any tcp . 18080 : 10.42.0.7 . 8080",
            "hairpin-endpoints 10.42.0.7 . 10.42.0.7",
            "hostport-ips 10.0.0.5 . udp . 53 : 10.42.0.7 . 5353",
        ]
    );
}

#[test]
fn skeleton_dispatches_local_destinations_to_host_ports() {
    let config = ProxyConfig::new("n1", ip("192.168.0.10"));
    let f = skeleton(&config, &[]);
    let rules = |chain: &str| -> Vec<String> {
        f.chains[chain]
            .rules
            .iter()
            .map(|r| r.to_string())
            .collect()
    };
    assert_eq!(
        rules("nat-prerouting"),
        ["fib daddr type local jump hostports", "jump services"]
    );
    assert_eq!(
        rules("nat-output"),
        ["fib daddr type local jump hostports", "jump services"]
    );
    assert_eq!(
        rules(HOSTPORTS_CHAIN),
        [
            "ip saddr 127.0.0.0/8 ip daddr . meta l4proto . th dport @hostport-ips jump mark-for-masquerade",
            "dnat ip to ip daddr . meta l4proto . th dport map @hostport-ips",
            "ip saddr 127.0.0.0/8 meta l4proto . th dport @hostport-any jump mark-for-masquerade",
            "dnat ip to meta l4proto . th dport map @hostport-any",
        ]
    );
    assert_eq!(
        rules("filter-input")[0],
        "iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop"
    );
    assert_eq!(f.sets[HOSTPORT_IPS], SetKind::HostPortIps);
    assert_eq!(f.sets[HOSTPORT_ANY], SetKind::HostPortAny);
}

#[test]
fn a_pod_coming_and_going_is_one_small_transaction() {
    let config = ProxyConfig::new("n1", ip("192.168.0.10"));
    let mut state = TableState::new(skeleton(&config, &[]));
    let name = PodName {
        namespace: "ns".into(),
        name: "web".into(),
    };
    let p = pod(
        "web",
        "10.42.0.7",
        "Running",
        vec![port(18080, 8080, "TCP", "")],
    );
    let f = hostport_fragment(&pod_host_ports(&p));
    let added = transaction_text(&state.update(vec![(name.clone(), Some(f))]));
    assert_eq!(
        added,
        "add element ip k8rs-proxy hairpin-endpoints { 10.42.0.7 . 10.42.0.7 }\n\
         add element ip k8rs-proxy hostport-any { tcp . 18080 : 10.42.0.7 . 8080 }\n"
    );
    let removed = transaction_text(&state.update(vec![(name, None)]));
    assert_eq!(
        removed,
        "delete element ip k8rs-proxy hairpin-endpoints { 10.42.0.7 . 10.42.0.7 }\n\
         delete element ip k8rs-proxy hostport-any { tcp . 18080 }\n"
    );
}
