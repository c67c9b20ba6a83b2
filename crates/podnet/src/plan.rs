//! The pure part of a sync: Nodes and the observed kernel state in, the list of changes out.
//! Nothing here runs a command or talks to the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use crate::config::{Backend, Cidr, PodNetConfig, VXLAN_OVERHEAD};

/// The annotation carrying a node's VTEP MAC (flannel: `flannel.alpha.coreos.com/backend-data`).
pub const VXLAN_MAC_ANNOTATION: &str = "k8rs.io/vxlan-mac";
/// The annotation carrying the address a node's pod network uses (flannel's `public-ip`).
pub const PUBLIC_IP_ANNOTATION: &str = "k8rs.io/public-ip";
/// The route protocol number marking the routes this crate owns (`ip route ... proto 120`).
pub const ROUTE_PROTO: &str = "120";

/// Another node whose pods this node routes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
    /// The peer's VTEP MAC (VXLAN only), lower-case.
    pub vtep_mac: Option<String>,
}

/// This node's own view of itself, from its Node object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnNode {
    pub pod_cidr: Option<Cidr>,
    pub annotations: BTreeMap<String, String>,
}

/// The address a node's pod network is reached at: its `k8rs.io/public-ip` annotation, else
/// its first InternalIP.
pub fn node_ip(node: &Node) -> Option<Ipv4Addr> {
    let annotated = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PUBLIC_IP_ANNOTATION))
        .and_then(|ip| ip.parse().ok());
    annotated.or_else(|| {
        node.status
            .as_ref()?
            .addresses
            .as_ref()?
            .iter()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse().ok())
    })
}

/// The node's IPv4 `spec.podCIDR` (or the first IPv4 entry of `spec.podCIDRs`).
pub fn pod_cidr(node: &Node) -> Option<Cidr> {
    let spec = node.spec.as_ref()?;
    let cidrs = spec.pod_cidrs.iter().flatten();
    spec.pod_cidr
        .iter()
        .chain(cidrs)
        .find_map(|c| c.parse::<Cidr>().ok())
}

/// The peers among `nodes`: every other node with an address and a podCIDR inside the cluster
/// CIDR (and, for VXLAN, a published VTEP MAC), sorted by name.
pub fn peers<'a>(config: &PodNetConfig, nodes: impl IntoIterator<Item = &'a Node>) -> Vec<Peer> {
    let vxlan = matches!(config.backend, Backend::Vxlan { .. });
    let mut out: Vec<Peer> = nodes
        .into_iter()
        .filter_map(|node| {
            let name = node.metadata.name.clone()?;
            if name == config.node_name || node.metadata.deletion_timestamp.is_some() {
                return None;
            }
            let pod_cidr = pod_cidr(node).filter(|c| config.cluster_cidr.covers(c))?;
            let vtep_mac = node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(VXLAN_MAC_ANNOTATION))
                .filter(|m| valid_mac(m))
                .map(|m| m.to_ascii_lowercase());
            if vxlan && vtep_mac.is_none() {
                return None;
            }
            Some(Peer {
                name,
                node_ip: node_ip(node)?,
                pod_cidr,
                vtep_mac,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// This node as its own Node object describes it (`None` when it is not registered yet).
pub fn own_node<'a>(
    config: &PodNetConfig,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> Option<OwnNode> {
    let node = nodes
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(config.node_name.as_str()))?;
    Some(OwnNode {
        pod_cidr: pod_cidr(node),
        annotations: node.metadata.annotations.clone().unwrap_or_default(),
    })
}

/// Whether `s` is a MAC address `xx:xx:xx:xx:xx:xx`.
pub fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The VTEP MAC of the node at `ip`: locally administered, unicast, derived from the address
/// so that it survives restarts and peers never need to learn a new one.
pub fn vtep_mac(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0e:6b:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The annotations this node must carry for its peers; `None` when they are already there.
pub fn own_annotations(config: &PodNetConfig, own: &OwnNode) -> Option<BTreeMap<String, String>> {
    let mut want = BTreeMap::new();
    want.insert(PUBLIC_IP_ANNOTATION.to_string(), config.node_ip.to_string());
    if matches!(config.backend, Backend::Vxlan { .. }) {
        want.insert(VXLAN_MAC_ANNOTATION.to_string(), vtep_mac(config.node_ip));
    }
    let present = want.iter().all(|(k, v)| own.annotations.get(k) == Some(v));
    (!present).then_some(want)
}

/// A route to a peer's podCIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Cidr,
    pub via: Ipv4Addr,
    /// The device, for VXLAN routes (`onlink` through the VXLAN device).
    pub dev: Option<String>,
}

/// A VXLAN device as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub vni: Option<u32>,
    pub local: Option<Ipv4Addr>,
    pub port: Option<u16>,
    pub mtu: u32,
    pub mac: String,
    pub up: bool,
    pub addresses: Vec<Cidr>,
}

/// What the kernel holds of this crate's state, read before planning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Routes with protocol [`ROUTE_PROTO`] (those this crate made).
    pub routes: Vec<Route>,
    /// The VXLAN device, if present.
    pub device: Option<Device>,
    /// Permanent neighbour entries on the VXLAN device: address to MAC.
    pub neighbours: BTreeMap<Ipv4Addr, String>,
    /// FDB entries with a remote on the VXLAN device: (MAC, remote address).
    pub fdb: BTreeSet<(String, Ipv4Addr)>,
}

/// One change to the node's network stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    AddVxlan {
        device: String,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        underlay: String,
        mac: String,
        mtu: u32,
    },
    DeleteLink {
        device: String,
    },
    SetLink {
        device: String,
        mtu: u32,
        mac: String,
    },
    LinkUp {
        device: String,
    },
    ReplaceAddress {
        device: String,
        addr: Cidr,
    },
    DeleteAddress {
        device: String,
        addr: Cidr,
    },
    ReplaceRoute(Route),
    DeleteRoute(Route),
    ReplaceNeighbour {
        device: String,
        ip: Ipv4Addr,
        mac: String,
    },
    DeleteNeighbour {
        device: String,
        ip: Ipv4Addr,
    },
    ReplaceFdb {
        device: String,
        mac: String,
        dst: Ipv4Addr,
    },
    DeleteFdb {
        device: String,
        mac: String,
        dst: Ipv4Addr,
    },
}

