//! A small typed model of the nftables objects the proxy writes (statements, rules, chains,
//! sets, map elements, transaction operations), rendered as the `nft -f -` text the proxy
//! sends.
//!
//! Text, not JSON: nft 1.0.6 fills its whole cache (every rule of the table) for JSON input.

use std::fmt;
use std::net::Ipv4Addr;

use crate::config::Cidr;

/// The proxy's own table (`table ip k8rs-proxy`); it never touches any other.
pub const TABLE: &str = "k8rs-proxy";

/// The packet mark bit asking for masquerade (upstream's default bit 14).
pub const MASQ_MARK: u32 = 0x4000;

/// At most this many elements go in one `add element` / `delete element` command.
const ELEMENTS_PER_COMMAND: usize = 1000;

/// A transport protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The lower-case name nft uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A terminal or jump verdict.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(t) => write!(f, "jump {t}"),
            Verdict::Goto(t) => write!(f, "goto {t}"),
        }
    }
}

/// The right-hand side of an address match.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    Ip(Ipv4Addr),
    Cidr(Cidr),
    /// An anonymous set of networks, `{ a, b }`.
    Any(Vec<Cidr>),
    /// A named set, `@name`.
    Set(String),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Ip(ip) => write!(f, "{ip}"),
            Addr::Cidr(c) => write!(f, "{c}"),
            Addr::Any(list) => {
                let items: Vec<String> = list.iter().map(|c| c.to_string()).collect();
                write!(f, "{{ {} }}", items.join(", "))
            }
            Addr::Set(name) => write!(f, "@{name}"),
        }
    }
}

/// What a set lookup or verdict-map lookup is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// `ip daddr . meta l4proto . th dport`
    DaddrProtoPort,
    /// `meta l4proto . th dport`
    ProtoPort,
    /// `ip daddr . meta l4proto . th dport . ip saddr`
    DaddrProtoPortSaddr,
    /// `ip saddr . ip daddr`
    SaddrDaddr,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Key::DaddrProtoPort => "ip daddr . meta l4proto . th dport",
            Key::ProtoPort => "meta l4proto . th dport",
            Key::DaddrProtoPortSaddr => "ip daddr . meta l4proto . th dport . ip saddr",
            Key::SaddrDaddr => "ip saddr . ip daddr",
        })
    }
}

