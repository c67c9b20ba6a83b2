//! The pure model: NetworkPolicies, Pods and Namespaces in; for every pod on this node that
//! some policy selects, the traffic allowed per direction out. Upstream's semantics
//! (networking.k8s.io/v1):
//!
//! - a pod is isolated for a direction once any policy of its namespace selects it with that
//!   direction in its `policyTypes` (default: `Ingress`, plus `Egress` when the policy has
//!   egress rules); what is allowed is then the union of all those policies' rules;
//! - a rule with no peers admits every peer, a rule with no ports every port;
//! - a peer is an `ipBlock` (with `except`), or pods chosen by `podSelector` (in the policy's
//!   namespace) and/or `namespaceSelector` (an empty selector matches everything);
//! - ports are numbers (with `endPort` ranges) or names, resolved against the destination
//!   pod's container ports (for ingress the selected pod; for egress each peer pod);
//! - hostNetwork pods are never selected and never match pod peers; pods without an IPv4
//!   address or in a terminal phase are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::ranges::{self, Range};

/// A transport protocol of a policy port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// From the API's `TCP`/`UDP`/`SCTP`; None for anything else.
    pub fn parse(text: &str) -> Option<Proto> {
        match text {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        })
    }
}

/// A container port of a pod, for named-port resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub proto: Proto,
    pub port: u16,
}

/// What the model needs of a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    /// The pod as policies see it; None for hostNetwork pods, pods without an IPv4 address
    /// and pods that have finished (Succeeded/Failed).
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let ip = status.pod_ip.as_deref()?.parse().ok()?;
        let ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone()?,
                    proto: Proto::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                    port: u16::try_from(p.container_port).ok()?,
                })
            })
            .collect();
        Some(PodInfo {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone()?,
            ip,
            node: spec.node_name.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ports,
        })
    }

    fn named_port(&self, name: &str, proto: Proto) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.proto == proto)
            .map(|p| p.port)
    }
}

/// Namespace name to labels.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// The labels of `ns`, for a [`NamespaceLabels`] map.
pub fn namespace_labels(ns: &Namespace) -> Option<(String, BTreeMap<String, String>)> {
    Some((
        ns.metadata.name.clone()?,
        ns.metadata.labels.clone().unwrap_or_default(),
    ))
}

/// Everything a computation reads.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub policies: Vec<NetworkPolicy>,
    pub pods: Vec<PodInfo>,
    pub namespaces: NamespaceLabels,
}

/// Which peers a rule admits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peers {
    Any,
    /// Disjoint sorted ranges (possibly empty: admits no one).
    Ranges(Vec<Range>),
}

/// A port (range) of one protocol; `ports: None` is every port of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMatch {
    pub proto: Proto,
    pub ports: Option<(u16, u16)>,
}

/// Which ports a rule admits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ports {
    Any,
    List(Vec<PortMatch>),
}

/// One allowed combination of peers and ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Allow {
    pub peers: Peers,
    pub ports: Ports,
}

/// Direction of traffic relative to the selected pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

/// The verdicts for one local pod that some policy selects. `None`: not isolated in that
/// direction (everything allowed); `Some(allows)`: only what `allows` admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRules {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub ingress: Option<Vec<Allow>>,
    pub egress: Option<Vec<Allow>>,
}

impl PodRules {
    /// The allows of `dir`.
    pub fn direction(&self, dir: Direction) -> Option<&Vec<Allow>> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
}

/// (namespace, name) of a pod.
pub type PodKey = (String, String);

/// The rules of every pod on `node` selected by at least one policy.
pub fn compute(snapshot: &Snapshot, node: &str) -> BTreeMap<PodKey, PodRules> {
    let mut out = BTreeMap::new();
    let mut seen_ips = BTreeSet::new();
    let mut local: Vec<&PodInfo> = snapshot.pods.iter().filter(|p| p.node == node).collect();
    local.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for pod in local {
        if !seen_ips.insert(pod.ip) {
            tracing::warn!(pod = %pod.name, ip = %pod.ip, "two local pods share an IP; skipping one");
            continue;
        }
        if let Some(rules) = pod_rules(snapshot, pod) {
            out.insert((pod.namespace.clone(), pod.name.clone()), rules);
        }
    }
    out
}

