//! The model over small fixtures.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use crate::model::{
    Allow, NamedPort, Peers, PodInfo, PodRules, PortMatch, Ports, Proto, Snapshot, compute,
    policy_types,
};
use crate::ranges::Range;

pub(crate) fn pod(ns: &str, name: &str, ip: &str, node: &str, labels: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        ip: ip.parse().expect("ip"),
        node: node.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: Vec::new(),
    }
}

pub(crate) fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .expect("policy")
}

fn snapshot(policies: Vec<NetworkPolicy>, pods: Vec<PodInfo>) -> Snapshot {
    let mut namespaces = BTreeMap::new();
    namespaces.insert("default".to_string(), BTreeMap::new());
    namespaces.insert(
        "prod".to_string(),
        BTreeMap::from([("env".to_string(), "prod".to_string())]),
    );
    Snapshot {
        policies,
        pods,
        namespaces,
    }
}

fn ips(list: &[&str]) -> Peers {
    Peers::Ranges(
        list.iter()
            .map(|s| Range::parse_cidr(s).expect("cidr"))
            .collect(),
    )
}

fn tcp(port: u16) -> PortMatch {
    PortMatch {
        proto: Proto::Tcp,
        ports: Some((port, port)),
    }
}

fn fixture_pods() -> Vec<PodInfo> {
    vec![
        pod("default", "web", "10.42.0.2", "n1", &[("app", "web")]),
        pod(
            "default",
            "client",
            "10.42.0.3",
            "n1",
            &[("role", "client")],
        ),
        pod("default", "other", "10.42.1.4", "n2", &[("role", "client")]),
        pod("prod", "db", "10.42.1.5", "n2", &[("app", "db")]),
    ]
}

fn rules_of(snap: &Snapshot, name: &str) -> Option<PodRules> {
    compute(snap, "n1").remove(&("default".to_string(), name.to_string()))
}

#[test]
fn no_policy_means_no_isolation() {
    let snap = snapshot(vec![], fixture_pods());
    assert!(compute(&snap, "n1").is_empty());
}

#[test]
fn empty_pod_selector_with_no_rules_denies_all_ingress_of_local_pods_only() {
    let snap = snapshot(
        vec![policy("default", "deny", json!({"podSelector": {}}))],
        fixture_pods(),
    );
    let got = compute(&snap, "n1");
    let names: Vec<&str> = got.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(names, ["client", "web"]); // "other" is on n2, "db" in prod
    let web = &got[&("default".to_string(), "web".to_string())];
    assert_eq!(web.ingress, Some(vec![]));
    assert_eq!(web.egress, None);
    assert_eq!(web.ip, Ipv4Addr::new(10, 42, 0, 2));
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
    let p = |spec| policy("default", "p", spec);
    assert_eq!(policy_types(&p(json!({"podSelector": {}}))), (true, false));
    assert_eq!(
        policy_types(&p(json!({"podSelector": {}, "egress": [{}]}))),
        (true, true)
    );
    assert_eq!(
        policy_types(&p(json!({"podSelector": {}, "policyTypes": ["Egress"]}))),
        (false, true)
    );
}

#[test]
fn pod_selector_peer_is_scoped_to_the_policy_namespace() {
    let snap = snapshot(
        vec![policy(
            "default",
            "allow-clients",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
        )],
        fixture_pods(),
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(
        web.ingress,
        Some(vec![Allow {
            peers: ips(&["10.42.0.3", "10.42.1.4"]),
            ports: Ports::Any,
        }])
    );
    assert!(rules_of(&snap, "client").is_none());
}

#[test]
fn namespace_selector_alone_and_with_pod_selector() {
    let spec = |peer: Value| json!({"podSelector": {}, "ingress": [{"from": [peer]}]});
    let snap = snapshot(
        vec![policy(
            "default",
            "a",
            spec(json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}})),
        )],
        fixture_pods(),
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(web.ingress.expect("ingress")[0].peers, ips(&["10.42.1.5"]));

    // An empty namespaceSelector is every namespace; with a podSelector both must match.
    let snap = snapshot(
        vec![policy(
            "default",
            "b",
            spec(json!({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}})),
        )],
        fixture_pods(),
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(web.ingress.expect("ingress")[0].peers, ips(&["10.42.1.5"]));

    // An empty podSelector alone is every pod of the policy's namespace.
    let snap = snapshot(
        vec![policy("default", "c", spec(json!({"podSelector": {}})))],
        fixture_pods(),
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(
        web.ingress.expect("ingress")[0].peers,
        ips(&["10.42.0.2", "10.42.0.3", "10.42.1.4"])
    );
}