/// One statement of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stmt {
    /// `ct state new`
    CtStateNew,
    /// `ip daddr [!=] X`
    Daddr(bool, Addr),
    /// `ip saddr [!=] X`
    Saddr(bool, Addr),
    /// `tcp dport 80`
    Dport(Proto, u16),
    /// `meta l4proto tcp`
    L4Proto(Proto),
    /// `fib saddr type local`
    FibSaddrLocal,
    /// `fib daddr type local`
    FibDaddrLocal,
    /// `iifname != "lo"`
    IifNotLoopback,
    /// `ct status & dnat == 0`: the connection was not destination-NATed.
    CtNotDnat,
    /// `meta mark & 0x4000 == 0`
    MarkUnset,
    /// `meta mark set meta mark | 0x4000`
    MarkSet,
    /// `meta mark set meta mark ^ 0x4000`
    MarkClear,
    /// `numgen random mod N == V`
    Numgen(u32, u32),
    /// `update @set { ip saddr }`
    UpdateSaddr(String),
    /// `KEY @set`
    Lookup(Key, &'static str),
    /// `KEY vmap @map`
    Vmap(Key, &'static str),
    /// `masquerade fully-random`
    Masquerade,
    /// `dnat to IP:PORT`
    Dnat(Ipv4Addr, u16),
    /// `ct mark set numgen random mod N dnat ip to ip daddr . meta l4proto . th dport . ct
    /// mark map @MAP`: one of N endpoint slots of the packet's Service address, uniformly at
    /// random. The connection mark carries the slot because nft 1.0.6 cannot use a map keyed
    /// on `numgen` across transactions: `numgen` has no type name for `type`, and a `typeof`
    /// map whose data is `ip daddr . th dport` is refused by every later rule ("conflicting
    /// protocols specified: ip vs. th"; `tcp dport` instead adds a `meta l4proto tcp` match).
    DnatSlot(u32, &'static str),
    /// `dnat ip to KEY map @MAP`: the destination from a map of `ip . port` values.
    DnatMap(Key, &'static str),
    /// `reject with tcp reset`
    RejectTcpReset,
    /// `reject` (ICMP port unreachable)
    Reject,
    /// A verdict.
    Verdict(Verdict),
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |neg: &bool| if *neg { "!= " } else { "" };
        match self {
            Stmt::CtStateNew => f.write_str("ct state new"),
            Stmt::Daddr(neg, a) => write!(f, "ip daddr {}{a}", not(neg)),
            Stmt::Saddr(neg, a) => write!(f, "ip saddr {}{a}", not(neg)),
            Stmt::Dport(p, port) => write!(f, "{p} dport {port}"),
            Stmt::L4Proto(p) => write!(f, "meta l4proto {p}"),
            Stmt::FibSaddrLocal => f.write_str("fib saddr type local"),
            Stmt::FibDaddrLocal => f.write_str("fib daddr type local"),
            Stmt::IifNotLoopback => f.write_str("iifname != \"lo\""),
            Stmt::CtNotDnat => f.write_str("ct status & dnat == 0"),
            Stmt::MarkUnset => write!(f, "meta mark & {MASQ_MARK:#x} == 0"),
            Stmt::MarkSet => write!(f, "meta mark set meta mark | {MASQ_MARK:#x}"),
            Stmt::MarkClear => write!(f, "meta mark set meta mark ^ {MASQ_MARK:#x}"),
            Stmt::Numgen(m, v) => write!(f, "numgen random mod {m} == {v}"),
            Stmt::UpdateSaddr(set) => write!(f, "update @{set} {{ ip saddr }}"),
            Stmt::Lookup(key, set) => write!(f, "{key} @{set}"),
            Stmt::Vmap(key, map) => write!(f, "{key} vmap @{map}"),
            Stmt::Masquerade => f.write_str("masquerade fully-random"),
            Stmt::Dnat(ip, port) => write!(f, "dnat to {ip}:{port}"),
            Stmt::DnatSlot(n, map) => write!(
                f,
                "ct mark set numgen random mod {n} dnat ip to {} . ct mark map @{map}",
                Key::DaddrProtoPort
            ),
            Stmt::DnatMap(key, map) => write!(f, "dnat ip to {key} map @{map}"),
            Stmt::RejectTcpReset => f.write_str("reject with tcp reset"),
            Stmt::Reject => f.write_str("reject"),
            Stmt::Verdict(v) => write!(f, "{v}"),
        }
    }
}

/// One rule: its statements in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule(pub Vec<Stmt>);

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|s| s.to_string()).collect();
        f.write_str(&parts.join(" "))
    }
}

/// Where a base chain hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hook {
    /// `filter` or `nat`.
    pub kind: &'static str,
    /// `prerouting`, `input`, `forward`, `output` or `postrouting`.
    pub hook: &'static str,
    pub priority: i32,
}

/// A key of a set or map element.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemKey {
    Ip(Ipv4Addr),
    IpProtoPort(Ipv4Addr, Proto, u16),
    ProtoPort(Proto, u16),
    /// A Service address, protocol, port and endpoint slot.
    Slot(Ipv4Addr, Proto, u16, u32),
    /// `saddr . daddr`.
    IpPair(Ipv4Addr, Ipv4Addr),
    /// A Service address, protocol, port and an allowed source range.
    Allow(Ipv4Addr, Proto, u16, Cidr),
}

impl fmt::Display for ElemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemKey::Ip(ip) => write!(f, "{ip}"),
            ElemKey::IpProtoPort(ip, p, port) => write!(f, "{ip} . {p} . {port}"),
            ElemKey::ProtoPort(p, port) => write!(f, "{p} . {port}"),
            ElemKey::Slot(ip, p, port, slot) => write!(f, "{ip} . {p} . {port} . {slot}"),
            ElemKey::IpPair(a, b) => write!(f, "{a} . {b}"),
            ElemKey::Allow(ip, p, port, cidr) => write!(f, "{ip} . {p} . {port} . {cidr}"),
        }
    }
}

/// The value of a map element.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemValue {
    Verdict(Verdict),
    /// An endpoint, `ip . port`.
    Endpoint(Ipv4Addr, u16),
}

impl fmt::Display for ElemValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemValue::Verdict(v) => write!(f, "{v}"),
            ElemValue::Endpoint(ip, port) => write!(f, "{ip} . {port}"),
        }
    }
}

