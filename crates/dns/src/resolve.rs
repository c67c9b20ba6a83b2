//! The resolver: one question against the [`Catalog`](crate::Catalog) view, answered as the
//! Kubernetes DNS specification and CoreDNS's kubernetes plugin (`pods insecure`) answer it.
//! Pure: no I/O, so every record kind is unit-tested over fixtures.
//!
//! A name is first reduced to the records that exist at it ([`Node`]); the question type then
//! picks from them. A name with no records at all is NXDOMAIN, a name with records but none
//! of the asked type is NODATA (NOERROR, empty answer, the zone's SOA as authority).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::catalog::{Endpoint, Inner, PortRecord, ServiceKind, ServiceRecord};

/// The DNS schema version served in the `dns-version` TXT record (CoreDNS's).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// How many CNAMEs inside the zone are followed before giving up.
const MAX_CNAME_CHAIN: usize = 8;

/// The zone served and how its records are cached.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    /// Lowercase labels of the cluster domain, e.g. `["cluster", "local"]`.
    labels: Vec<String>,
    /// `cluster.local`.
    domain: String,
    pub ttl: u32,
}

impl Zone {
    pub(crate) fn new(domain: &str, ttl: u32) -> Zone {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        Zone {
            labels: domain.split('.').map(str::to_owned).collect(),
            domain,
            ttl,
        }
    }

    fn name(&self, relative: &str) -> Option<Name> {
        let text = if relative.is_empty() {
            format!("{}.", self.domain)
        } else {
            format!("{relative}.{}.", self.domain)
        };
        Name::from_ascii(text).ok()
    }
}

/// A locally built answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// What the server does with a question.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Answer with this.
    Local(Reply),
    /// Answer with this CNAME chain and append the upstream answers for `target` (an
    /// ExternalName Service pointing outside the zone).
    Chase(Reply, Name),
    /// Not ours: ask the upstream resolvers.
    Forward,
}

/// The records that exist at one name.
#[derive(Debug, Default)]
struct Node {
    addrs: Vec<IpAddr>,
    srv: Vec<SrvTarget>,
    cname: Option<String>,
    txt: Option<String>,
    apex: bool,
}

#[derive(Debug)]
struct SrvTarget {
    port: u16,
    /// Relative to the zone, e.g. `web.default.svc`.
    target: String,
    addrs: Vec<IpAddr>,
}

/// Resolves one question.
pub(crate) fn resolve(zone: &Zone, cat: &Inner, qname: &Name, qtype: RecordType) -> Outcome {
    let Some(labels) = lower_labels(qname) else {
        return Outcome::Forward;
    };
    if let Some(ip) = reverse_ip(&labels) {
        return reverse(zone, cat, qname, qtype, ip);
    }
    let Some(rel) = relative(zone, &labels) else {
        return Outcome::Forward;
    };
    let mut reply = Reply::default();
    let mut owner = qname.clone();
    let mut node = lookup(cat, rel);
    for _ in 0..MAX_CNAME_CHAIN {
        let Some(target) = node.as_ref().and_then(|n| n.cname.clone()) else {
            break;
        };
        let Ok(target_name) = Name::from_ascii(format!("{target}.")) else {
            break;
        };
        reply.answers.push(record(
            owner.clone(),
            zone.ttl,
            RData::CNAME(CNAME(target_name.clone())),
        ));
        if qtype == RecordType::CNAME {
            return Outcome::Local(reply);
        }
        let target_labels: Vec<String> = target.split('.').map(str::to_owned).collect();
        match relative(zone, &target_labels) {
            Some(rel) => {
                node = lookup(cat, rel);
                owner = target_name;
            }
            None => return Outcome::Chase(reply, target_name),
        }
    }
    match node {
        None if reply.answers.is_empty() => {
            Outcome::Local(negative(zone, cat, ResponseCode::NXDomain))
        }
        None => Outcome::Local(reply),
        Some(node) => Outcome::Local(answer(zone, cat, reply, &owner, qtype, &node)),
    }
}

