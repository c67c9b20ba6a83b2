//! The route, FDB and device plans from Node fixtures.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};

use crate::config::{Backend, Cidr, PodNetConfig};
use crate::plan::*;

fn cidr(s: &str) -> Cidr {
    s.parse().expect("cidr")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

/// A Node named `name` with InternalIP `addr` and podCIDR `pod_cidr`.
struct NodeBuilder(Node);

impl NodeBuilder {
    fn new(name: &str, addr: &str, pod_cidr: &str) -> Self {
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node.spec = Some(NodeSpec {
            pod_cidr: Some(pod_cidr.into()),
            pod_cidrs: Some(vec![pod_cidr.into()]),
            ..NodeSpec::default()
        });
        node.status = Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.into(),
                },
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: addr.into(),
                },
            ]),
            ..NodeStatus::default()
        });
        NodeBuilder(node)
    }

    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    fn vxlan(self) -> Self {
        let mac = vtep_mac(node_ip(&self.0).expect("ip"));
        self.annotate(VXLAN_MAC_ANNOTATION, &mac)
    }

    fn build(self) -> Node {
        self.0
    }
}

fn config(backend: Backend) -> PodNetConfig {
    let mut c = PodNetConfig::new("a", ip("192.168.77.1"), cidr("10.42.0.0/16"));
    c.backend = backend;
    c
}

fn three_nodes() -> Vec<Node> {
    vec![
        NodeBuilder::new("a", "192.168.77.1", "10.42.1.0/24")
            .vxlan()
            .build(),
        NodeBuilder::new("c", "192.168.77.3", "10.42.3.0/24")
            .vxlan()
            .build(),
        NodeBuilder::new("b", "192.168.77.2", "10.42.2.0/24")
            .vxlan()
            .build(),
    ]
}

#[test]
fn peers_are_the_other_nodes_with_cidrs_inside_the_cluster() {
    let mut nodes = three_nodes();
    nodes.push(NodeBuilder::new("outside", "192.168.77.9", "10.99.0.0/24").build());
    nodes.push(NodeBuilder::new("nocidr", "192.168.77.8", "bogus").build());
    let peers = peers(&config(Backend::HostGw), &nodes);
    let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(peers[0].node_ip, ip("192.168.77.2"));
    assert_eq!(peers[0].pod_cidr, cidr("10.42.2.0/24"));
}

#[test]
fn the_public_ip_annotation_wins_over_the_internal_ip() {
    let node = NodeBuilder::new("b", "192.168.77.2", "10.42.2.0/24")
        .annotate(PUBLIC_IP_ANNOTATION, "172.16.0.2")
        .build();
    assert_eq!(node_ip(&node), Some(ip("172.16.0.2")));
}

#[test]
fn vxlan_peers_need_a_published_mac() {
    let nodes = vec![
        NodeBuilder::new("b", "192.168.77.2", "10.42.2.0/24").build(),
        NodeBuilder::new("c", "192.168.77.3", "10.42.3.0/24")
            .annotate(VXLAN_MAC_ANNOTATION, "not-a-mac")
            .build(),
        NodeBuilder::new("d", "192.168.77.4", "10.42.4.0/24")
            .annotate(VXLAN_MAC_ANNOTATION, "0E:6B:C0:A8:4D:04")
            .build(),
    ];
    let peers = peers(&config(Backend::vxlan()), &nodes);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].vtep_mac.as_deref(), Some("0e:6b:c0:a8:4d:04"));
}

#[test]
fn host_gw_routes_each_peer_cidr_via_its_node_ip() {
    let c = config(Backend::HostGw);
    let peers = peers(&c, &three_nodes());
    let actions = plan_peers(&c, &peers, &Observed::default());
    assert_eq!(
        actions,
        vec![
            Action::ReplaceRoute(Route {
                dst: cidr("10.42.2.0/24"),
                via: ip("192.168.77.2"),
                dev: None
            }),
            Action::ReplaceRoute(Route {
                dst: cidr("10.42.3.0/24"),
                via: ip("192.168.77.3"),
                dev: None
            }),
        ]
    );
}

#[test]
fn a_converged_node_plans_nothing_and_a_departed_peer_loses_its_route() {
    let c = config(Backend::HostGw);
    let nodes = three_nodes();
    let observed = Observed {
        routes: vec![
            Route {
                dst: cidr("10.42.2.0/24"),
                via: ip("192.168.77.2"),
                dev: Some("eth0".into()),
            },
            Route {
                dst: cidr("10.42.3.0/24"),
                via: ip("192.168.77.3"),
                dev: Some("eth0".into()),
            },
        ],
        ..Observed::default()
    };
    assert_eq!(plan_peers(&c, &peers(&c, &nodes), &observed), vec![]);

    let without_c: Vec<Node> = nodes
        .into_iter()
        .filter(|n| n.metadata.name.as_deref() != Some("c"))
        .collect();
    assert_eq!(
        plan_peers(&c, &peers(&c, &without_c), &observed),
        vec![Action::DeleteRoute(observed.routes[1].clone())]
    );
}

#[test]
fn routes_outside_the_cluster_cidr_are_never_removed() {
    let c = config(Backend::HostGw);
    let foreign = Route {
        dst: cidr("172.20.0.0/16"),
        via: ip("192.168.77.9"),
        dev: Some("eth0".into()),
    };
    assert_eq!(plan_routes(&c, &[], &[foreign]), vec![]);
}