/// The underlay link facts the VXLAN device is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub name: String,
    pub mtu: u32,
}

/// The VXLAN device changes: create (or re-create when its VNI, local address or port is
/// wrong), fix MTU and MAC, bring it up, and give it the `.0/32` address of this node's
/// podCIDR as flannel does (the source for the node's own traffic to remote pods).
pub fn plan_device(
    config: &PodNetConfig,
    own_cidr: Option<Cidr>,
    underlay: &Underlay,
    observed: Option<&Device>,
) -> Vec<Action> {
    let Backend::Vxlan { vni, port, device } = &config.backend else {
        return Vec::new();
    };
    let mtu = config
        .mtu
        .unwrap_or(underlay.mtu.saturating_sub(VXLAN_OVERHEAD));
    let mac = vtep_mac(config.node_ip);
    let want_addr = own_cidr.map(|c| device_addr(&c));
    let dev = || device.clone();
    let reusable = observed.filter(|d| {
        d.vni == Some(*vni) && d.local == Some(config.node_ip) && d.port == Some(*port)
    });
    let mut actions = Vec::new();
    match reusable {
        Some(current) => {
            if current.mtu != mtu || !current.mac.eq_ignore_ascii_case(&mac) {
                actions.push(Action::SetLink {
                    device: dev(),
                    mtu,
                    mac,
                });
            }
            if !current.up {
                actions.push(Action::LinkUp { device: dev() });
            }
            actions.extend(
                current
                    .addresses
                    .iter()
                    .filter(|a| Some(**a) != want_addr)
                    .map(|a| Action::DeleteAddress {
                        device: dev(),
                        addr: *a,
                    }),
            );
        }
        None => {
            if observed.is_some() {
                actions.push(Action::DeleteLink { device: dev() });
            }
            actions.push(Action::AddVxlan {
                device: dev(),
                vni: *vni,
                local: config.node_ip,
                port: *port,
                underlay: underlay.name.clone(),
                mac,
                mtu,
            });
            actions.push(Action::LinkUp { device: dev() });
        }
    }
    let has_addr = reusable.is_some_and(|d| want_addr.is_some_and(|a| d.addresses.contains(&a)));
    if let Some(addr) = want_addr.filter(|_| !has_addr) {
        actions.push(Action::ReplaceAddress {
            device: dev(),
            addr,
        });
    }
    actions
}