/// The lowercase labels of a name, or `None` when one is not UTF-8 (never one of ours).
fn lower_labels(name: &Name) -> Option<Vec<String>> {
    name.iter()
        .map(|l| std::str::from_utf8(l).ok().map(str::to_ascii_lowercase))
        .collect()
}

/// The labels in front of the zone, or `None` when the name is outside it.
fn relative<'a>(zone: &Zone, labels: &'a [String]) -> Option<&'a [String]> {
    let n = zone.labels.len();
    if labels.len() < n || labels[labels.len() - n..] != zone.labels[..] {
        return None;
    }
    Some(&labels[..labels.len() - n])
}

/// The records at a name inside the zone (`rel` is the part in front of the zone), or `None`
/// when the name does not exist.
fn lookup(cat: &Inner, rel: &[String]) -> Option<Node> {
    let rev: Vec<&str> = rel.iter().rev().map(String::as_str).collect();
    match rev.as_slice() {
        [] => Some(Node {
            apex: true,
            ..Node::default()
        }),
        ["dns-version"] => Some(Node {
            txt: Some(SCHEMA_VERSION.to_owned()),
            ..Node::default()
        }),
        ["dns"] | ["svc"] | ["pod"] => Some(Node::default()),
        ["dns", "ns"] => Some(Node {
            addrs: cluster_ips(cat.service("kube-system", "kube-dns")),
            ..Node::default()
        }),
        ["svc", ns] | ["pod", ns] => cat.namespace_exists(ns).then(Node::default),
        ["svc", ns, svc] => service_node(cat, ns, svc),
        ["svc", ns, svc, endpoint] => endpoint_node(cat, ns, svc, endpoint),
        ["svc", ns, svc, proto, port] => port_node(cat, ns, svc, proto, port),
        ["pod", ns, ip] => pod_node(cat, ns, ip),
        _ => None,
    }
}

fn cluster_ips(svc: Option<&ServiceRecord>) -> Vec<IpAddr> {
    match svc.map(|s| &s.kind) {
        Some(ServiceKind::ClusterIp(ips)) => ips.clone(),
        _ => Vec::new(),
    }
}

fn service_node(cat: &Inner, ns: &str, name: &str) -> Option<Node> {
    if !cat.namespace_exists(ns) {
        return None;
    }
    let svc = cat.service(ns, name)?;
    let base = format!("{name}.{ns}.svc");
    match &svc.kind {
        ServiceKind::Invalid => None,
        ServiceKind::ExternalName(target) => Some(Node {
            cname: Some(target.clone()),
            ..Node::default()
        }),
        ServiceKind::ClusterIp(ips) => Some(Node {
            addrs: ips.clone(),
            srv: svc
                .ports
                .iter()
                .map(|p| SrvTarget {
                    port: p.port,
                    target: base.clone(),
                    addrs: ips.clone(),
                })
                .collect(),
            ..Node::default()
        }),
        ServiceKind::Headless => {
            let endpoints = cat.endpoints(ns, name);
            if endpoints.is_empty() {
                return None;
            }
            let mut node = Node::default();
            for ep in &endpoints {
                push_unique(&mut node.addrs, ep.ip);
                node.srv
                    .extend(ep.ports.iter().map(|p| endpoint_srv(&base, ep, p.port)));
            }
            Some(node)
        }
    }
}

fn endpoint_srv(base: &str, ep: &Endpoint<'_>, port: u16) -> SrvTarget {
    SrvTarget {
        port,
        target: format!("{}.{base}", ep.hostname),
        addrs: vec![ep.ip],
    }
}

fn push_unique(v: &mut Vec<IpAddr>, ip: IpAddr) {
    if !v.contains(&ip) {
        v.push(ip);
    }
}

