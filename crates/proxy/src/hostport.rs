//! hostPorts of the pods on this node, done in the proxy's own table instead of the CNI
//! `portmap` plugin's iptables chains, with portmap's semantics (its default `snat: true`):
//!
//! - Traffic for `hostIP:hostPort` (or, without a hostIP, for the hostPort on any local address
//!   of the node, `fib daddr type local`) is DNATed to `podIP:containerPort`, from outside
//!   (`nat-prerouting`) and from the node itself (`nat-output`).
//! - Hairpin (the pod reaching itself through its hostPort) is masqueraded: the pod's
//!   `podIP . podIP` is an element of the Services' `hairpin-endpoints` set.
//! - Localhost (`127.0.0.1:hostPort` from the node) is supported as portmap does it: marked
//!   for masquerade so the pod answers the node's address, and `route_localnet` is enabled on
//!   the interface leading to the pod (done by the proxy loop). Packets arriving on another
//!   interface for 127.0.0.0/8 that were not DNATed are dropped (upstream kube-proxy's guard
//!   for CVE-2020-8558), so enabling `route_localnet` does not expose the node's loopback
//!   services to its pods.
//!
//! Every mapping is an element of `hostport-ips` (with a hostIP) or `hostport-any` (without),
//! owned by its pod, so a pod's start or end is one small transaction.

use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

use crate::config::Cidr;
use crate::nft::{Addr, ElemKey, ElemValue, Key, Proto, Rule, SetKind, Stmt, Verdict};
use crate::render::{Fragment, HAIRPIN, MARK_MASQ};

/// The chain dispatching hostPort traffic (jumped to for local destinations).
pub const HOSTPORTS_CHAIN: &str = "hostports";
/// `hostIP . protocol . hostPort : podIP . containerPort`.
pub const HOSTPORT_IPS: &str = "hostport-ips";
/// `protocol . hostPort : podIP . containerPort`, for any local address.
pub const HOSTPORT_ANY: &str = "hostport-any";

/// A pod's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One hostPort mapping of a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// The one address it answers on; `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub protocol: Proto,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The hostPorts `pod` needs now: none unless it is still running (not Succeeded or Failed)
/// with an IPv4 pod IP and not on the host network (where a hostPort is the container's own
/// port). Ports with an IPv6 hostIP or an unknown protocol are skipped; a hostIP of
/// `0.0.0.0` means every address.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let (Some(spec), Some(status)) = (pod.spec.as_ref(), pod.status.as_ref()) else {
        return Vec::new();
    };
    if spec.host_network == Some(true)
        || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
    {
        return Vec::new();
    }
    let first = status.pod_ip.iter();
    let all = status.pod_ips.iter().flatten().map(|p| &p.ip);
    let Some(pod_ip) = first.chain(all).find_map(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return Vec::new();
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let mut out: Vec<HostPort> = containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = u16::try_from(port.host_port?).ok().filter(|p| *p != 0)?;
            let container_port = u16::try_from(port.container_port).ok()?;
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Proto::Tcp,
                "UDP" => Proto::Udp,
                "SCTP" => Proto::Sctp,
                _ => return None,
            };
            let host_ip = match port.host_ip.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(ip) => Some(ip.parse::<Ipv4Addr>().ok()?).filter(|ip| !ip.is_unspecified()),
            };
            Some(HostPort {
                host_ip,
                protocol,
                host_port,
                pod_ip,
                container_port,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The skeleton's part for hostPorts: the maps, the dispatch chain (jumped to from the nat
/// prerouting and output chains for local destinations) and the loopback guard.
pub(crate) fn skeleton(f: &mut Fragment) {
    f.sets.insert(HOSTPORT_IPS.into(), SetKind::HostPortIps);
    f.sets.insert(HOSTPORT_ANY.into(), SetKind::HostPortAny);
    let localhost = || Stmt::Saddr(false, Addr::Cidr(Cidr::new(Ipv4Addr::LOCALHOST, 8)));
    let mark = || Stmt::Verdict(Verdict::Jump(MARK_MASQ.into()));
    let chain = &mut f.chains.entry(HOSTPORTS_CHAIN.into()).or_default().rules;
    chain.push(Rule(vec![
        localhost(),
        Stmt::Lookup(Key::DaddrProtoPort, HOSTPORT_IPS),
        mark(),
    ]));
    chain.push(Rule(vec![Stmt::DnatMap(Key::DaddrProtoPort, HOSTPORT_IPS)]));
    chain.push(Rule(vec![
        localhost(),
        Stmt::Lookup(Key::ProtoPort, HOSTPORT_ANY),
        mark(),
    ]));
    chain.push(Rule(vec![Stmt::DnatMap(Key::ProtoPort, HOSTPORT_ANY)]));
}

/// The guard rule of `filter-input`: a packet for 127.0.0.0/8 that came from elsewhere than
/// loopback and was not DNATed is dropped.
pub(crate) fn loopback_guard() -> Rule {
    Rule(vec![
        Stmt::IifNotLoopback,
        Stmt::Daddr(false, Addr::Cidr(Cidr::new(Ipv4Addr::LOCALHOST, 8))),
        Stmt::CtNotDnat,
        Stmt::Verdict(Verdict::Drop),
    ])
}

/// The elements of one pod's hostPorts (empty `ports`: an empty fragment).
pub fn hostport_fragment(ports: &[HostPort]) -> Fragment {
    let mut f = Fragment::default();
    for p in ports {
        let value = Some(ElemValue::Endpoint(p.pod_ip, p.container_port));
        let key = match p.host_ip {
            Some(ip) => (
                HOSTPORT_IPS,
                ElemKey::IpProtoPort(ip, p.protocol, p.host_port),
            ),
            None => (HOSTPORT_ANY, ElemKey::ProtoPort(p.protocol, p.host_port)),
        };
        f.elements.push((key.0, key.1, value));
        let hairpin = (HAIRPIN, ElemKey::IpPair(p.pod_ip, p.pod_ip), None);
        if !f.elements.contains(&hairpin) {
            f.elements.push(hairpin);
        }
    }
    f
}

#[cfg(test)]
#[path = "hostport_tests.rs"]
mod tests;