/// The rules of `pod`, if any policy selects it.
pub fn pod_rules(snapshot: &Snapshot, pod: &PodInfo) -> Option<PodRules> {
    let mut ingress: Option<BTreeSet<Allow>> = None;
    let mut egress: Option<BTreeSet<Allow>> = None;
    for policy in &snapshot.policies {
        if !selects(policy, pod) {
            continue;
        }
        let (ing, eg) = policy_types(policy);
        let spec = policy.spec.as_ref();
        if ing {
            let set = ingress.get_or_insert_with(BTreeSet::new);
            for rule in spec.and_then(|s| s.ingress.as_ref()).into_iter().flatten() {
                set.extend(rule_allows(
                    snapshot,
                    policy,
                    pod,
                    Direction::Ingress,
                    rule.from.as_deref(),
                    rule.ports.as_deref(),
                ));
            }
        }
        if eg {
            let set = egress.get_or_insert_with(BTreeSet::new);
            for rule in spec.and_then(|s| s.egress.as_ref()).into_iter().flatten() {
                set.extend(rule_allows(
                    snapshot,
                    policy,
                    pod,
                    Direction::Egress,
                    rule.to.as_deref(),
                    rule.ports.as_deref(),
                ));
            }
        }
    }
    if ingress.is_none() && egress.is_none() {
        return None;
    }
    Some(PodRules {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ip: pod.ip,
        ingress: ingress.map(|s| s.into_iter().collect()),
        egress: egress.map(|s| s.into_iter().collect()),
    })
}

/// Whether `policy` selects `pod` (same namespace, podSelector matches; absent = all).
pub fn selects(policy: &NetworkPolicy, pod: &PodInfo) -> bool {
    if policy.metadata.namespace.as_deref().unwrap_or_default() != pod.namespace {
        return false;
    }
    let selector = policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
    match selector {
        None => true,
        Some(sel) => selector_of(sel).matches(&pod.labels),
    }
}

/// (ingress, egress) isolation of `policy`, with upstream's defaulting of `policyTypes`.
pub fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let spec = policy.spec.as_ref();
    match spec.and_then(|s| s.policy_types.as_ref()) {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => {
            let has_egress = spec
                .and_then(|s| s.egress.as_ref())
                .is_some_and(|e| !e.is_empty());
            (true, has_egress)
        }
    }
}

/// A selector that failed to parse matches nothing.
fn selector_of(sel: &LabelSelector) -> Selector {
    Selector::from_label_selector(sel).unwrap_or_else(|err| {
        tracing::warn!(%err, "invalid label selector in a NetworkPolicy; it matches nothing");
        Selector::nothing()
    })
}

/// The allows of one rule for the selected pod `pod`.
fn rule_allows(
    snapshot: &Snapshot,
    policy: &NetworkPolicy,
    pod: &PodInfo,
    dir: Direction,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) -> Vec<Allow> {
    let peers = match peers {
        None | Some([]) => Peers::Any,
        Some(list) => Peers::Ranges(peer_ranges(snapshot, policy, list)),
    };
    let ports = match ports {
        None | Some([]) => {
            return vec![Allow {
                peers,
                ports: Ports::Any,
            }];
        }
        Some(list) => list,
    };
    let mut numbered = Vec::new();
    let mut out = Vec::new();
    for port in ports {
        let proto = port
            .protocol
            .as_deref()
            .map_or(Some(Proto::Tcp), Proto::parse);
        let Some(proto) = proto else { continue };
        match &port.port {
            None => numbered.push(PortMatch { proto, ports: None }),
            Some(IntOrString::Int(n)) => {
                if let Some(m) = numeric_port(proto, *n, port.end_port) {
                    numbered.push(m);
                }
            }
            Some(IntOrString::String(name)) => match dir {
                Direction::Ingress => {
                    if let Some(n) = pod.named_port(name, proto) {
                        numbered.push(PortMatch {
                            proto,
                            ports: Some((n, n)),
                        });
                    }
                }
                Direction::Egress => out.extend(named_egress(snapshot, &peers, name, proto)),
            },
        }
    }
    if !numbered.is_empty() {
        numbered.sort();
        numbered.dedup();
        out.push(Allow {
            peers,
            ports: Ports::List(numbered),
        });
    }
    out
}