/// `<hostname>.<service>.<ns>.svc`: the endpoints with that hostname, and pods whose hostname
/// and subdomain name it.
fn endpoint_node(cat: &Inner, ns: &str, name: &str, hostname: &str) -> Option<Node> {
    if !cat.namespace_exists(ns) {
        return None;
    }
    let svc = cat.service(ns, name)?;
    if matches!(
        svc.kind,
        ServiceKind::ExternalName(_) | ServiceKind::Invalid
    ) {
        return None;
    }
    let mut addrs = Vec::new();
    for ep in cat.endpoints(ns, name) {
        if ep.hostname == hostname {
            push_unique(&mut addrs, ep.ip);
        }
    }
    for ip in cat.pod_addresses(ns, name, hostname, svc.publish_not_ready) {
        push_unique(&mut addrs, ip);
    }
    (!addrs.is_empty()).then(|| Node {
        addrs,
        ..Node::default()
    })
}

/// `_<port>._<proto>.<service>.<ns>.svc`: SRV records of the named port.
fn port_node(cat: &Inner, ns: &str, name: &str, proto: &str, port: &str) -> Option<Node> {
    let proto = proto.strip_prefix('_')?;
    let port = port.strip_prefix('_')?;
    if !cat.namespace_exists(ns) {
        return None;
    }
    let svc = cat.service(ns, name)?;
    let matches = |p: &PortRecord| p.name == port && p.protocol == proto;
    let base = format!("{name}.{ns}.svc");
    let mut node = Node::default();
    match &svc.kind {
        ServiceKind::ClusterIp(ips) => {
            for p in svc.ports.iter().filter(|p| matches(p)) {
                node.srv.push(SrvTarget {
                    port: p.port,
                    target: base.clone(),
                    addrs: ips.clone(),
                });
                node.addrs.clone_from(ips);
            }
        }
        ServiceKind::Headless => {
            for ep in cat.endpoints(ns, name) {
                for p in ep.ports.iter().filter(|p| matches(p)) {
                    node.srv.push(endpoint_srv(&base, &ep, p.port));
                    push_unique(&mut node.addrs, ep.ip);
                }
            }
        }
        ServiceKind::ExternalName(_) | ServiceKind::Invalid => return None,
    }
    (!node.srv.is_empty()).then_some(node)
}

/// `<a>-<b>-<c>-<d>.<ns>.pod`: the address itself (CoreDNS `pods insecure`).
fn pod_node(cat: &Inner, ns: &str, label: &str) -> Option<Node> {
    if !cat.namespace_exists(ns) {
        return None;
    }
    let ip: IpAddr = if label.matches('-').count() == 3 && !label.contains("--") {
        IpAddr::V4(label.replace('-', ".").parse().ok()?)
    } else {
        IpAddr::V6(label.replace('-', ":").parse().ok()?)
    };
    Some(Node {
        addrs: vec![ip],
        ..Node::default()
    })
}

fn answer(
    zone: &Zone,
    cat: &Inner,
    mut reply: Reply,
    owner: &Name,
    qtype: RecordType,
    node: &Node,
) -> Reply {
    let ttl = zone.ttl;
    let before = reply.answers.len();
    match qtype {
        RecordType::A | RecordType::AAAA => {
            reply.answers.extend(
                node.addrs
                    .iter()
                    .filter_map(|ip| address_record(owner, ttl, *ip, qtype)),
            );
        }
        RecordType::SRV => add_srv(zone, &mut reply, owner, node),
        RecordType::TXT => {
            if let Some(txt) = &node.txt {
                let rdata = RData::TXT(TXT::new(vec![txt.clone()]));
                reply.answers.push(record(owner.clone(), ttl, rdata));
            }
        }
        RecordType::SOA if node.apex => reply.answers.extend(soa(zone, cat)),
        RecordType::NS if node.apex => {
            if let Some(ns) = zone.name("ns.dns") {
                let rdata = RData::NS(NS(ns.clone()));
                reply.answers.push(record(owner.clone(), ttl, rdata));
                for ip in cluster_ips(cat.service("kube-system", "kube-dns")) {
                    reply
                        .additionals
                        .extend(address_record(&ns, ttl, ip, RecordType::A));
                }
            }
        }
        _ => {}
    }
    if reply.answers.len() == before && before == 0 {
        return negative(zone, cat, ResponseCode::NoError);
    }
    reply
}