#[test]
fn ip_block_except_and_ports_with_end_port() {
    let snap = snapshot(
        vec![policy(
            "default",
            "p",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                               "ports": [{"port": 5000, "endPort": 5010}, {"protocol": "UDP", "port": 53}, {"protocol": "SCTP"}]}]}),
        )],
        fixture_pods(),
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(web.ingress, None);
    assert_eq!(
        web.egress,
        Some(vec![Allow {
            peers: Peers::Ranges(vec![
                span("192.168.0.0", "192.168.0.255"),
                span("192.168.2.0", "192.168.255.255"),
            ]),
            ports: Ports::List(vec![
                PortMatch {
                    proto: Proto::Tcp,
                    ports: Some((5000, 5010))
                },
                PortMatch {
                    proto: Proto::Udp,
                    ports: Some((53, 53))
                },
                PortMatch {
                    proto: Proto::Sctp,
                    ports: None
                },
            ]),
        }])
    );
}

fn span(a: &str, b: &str) -> Range {
    let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().expect("ip"));
    Range {
        start: ip(a),
        end: ip(b),
    }
}

#[test]
fn named_ports_resolve_against_the_destination_pod() {
    let mut pods = fixture_pods();
    pods[0].ports = vec![NamedPort {
        name: "http".into(),
        proto: Proto::Tcp,
        port: 8080,
    }];
    pods[3].ports = vec![NamedPort {
        name: "http".into(),
        proto: Proto::Tcp,
        port: 9090,
    }];
    let snap = snapshot(
        vec![
            policy(
                "default",
                "in",
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"ports": [{"port": "http"}, {"port": "missing"}]}]}),
            ),
            policy(
                "default",
                "out",
                json!({"podSelector": {"matchLabels": {"role": "client"}},
                       "egress": [{"ports": [{"port": "http"}]}]}),
            ),
        ],
        pods,
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(
        web.ingress,
        Some(vec![Allow {
            peers: Peers::Any,
            ports: Ports::List(vec![tcp(8080)]),
        }])
    );
    // Egress: each peer pod's own number for "http".
    let client = rules_of(&snap, "client").expect("selected");
    assert_eq!(client.ingress, Some(vec![]));
    assert_eq!(
        client.egress,
        Some(vec![
            Allow {
                peers: ips(&["10.42.0.2"]),
                ports: Ports::List(vec![tcp(8080)]),
            },
            Allow {
                peers: ips(&["10.42.1.5"]),
                ports: Ports::List(vec![tcp(9090)]),
            },
        ])
    );
}

#[test]
fn several_policies_are_a_union() {
    let snap = snapshot(
        vec![
            policy("default", "deny", json!({"podSelector": {}})),
            policy(
                "default",
                "web-80",
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"ports": [{"port": 80}]}]}),
            ),
            policy(
                "default",
                "web-from-client",
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
            ),
        ],
        fixture_pods(),
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(
        web.ingress,
        Some(vec![
            Allow {
                peers: Peers::Any,
                ports: Ports::List(vec![tcp(80)]),
            },
            Allow {
                peers: ips(&["10.42.0.3", "10.42.1.4"]),
                ports: Ports::Any,
            },
        ])
    );
}

#[test]
fn host_network_and_finished_pods_are_exempt() {
    let mk = |host_network: bool, phase: &str| Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            host_network: Some(host_network),
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            pod_ip: Some("10.42.0.9".into()),
            ..Default::default()
        }),
    };
    let info = PodInfo::from_pod(&mk(false, "Running")).expect("counted");
    assert_eq!(
        info.ports,
        vec![NamedPort {
            name: "http".into(),
            proto: Proto::Tcp,
            port: 8080
        }]
    );
    assert_eq!(info.node, "n1");
    assert!(PodInfo::from_pod(&mk(true, "Running")).is_none());
    assert!(PodInfo::from_pod(&mk(false, "Succeeded")).is_none());
}

#[test]
fn rules_with_unmatched_peers_admit_nothing() {
    let snap = snapshot(
        vec![policy(
            "default",
            "p",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"nobody": "x"}}}]}]}),
        )],
        fixture_pods(),
    );
    let web = rules_of(&snap, "web").expect("selected");
    assert_eq!(
        web.ingress,
        Some(vec![Allow {
            peers: Peers::Ranges(vec![]),
            ports: Ports::Any,
        }])
    );
}
