//! The model's pod rules as the desired contents of `table inet k8rs-netpol`, and the `nft -f`
//! text transactions that bring the kernel there: a full one (repairs the table in place
//! from what is listed in it, without deleting the table) and an incremental one (touches only
//! the chains, sets and map elements of pods whose rules changed).
//!
//! Layout:
//! ```text
//! table inet k8rs-netpol {
//!   map ingress-pods { type ipv4_addr : verdict; }   # pod IP -> jump ingress-<hash>
//!   map egress-pods  { type ipv4_addr : verdict; }   # pod IP -> jump egress-<hash>
//!   chain forward {
//!     type filter hook forward priority filter; policy accept;
//!     ct state established,related accept
//!     ip saddr vmap @egress-pods
//!     ip daddr vmap @ingress-pods
//!   }
//!   set ingress-<hash>-<n> { type ipv4_addr; flags interval; }   # peers of one allow
//!   chain ingress-<hash> { ip saddr @ingress-<hash>-0 tcp dport 80 return ... drop }
//! }
//! ```
//! An allowed packet returns from the pod chain (so that the destination's ingress chain
//! still runs after the source's egress chain); anything else is dropped there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Allow, Direction, Peers, PodKey, PodRules, PortMatch, Ports};
use crate::ranges::{Range, overlaps};

/// The table this crate alone owns.
pub const TABLE: &str = "k8rs-netpol";
/// The base chain.
pub const FORWARD: &str = "forward";
/// The verdict map of isolated pods' ingress chains.
pub const INGRESS_MAP: &str = "ingress-pods";
/// The verdict map of isolated pods' egress chains.
pub const EGRESS_MAP: &str = "egress-pods";

/// One pod's chain for one direction, with the sets its rules use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodChain {
    pub dir: Direction,
    pub ip: Ipv4Addr,
    /// `namespace/name`, written as the chain's comment.
    pub pod: String,
    /// Set name -> elements (disjoint, sorted).
    pub sets: BTreeMap<String, Vec<Range>>,
    /// The rule bodies, in order (the last is `drop`).
    pub rules: Vec<String>,
}

/// What the table should hold: pod chains by chain name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub chains: BTreeMap<String, PodChain>,
}

/// The names found in the loaded table (for a full resync).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
    pub maps: BTreeSet<String>,
}