#[test]
fn vxlan_plans_fdb_neighbour_then_onlink_route_per_peer() {
    let c = config(Backend::vxlan());
    let peers = peers(&c, &three_nodes());
    let actions = plan_peers(&c, &peers[..1], &Observed::default());
    let dev = "k8rs.1".to_string();
    assert_eq!(
        actions,
        vec![
            Action::ReplaceFdb {
                device: dev.clone(),
                mac: "0e:6b:c0:a8:4d:02".into(),
                dst: ip("192.168.77.2")
            },
            Action::ReplaceNeighbour {
                device: dev.clone(),
                ip: ip("10.42.2.0"),
                mac: "0e:6b:c0:a8:4d:02".into()
            },
            Action::ReplaceRoute(Route {
                dst: cidr("10.42.2.0/24"),
                via: ip("10.42.2.0"),
                dev: Some(dev)
            }),
        ]
    );
}

#[test]
fn vxlan_removes_entries_of_departed_peers_and_moves_changed_ones() {
    let c = config(Backend::vxlan());
    let peers = peers(&c, &three_nodes()[..3]);
    let dev = "k8rs.1".to_string();
    let mut observed = Observed::default();
    observed
        .fdb
        .insert(("0e:6b:c0:a8:4d:02".into(), ip("192.168.77.20")));
    observed
        .fdb
        .insert(("0e:6b:c0:a8:4d:09".into(), ip("192.168.77.9")));
    observed
        .neighbours
        .insert(ip("10.42.9.0"), "0e:6b:c0:a8:4d:09".into());
    let actions = plan_vxlan_peers(&c, &peers, &observed);
    assert_eq!(
        actions[..3],
        [
            Action::DeleteFdb {
                device: dev.clone(),
                mac: "0e:6b:c0:a8:4d:02".into(),
                dst: ip("192.168.77.20")
            },
            Action::DeleteFdb {
                device: dev.clone(),
                mac: "0e:6b:c0:a8:4d:09".into(),
                dst: ip("192.168.77.9")
            },
            Action::DeleteNeighbour {
                device: dev.clone(),
                ip: ip("10.42.9.0")
            },
        ]
    );
    assert!(actions.contains(&Action::ReplaceFdb {
        device: dev,
        mac: "0e:6b:c0:a8:4d:02".into(),
        dst: ip("192.168.77.2")
    }));
}

#[test]
fn the_vxlan_device_is_created_with_mtu_minus_50_and_the_cidr_network_address() {
    let c = config(Backend::vxlan());
    let underlay = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    let actions = plan_device(&c, Some(cidr("10.42.1.0/24")), &underlay, None);
    assert_eq!(
        actions,
        vec![
            Action::AddVxlan {
                device: "k8rs.1".into(),
                vni: 1,
                local: ip("192.168.77.1"),
                port: 8472,
                underlay: "eth0".into(),
                mac: "0e:6b:c0:a8:4d:01".into(),
                mtu: 1450
            },
            Action::LinkUp {
                device: "k8rs.1".into()
            },
            Action::ReplaceAddress {
                device: "k8rs.1".into(),
                addr: cidr("10.42.1.0/32")
            },
        ]
    );
}

#[test]
fn a_correct_device_is_left_alone_and_a_wrong_one_recreated() {
    let c = config(Backend::vxlan());
    let underlay = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    let good = Device {
        vni: Some(1),
        local: Some(ip("192.168.77.1")),
        port: Some(8472),
        mtu: 1450,
        mac: "0e:6b:c0:a8:4d:01".into(),
        up: true,
        addresses: vec![cidr("10.42.1.0/32")],
    };
    let own = Some(cidr("10.42.1.0/24"));
    assert_eq!(plan_device(&c, own, &underlay, Some(&good)), vec![]);

    let drifted = Device {
        mtu: 1500,
        up: false,
        addresses: vec![cidr("10.42.7.0/32")],
        ..good.clone()
    };
    let actions = plan_device(&c, own, &underlay, Some(&drifted));
    assert_eq!(actions.len(), 4, "{actions:?}");
    assert!(matches!(actions[0], Action::SetLink { mtu: 1450, .. }));

    let wrong_port = Device {
        port: Some(4789),
        ..good
    };
    let actions = plan_device(&c, own, &underlay, Some(&wrong_port));
    assert!(matches!(actions[0], Action::DeleteLink { .. }));
    assert!(matches!(actions[1], Action::AddVxlan { .. }));
}

#[test]
fn the_node_publishes_its_ip_and_vtep_mac_once() {
    let c = config(Backend::vxlan());
    let own = own_node(&c, &three_nodes()).expect("own node");
    let want = own_annotations(&c, &own).expect("public-ip missing");
    assert_eq!(want[VXLAN_MAC_ANNOTATION], "0e:6b:c0:a8:4d:01");
    assert_eq!(want[PUBLIC_IP_ANNOTATION], "192.168.77.1");
    let mut done = own.clone();
    done.annotations.extend(want);
    assert_eq!(own_annotations(&c, &done), None);
}

#[test]
fn host_gw_plans_no_device() {
    let underlay = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    assert_eq!(
        plan_device(&config(Backend::HostGw), None, &underlay, None),
        vec![]
    );
}