fn add_srv(zone: &Zone, reply: &mut Reply, owner: &Name, node: &Node) {
    let weight = u16::try_from(100 / node.srv.len().max(1))
        .unwrap_or(1)
        .max(1);
    for srv in &node.srv {
        let Some(target) = zone.name(&srv.target) else {
            continue;
        };
        let rdata = RData::SRV(SRV::new(0, weight, srv.port, target.clone()));
        reply.answers.push(record(owner.clone(), zone.ttl, rdata));
        for ip in &srv.addrs {
            let qtype = if ip.is_ipv4() {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            if let Some(rec) = address_record(&target, zone.ttl, *ip, qtype)
                && !reply.additionals.contains(&rec)
            {
                reply.additionals.push(rec);
            }
        }
    }
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A) => Some(record(owner.clone(), ttl, RData::A(A(v4)))),
        (IpAddr::V6(v6), RecordType::AAAA) => {
            Some(record(owner.clone(), ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

fn record(name: Name, ttl: u32, rdata: RData) -> Record {
    Record::from_rdata(name, ttl, rdata)
}

/// The zone's SOA record.
fn soa(zone: &Zone, cat: &Inner) -> Option<Record> {
    let apex = zone.name("")?;
    let rdata = SOA::new(
        zone.name("ns.dns")?,
        zone.name("hostmaster")?,
        cat.serial(),
        7200,
        1800,
        86400,
        zone.ttl,
    );
    Some(record(apex, zone.ttl, RData::SOA(rdata)))
}

/// NXDOMAIN or NODATA: no answer, the SOA as authority.
fn negative(zone: &Zone, cat: &Inner, rcode: ResponseCode) -> Reply {
    Reply {
        rcode,
        authorities: soa(zone, cat).into_iter().collect(),
        ..Reply::default()
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa` or the 32 nibbles of `ip6.arpa`) stands
/// for.
fn reverse_ip(labels: &[String]) -> Option<IpAddr> {
    match labels {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            let octets = [a, b, c, d].map(|o| o.parse::<u8>().ok());
            let [Some(a), Some(b), Some(c), Some(d)] = octets else {
                return None;
            };
            Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && ip6 == "ip6" && arpa == "arpa" => {
            let mut value: u128 = 0;
            for nibble in nibbles.iter().rev() {
                let digit = u32::from_str_radix(nibble, 16)
                    .ok()
                    .filter(|_| nibble.len() == 1)?;
                value = (value << 4) | u128::from(digit);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

/// PTR records of cluster IPs and headless endpoints; other addresses go upstream (as CoreDNS's
/// `fallthrough in-addr.arpa ip6.arpa`).
fn reverse(zone: &Zone, cat: &Inner, qname: &Name, qtype: RecordType, ip: IpAddr) -> Outcome {
    let Some(targets) = cat.ptr(&ip) else {
        return Outcome::Forward;
    };
    let mut reply = Reply::default();
    if qtype == RecordType::PTR {
        for t in targets {
            let rel = match &t.hostname {
                Some(h) => format!("{h}.{}.{}.svc", t.service, t.namespace),
                None => format!("{}.{}.svc", t.service, t.namespace),
            };
            if let Some(name) = zone.name(&rel) {
                let rdata = RData::PTR(PTR(name));
                reply.answers.push(record(qname.clone(), zone.ttl, rdata));
            }
        }
    }
    Outcome::Local(reply)
}