/// A short stable hash of a pod's key (FNV-1a, 64 bits, hex).
pub fn pod_hash(key: &PodKey) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.0.bytes().chain([b'/']).chain(key.1.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The chain name of `key` for `dir`.
pub fn chain_name(dir: Direction, key: &PodKey) -> String {
    format!("{}-{}", dir_word(dir), pod_hash(key))
}

fn dir_word(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// The desired table for the model's output.
pub fn desired(rules: &BTreeMap<PodKey, PodRules>) -> Desired {
    let mut chains = BTreeMap::new();
    for (key, pod) in rules {
        for dir in [Direction::Ingress, Direction::Egress] {
            if let Some(allows) = pod.direction(dir) {
                let name = chain_name(dir, key);
                let chain = pod_chain(&name, dir, pod, allows);
                chains.insert(name, chain);
            }
        }
    }
    Desired { chains }
}

fn pod_chain(name: &str, dir: Direction, pod: &PodRules, allows: &[Allow]) -> PodChain {
    let addr = match dir {
        Direction::Ingress => "ip saddr",
        Direction::Egress => "ip daddr",
    };
    let mut sets = BTreeMap::new();
    let mut rules = Vec::new();
    for allow in allows {
        let peer = match &allow.peers {
            Peers::Any => String::new(),
            Peers::Ranges(r) if r.is_empty() => continue,
            Peers::Ranges(r) => {
                let set = format!("{name}-{}", sets.len());
                let text = format!("{addr} @{set} ");
                sets.insert(set, r.clone());
                text
            }
        };
        match &allow.ports {
            Ports::Any => rules.push(format!("{peer}return")),
            Ports::List(list) => {
                rules.extend(
                    list.iter()
                        .map(|p| format!("{peer}{}return", port_match(p))),
                );
            }
        }
    }
    rules.push("drop".to_string());
    PodChain {
        dir,
        ip: pod.ip,
        pod: format!("{}/{}", pod.namespace, pod.name),
        sets,
        rules,
    }
}

fn port_match(p: &PortMatch) -> String {
    match p.ports {
        None => format!("meta l4proto {} ", p.proto),
        Some((a, b)) if a == b => format!("meta l4proto {} th dport {a} ", p.proto),
        Some((a, b)) => format!("meta l4proto {} th dport {a}-{b} ", p.proto),
    }
}

fn map_of(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => INGRESS_MAP,
        Direction::Egress => EGRESS_MAP,
    }
}

fn elements(ranges: &[Range]) -> String {
    let items: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
    items.join(", ")
}

/// Accumulates `nft -f` commands.
struct Tx {
    out: String,
}

impl Tx {
    fn new() -> Tx {
        Tx { out: String::new() }
    }

    fn line(&mut self, cmd: &str, rest: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "{cmd} inet {TABLE} {rest}");
    }

    fn add_set(&mut self, name: &str, elems: &[Range]) {
        self.line(
            "add set",
            &format!("{name} {{ type ipv4_addr; flags interval; }}"),
        );
        self.add_elements(name, elems);
    }

    fn add_elements(&mut self, set: &str, elems: &[Range]) {
        if !elems.is_empty() {
            self.line("add element", &format!("{set} {{ {} }}", elements(elems)));
        }
    }

    fn delete_elements(&mut self, set: &str, elems: &[Range]) {
        if !elems.is_empty() {
            self.line(
                "delete element",
                &format!("{set} {{ {} }}", elements(elems)),
            );
        }
    }

    fn add_rules(&mut self, name: &str, chain: &PodChain) {
        for rule in &chain.rules {
            self.line("add rule", &format!("{name} {rule}"));
        }
    }

    fn add_chain(&mut self, name: &str, chain: &PodChain) {
        let comment = chain.pod.replace('"', "");
        self.line("add chain", &format!("{name} {{ comment \"{comment}\"; }}"));
    }

    fn map_element(&mut self, cmd: &str, name: &str, chain: &PodChain) {
        let map = map_of(chain.dir);
        let rest = match cmd {
            "add element" => format!("{map} {{ {} : jump {name} }}", chain.ip),
            _ => format!("{map} {{ {} }}", chain.ip),
        };
        self.line(cmd, &rest);
    }
}

/// The fixed part, created if missing (every command is idempotent).
fn skeleton(tx: &mut Tx) {
    let _ = writeln!(tx.out, "add table inet {TABLE}");
    tx.line(
        "add chain",
        &format!("{FORWARD} {{ type filter hook forward priority filter; policy accept; }}"),
    );
    for map in [INGRESS_MAP, EGRESS_MAP] {
        tx.line("add map", &format!("{map} {{ type ipv4_addr : verdict; }}"));
    }
}

fn forward_rules(tx: &mut Tx) {
    tx.line(
        "add rule",
        &format!("{FORWARD} ct state established,related accept"),
    );
    tx.line(
        "add rule",
        &format!("{FORWARD} ip saddr vmap @{EGRESS_MAP}"),
    );
    tx.line(
        "add rule",
        &format!("{FORWARD} ip daddr vmap @{INGRESS_MAP}"),
    );
}

/// One transaction that makes the table exactly `want`, given the names it holds now. The
/// table is never deleted: everything is flushed and refilled in place, so enforcement has
/// no gap.
pub fn full(existing: &Existing, want: &Desired) -> String {
    let mut tx = Tx::new();
    skeleton(&mut tx);
    tx.line("flush chain", FORWARD);
    for map in [INGRESS_MAP, EGRESS_MAP] {
        tx.line("flush map", map);
    }
    for chain in existing.chains.iter().filter(|c| *c != FORWARD) {
        tx.line("flush chain", chain);
    }
    for chain in existing.chains.iter().filter(|c| *c != FORWARD) {
        if !want.chains.contains_key(chain) {
            tx.line("delete chain", chain);
        }
    }
    let wanted_sets: BTreeSet<&String> = want.chains.values().flat_map(|c| c.sets.keys()).collect();
    for set in &existing.sets {
        if !wanted_sets.contains(set) {
            tx.line("delete set", set);
        }
    }
    for map in &existing.maps {
        if map != INGRESS_MAP && map != EGRESS_MAP {
            tx.line("delete map", map);
        }
    }
    for (name, chain) in &want.chains {
        tx.add_chain(name, chain);
        for (set, elems) in &chain.sets {
            tx.line(
                "add set",
                &format!("{set} {{ type ipv4_addr; flags interval; }}"),
            );
            if existing.sets.contains(set) {
                tx.line("flush set", set);
            }
            tx.add_elements(set, elems);
        }
        tx.add_rules(name, chain);
        tx.map_element("add element", name, chain);
    }
    forward_rules(&mut tx);
    tx.out
}