/// The type of a named set or map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetKind {
    /// `ipv4_addr` set.
    Ips,
    /// `ipv4_addr . inet_proto . inet_service` set.
    IpProtoPorts,
    /// `ipv4_addr . inet_proto . inet_service : verdict` map.
    IpProtoPortVmap,
    /// `inet_proto . inet_service : verdict` map.
    ProtoPortVmap,
    /// Endpoint slots: `address . proto . port . slot : endpoint ip . port`, the slot typed
    /// `mark` (see [`Stmt::DnatSlot`]).
    Slots,
    /// `ipv4_addr . ipv4_addr` set.
    IpPairs,
    /// `ipv4_addr . inet_proto . inet_service . ipv4_addr` set of source ranges (interval).
    AllowRanges,
    /// A session-affinity set: `ipv4_addr`, dynamic, with this timeout in seconds.
    Affinity(u32),
    /// hostPorts on one address: `ipv4_addr . inet_proto . inet_service : ipv4_addr .
    /// inet_service` (the pod's address and container port).
    HostPortIps,
    /// hostPorts on every local address: `inet_proto . inet_service : ipv4_addr . inet_service`.
    HostPortAny,
}

impl SetKind {
    /// A map (declared and flushed as `map`), not a set.
    pub fn is_map(self) -> bool {
        matches!(
            self,
            SetKind::IpProtoPortVmap
                | SetKind::ProtoPortVmap
                | SetKind::Slots
                | SetKind::HostPortIps
                | SetKind::HostPortAny
        )
    }

    fn body(self) -> String {
        match self {
            SetKind::Ips => "type ipv4_addr;".into(),
            SetKind::IpProtoPorts => "type ipv4_addr . inet_proto . inet_service;".into(),
            SetKind::IpProtoPortVmap => {
                "type ipv4_addr . inet_proto . inet_service : verdict;".into()
            }
            SetKind::ProtoPortVmap => "type inet_proto . inet_service : verdict;".into(),
            SetKind::Slots => {
                "type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service;"
                    .into()
            }
            SetKind::IpPairs => "type ipv4_addr . ipv4_addr;".into(),
            SetKind::AllowRanges => {
                "type ipv4_addr . inet_proto . inet_service . ipv4_addr; flags interval;".into()
            }
            SetKind::HostPortIps => {
                "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;".into()
            }
            SetKind::HostPortAny => {
                "type inet_proto . inet_service : ipv4_addr . inet_service;".into()
            }
            SetKind::Affinity(timeout) => {
                format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;")
            }
        }
    }

    fn word(self) -> &'static str {
        if self.is_map() { "map" } else { "set" }
    }
}

/// One command of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    AddTable,
    DeleteTable,
    /// Removes every rule of the table (chains, sets and elements stay).
    FlushTable,
    /// Removes every element of a set or map.
    FlushSet(String, SetKind),
    AddChain(String, Option<Hook>),
    FlushChain(String),
    DeleteChain(String),
    AddRule(String, Rule),
    AddSet(String, SetKind),
    DeleteSet(String),
    AddElement(String, ElemKey, Option<ElemValue>),
    DeleteElement(String, ElemKey),
}

fn element(key: &ElemKey, value: &Option<ElemValue>) -> String {
    match value {
        Some(v) => format!("{key} : {v}"),
        None => key.to_string(),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = TABLE;
        match self {
            Op::AddTable => write!(f, "add table ip {t}"),
            Op::DeleteTable => write!(f, "delete table ip {t}"),
            Op::FlushTable => write!(f, "flush table ip {t}"),
            Op::FlushSet(name, kind) => write!(f, "flush {} ip {t} {name}", kind.word()),
            Op::AddChain(name, None) => write!(f, "add chain ip {t} {name}"),
            Op::AddChain(name, Some(h)) => write!(
                f,
                "add chain ip {t} {name} {{ type {} hook {} priority {}; policy accept; }}",
                h.kind, h.hook, h.priority
            ),
            Op::FlushChain(name) => write!(f, "flush chain ip {t} {name}"),
            Op::DeleteChain(name) => write!(f, "delete chain ip {t} {name}"),
            Op::AddRule(chain, rule) => write!(f, "add rule ip {t} {chain} {rule}"),
            Op::AddSet(name, kind) => {
                write!(f, "add {} ip {t} {name} {{ {} }}", kind.word(), kind.body())
            }
            Op::DeleteSet(name) => write!(f, "delete set ip {t} {name}"),
            Op::AddElement(set, key, value) => {
                write!(f, "add element ip {t} {set} {{ {} }}", element(key, value))
            }
            Op::DeleteElement(set, key) => write!(f, "delete element ip {t} {set} {{ {key} }}"),
        }
    }
}