/// The VXLAN device's address for a podCIDR: its network address as a `/32`.
pub fn device_addr(cidr: &Cidr) -> Cidr {
    Cidr::new(cidr.network(), 32).unwrap_or(*cidr)
}

/// The route this node wants to `peer`.
pub fn desired_route(backend: &Backend, peer: &Peer) -> Route {
    match backend {
        Backend::HostGw => Route {
            dst: peer.pod_cidr,
            via: peer.node_ip,
            dev: None,
        },
        Backend::Vxlan { device, .. } => Route {
            dst: peer.pod_cidr,
            via: peer.pod_cidr.network(),
            dev: Some(device.clone()),
        },
    }
}

/// Whether the kernel's route `have` does what `want` asks (a host-gw route names no device).
fn satisfies(have: &Route, want: &Route) -> bool {
    have.dst == want.dst && have.via == want.via && (want.dev.is_none() || have.dev == want.dev)
}

/// Route changes: one route per peer podCIDR, and removal of this crate's routes (inside the
/// cluster CIDR) that no peer wants any more.
pub fn plan_routes(config: &PodNetConfig, peers: &[Peer], observed: &[Route]) -> Vec<Action> {
    let want: Vec<Route> = peers
        .iter()
        .map(|p| desired_route(&config.backend, p))
        .collect();
    let wanted: BTreeSet<Cidr> = want.iter().map(|r| r.dst).collect();
    let mut actions: Vec<Action> = observed
        .iter()
        .filter(|r| config.cluster_cidr.covers(&r.dst) && !wanted.contains(&r.dst))
        .cloned()
        .map(Action::DeleteRoute)
        .collect();
    actions.extend(
        want.into_iter()
            .filter(|r| !observed.iter().any(|o| satisfies(o, r)))
            .map(Action::ReplaceRoute),
    );
    actions
}

/// Neighbour and FDB changes for VXLAN: per peer, its VTEP address (`podCIDR.0`) resolves to
/// its VTEP MAC, and that MAC is forwarded to its node IP; stale entries go.
pub fn plan_vxlan_peers(config: &PodNetConfig, peers: &[Peer], observed: &Observed) -> Vec<Action> {
    let Some(device) = config.backend.device() else {
        return Vec::new();
    };
    let dev = device.to_string();
    let neigh: BTreeMap<Ipv4Addr, String> = peers
        .iter()
        .filter_map(|p| Some((p.pod_cidr.network(), p.vtep_mac.clone()?)))
        .collect();
    let fdb: BTreeSet<(String, Ipv4Addr)> = peers
        .iter()
        .filter_map(|p| Some((p.vtep_mac.clone()?, p.node_ip)))
        .collect();
    let mut actions: Vec<Action> = observed
        .fdb
        .difference(&fdb)
        .map(|(mac, dst)| Action::DeleteFdb {
            device: dev.clone(),
            mac: mac.clone(),
            dst: *dst,
        })
        .collect();
    for ip in observed
        .neighbours
        .keys()
        .filter(|ip| !neigh.contains_key(ip))
    {
        actions.push(Action::DeleteNeighbour {
            device: dev.clone(),
            ip: *ip,
        });
    }
    for (mac, dst) in fdb.difference(&observed.fdb) {
        actions.push(Action::ReplaceFdb {
            device: dev.clone(),
            mac: mac.clone(),
            dst: *dst,
        });
    }
    for (ip, mac) in neigh {
        if observed.neighbours.get(&ip) != Some(&mac) {
            actions.push(Action::ReplaceNeighbour {
                device: dev.clone(),
                ip,
                mac,
            });
        }
    }
    actions
}

/// The whole plan of peer state (after the device exists): FDB and neighbours before routes,
/// so that a new route never points at an unresolved next hop.
pub fn plan_peers(config: &PodNetConfig, peers: &[Peer], observed: &Observed) -> Vec<Action> {
    let mut actions = plan_vxlan_peers(config, peers, observed);
    actions.extend(plan_routes(config, peers, &observed.routes));
    actions
}