/// One transaction from `old` (what the kernel holds) to `new`; empty if nothing changed.
pub fn incremental(old: &Desired, new: &Desired) -> String {
    let mut tx = Tx::new();
    for (name, chain) in &old.chains {
        if !new.chains.contains_key(name) {
            remove_chain(&mut tx, name, chain);
        }
    }
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            None => add_chain(&mut tx, name, chain),
            Some(before) if before != chain => change_chain(&mut tx, name, before, chain),
            Some(_) => {}
        }
    }
    tx.out
}

fn remove_chain(tx: &mut Tx, name: &str, chain: &PodChain) {
    tx.map_element("delete element", name, chain);
    tx.line("flush chain", name);
    tx.line("delete chain", name);
    for set in chain.sets.keys() {
        tx.line("delete set", set);
    }
}

fn add_chain(tx: &mut Tx, name: &str, chain: &PodChain) {
    tx.add_chain(name, chain);
    for (set, elems) in &chain.sets {
        tx.add_set(set, elems);
    }
    tx.add_rules(name, chain);
    tx.map_element("add element", name, chain);
}

fn change_chain(tx: &mut Tx, name: &str, before: &PodChain, after: &PodChain) {
    if before.ip != after.ip {
        tx.map_element("delete element", name, before);
    }
    let rules_changed = before.rules != after.rules || before.sets.keys().ne(after.sets.keys());
    if rules_changed {
        tx.line("flush chain", name);
    }
    for set in before.sets.keys() {
        if !after.sets.contains_key(set) {
            tx.line("delete set", set);
        }
    }
    for (set, elems) in &after.sets {
        match before.sets.get(set) {
            None => tx.add_set(set, elems),
            Some(old) if old != elems => change_set(tx, set, old, elems),
            Some(_) => {}
        }
    }
    if rules_changed {
        tx.add_rules(name, after);
    }
    if before.ip != after.ip {
        tx.map_element("add element", name, after);
    }
}

/// Element by element, unless an added range overlaps a removed one (then flush and refill,
/// so that no transaction depends on how the kernel orders interval deletes and adds).
fn change_set(tx: &mut Tx, set: &str, old: &[Range], new: &[Range]) {
    let (old_set, new_set): (BTreeSet<Range>, BTreeSet<Range>) =
        (old.iter().copied().collect(), new.iter().copied().collect());
    let removed: Vec<Range> = old_set.difference(&new_set).copied().collect();
    let added: Vec<Range> = new_set.difference(&old_set).copied().collect();
    let clash = added
        .iter()
        .any(|a| removed.iter().any(|r| overlaps(*a, *r)));
    if clash {
        tx.line("flush set", set);
        tx.add_elements(set, new);
    } else {
        tx.delete_elements(set, &removed);
        tx.add_elements(set, &added);
    }
}

/// The names in `nft -j list table inet k8rs-netpol` output.
pub fn parse_existing(json: &str) -> Existing {
    let mut existing = Existing::default();
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return existing;
    };
    let items = value
        .get("nftables")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for item in items {
        for (kind, target) in [
            ("chain", &mut existing.chains),
            ("set", &mut existing.sets),
            ("map", &mut existing.maps),
        ] {
            let name = item
                .get(kind)
                .and_then(|o| o.get("name"))
                .and_then(|n| n.as_str());
            if let Some(name) = name {
                target.insert(name.to_string());
            }
        }
    }
    existing
}

/// The delete transaction for [`crate::cleanup`]: create-if-missing then delete (nothing is
/// re-created in the same transaction).
pub fn delete_table() -> String {
    format!("add table inet {TABLE}\ndelete table inet {TABLE}\n")
}