/// The nft text of `ops`, one command a line; runs of element additions (or deletions) to one
/// set become one command of up to [`ELEMENTS_PER_COMMAND`] elements.
pub fn transaction_text(ops: &[Op]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ops.len() {
        let (verb, set) = match &ops[i] {
            Op::AddElement(set, ..) => ("add", set),
            Op::DeleteElement(set, _) => ("delete", set),
            op => {
                out.push_str(&op.to_string());
                out.push('\n');
                i += 1;
                continue;
            }
        };
        let mut items = Vec::new();
        while let Some(op) = ops.get(i)
            && items.len() < ELEMENTS_PER_COMMAND
        {
            match op {
                Op::AddElement(s, key, value) if verb == "add" && s == set => {
                    items.push(element(key, value));
                }
                Op::DeleteElement(s, key) if verb == "delete" && s == set => {
                    items.push(key.to_string());
                }
                _ => break,
            }
            i += 1;
        }
        out.push_str(&format!(
            "{verb} element ip {TABLE} {set} {{ {} }}\n",
            items.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_of_one_rule() {
        let rule = Rule(vec![
            Stmt::Daddr(false, Addr::Ip(Ipv4Addr::new(10, 43, 0, 5))),
            Stmt::Dport(Proto::Tcp, 80),
            Stmt::Saddr(true, Addr::Cidr("10.42.0.0/16".parse().expect("cidr"))),
            Stmt::Verdict(Verdict::Jump("mark-for-masquerade".into())),
        ]);
        assert_eq!(
            rule.to_string(),
            "ip daddr 10.43.0.5 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
        );
        assert_eq!(
            Stmt::DnatSlot(3, "cluster-endpoints").to_string(),
            "ct mark set numgen random mod 3 \
             dnat ip to ip daddr . meta l4proto . th dport . ct mark map @cluster-endpoints"
        );
    }

    #[test]
    fn map_elements_carry_their_value() {
        let op = Op::AddElement(
            "service-ips".into(),
            ElemKey::IpProtoPort(Ipv4Addr::new(10, 43, 0, 5), Proto::Udp, 53),
            Some(ElemValue::Verdict(Verdict::Goto("lb-2".into()))),
        );
        assert_eq!(
            op.to_string(),
            "add element ip k8rs-proxy service-ips { 10.43.0.5 . udp . 53 : goto lb-2 }"
        );
        let op = Op::AddElement(
            "cluster-endpoints".into(),
            ElemKey::Slot(Ipv4Addr::new(10, 43, 0, 5), Proto::Tcp, 80, 1),
            Some(ElemValue::Endpoint(Ipv4Addr::new(10, 42, 0, 7), 8080)),
        );
        assert_eq!(
            op.to_string(),
            "add element ip k8rs-proxy cluster-endpoints { 10.43.0.5 . tcp . 80 . 1 : 10.42.0.7 . 8080 }"
        );
    }

    #[test]
    fn element_runs_become_one_command() {
        let ip = |d| Ipv4Addr::new(10, 43, 0, d);
        let ops = vec![
            Op::DeleteElement("cluster-ips".into(), ElemKey::Ip(ip(1))),
            Op::DeleteElement("cluster-ips".into(), ElemKey::Ip(ip(2))),
            Op::AddElement("cluster-ips".into(), ElemKey::Ip(ip(3)), None),
            Op::AddElement("cluster-ips".into(), ElemKey::Ip(ip(4)), None),
            Op::AddElement("nodeport-ips".into(), ElemKey::Ip(ip(5)), None),
            Op::FlushChain("x".into()),
        ];
        assert_eq!(
            transaction_text(&ops),
            "delete element ip k8rs-proxy cluster-ips { 10.43.0.1, 10.43.0.2 }\n\
             add element ip k8rs-proxy cluster-ips { 10.43.0.3, 10.43.0.4 }\n\
             add element ip k8rs-proxy nodeport-ips { 10.43.0.5 }\n\
             flush chain ip k8rs-proxy x\n"
        );
    }
}