/// `port`..=`end_port` (or just `port`); None if out of range or reversed.
fn numeric_port(proto: Proto, port: i32, end_port: Option<i32>) -> Option<PortMatch> {
    let first = u16::try_from(port).ok()?;
    let last = match end_port {
        Some(e) => u16::try_from(e).ok()?,
        None => first,
    };
    (first <= last).then_some(PortMatch {
        proto,
        ports: Some((first, last)),
    })
}

/// An egress named port: for each number it resolves to, the peer pods that carry it.
fn named_egress(snapshot: &Snapshot, peers: &Peers, name: &str, proto: Proto) -> Vec<Allow> {
    let mut by_number: BTreeMap<u16, Vec<Range>> = BTreeMap::new();
    for pod in &snapshot.pods {
        let inside = match peers {
            Peers::Any => true,
            Peers::Ranges(ranges) => {
                let ip = u32::from(pod.ip);
                ranges.iter().any(|r| r.start <= ip && ip <= r.end)
            }
        };
        if let (true, Some(n)) = (inside, pod.named_port(name, proto)) {
            by_number.entry(n).or_default().push(Range::ip(pod.ip));
        }
    }
    by_number
        .into_iter()
        .map(|(n, ips)| Allow {
            peers: Peers::Ranges(ranges::normalize(ips)),
            ports: Ports::List(vec![PortMatch {
                proto,
                ports: Some((n, n)),
            }]),
        })
        .collect()
}

/// The addresses `peers` admit, merged.
fn peer_ranges(
    snapshot: &Snapshot,
    policy: &NetworkPolicy,
    peers: &[NetworkPolicyPeer],
) -> Vec<Range> {
    let own_ns = policy.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for peer in peers {
        if let Some(block) = &peer.ip_block {
            out.extend(ip_block(
                &block.cidr,
                block.except.as_deref().unwrap_or_default(),
            ));
            continue;
        }
        let pod_sel = peer.pod_selector.as_ref().map(selector_of);
        let ns_sel = peer.namespace_selector.as_ref().map(selector_of);
        if pod_sel.is_none() && ns_sel.is_none() {
            continue; // invalid: a peer must set one field
        }
        for pod in &snapshot.pods {
            let ns_ok = match &ns_sel {
                None => pod.namespace == own_ns,
                Some(sel) => snapshot
                    .namespaces
                    .get(&pod.namespace)
                    .is_some_and(|labels| sel.matches(labels)),
            };
            let pod_ok = pod_sel.as_ref().is_none_or(|sel| sel.matches(&pod.labels));
            if ns_ok && pod_ok {
                out.push(Range::ip(pod.ip));
            }
        }
    }
    ranges::normalize(out)
}

/// An ipBlock's ranges; a malformed CIDR admits nothing, a malformed except is ignored.
fn ip_block(cidr: &str, except: &[String]) -> Vec<Range> {
    let Some(block) = Range::parse_cidr(cidr) else {
        return Vec::new();
    };
    let holes: Vec<Range> = except.iter().filter_map(|e| Range::parse_cidr(e)).collect();
    ranges::subtract(block, &holes)
}
