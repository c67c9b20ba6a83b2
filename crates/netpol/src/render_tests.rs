//! The renderer: exact text for a small fixture, and incremental transactions that touch
//! only what changed.

use std::collections::BTreeMap;

use serde_json::json;

use crate::model::{Snapshot, compute};
use crate::model_tests::{pod, policy};
use crate::render::{
    Desired, Existing, chain_name, desired, full, incremental, parse_existing, pod_hash,
};

fn key(name: &str) -> (String, String) {
    ("default".to_string(), name.to_string())
}

fn render(pods: Vec<crate::model::PodInfo>) -> Desired {
    let snap = Snapshot {
        policies: vec![
            policy(
                "default",
                "web",
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}},
                                             {"ipBlock": {"cidr": "192.168.0.0/24", "except": ["192.168.0.128/25"]}}],
                                    "ports": [{"port": 80}, {"protocol": "UDP", "port": 53, "endPort": 54}]}]}),
            ),
            policy(
                "default",
                "client-egress",
                json!({"podSelector": {"matchLabels": {"role": "client"}},
                       "policyTypes": ["Egress"]}),
            ),
        ],
        pods,
        namespaces: BTreeMap::new(),
    };
    desired(&compute(&snap, "n1"))
}

fn fixture() -> Vec<crate::model::PodInfo> {
    vec![
        pod("default", "web", "10.42.0.2", "n1", &[("app", "web")]),
        pod("default", "c1", "10.42.0.3", "n1", &[("role", "client")]),
        pod("default", "c2", "10.42.1.3", "n2", &[("role", "client")]),
    ]
}

#[test]
fn full_transaction_for_a_small_fixture() {
    let want = render(fixture());
    let web = pod_hash(&key("web"));
    let c1 = pod_hash(&key("c1"));
    assert_eq!(
        chain_name(crate::model::Direction::Ingress, &key("web")),
        format!("ingress-{web}")
    );
    let expected = format!(
        "add table inet k8rs-netpol
add chain inet k8rs-netpol forward {{ type filter hook forward priority filter; policy accept; }}
add map inet k8rs-netpol ingress-pods {{ type ipv4_addr : verdict; }}
add map inet k8rs-netpol egress-pods {{ type ipv4_addr : verdict; }}
flush chain inet k8rs-netpol forward
flush map inet k8rs-netpol ingress-pods
flush map inet k8rs-netpol egress-pods
add chain inet k8rs-netpol egress-{c1} {{ comment \"default/c1\"; }}
add rule inet k8rs-netpol egress-{c1} drop
add element inet k8rs-netpol egress-pods {{ 10.42.0.3 : jump egress-{c1} }}
add chain inet k8rs-netpol ingress-{web} {{ comment \"default/web\"; }}
add set inet k8rs-netpol ingress-{web}-0 {{ type ipv4_addr; flags interval; }}
add element inet k8rs-netpol ingress-{web}-0 {{ 10.42.0.3, 10.42.1.3, 192.168.0.0/25 }}
add rule inet k8rs-netpol ingress-{web} ip saddr @ingress-{web}-0 meta l4proto tcp th dport 80 return
add rule inet k8rs-netpol ingress-{web} ip saddr @ingress-{web}-0 meta l4proto udp th dport 53-54 return
add rule inet k8rs-netpol ingress-{web} drop
add element inet k8rs-netpol ingress-pods {{ 10.42.0.2 : jump ingress-{web} }}
add rule inet k8rs-netpol forward ct state established,related accept
add rule inet k8rs-netpol forward ip saddr vmap @egress-pods
add rule inet k8rs-netpol forward ip daddr vmap @ingress-pods
"
    );
    assert_eq!(full(&Existing::default(), &want), expected);
}

#[test]
fn full_resync_flushes_in_place_and_deletes_leftovers() {
    let want = render(fixture());
    let web = pod_hash(&key("web"));
    let existing = Existing {
        chains: ["forward", "ingress-stale", &format!("ingress-{web}")]
            .map(String::from)
            .into(),
        sets: ["ingress-stale-0", &format!("ingress-{web}-0")]
            .map(String::from)
            .into(),
        maps: ["ingress-pods", "egress-pods"].map(String::from).into(),
    };
    let text = full(&existing, &want);
    assert!(!text.contains("delete table"));
    assert!(text.contains("flush chain inet k8rs-netpol ingress-stale\n"));
    assert!(text.contains("delete chain inet k8rs-netpol ingress-stale\n"));
    assert!(text.contains("delete set inet k8rs-netpol ingress-stale-0\n"));
    assert!(text.contains(&format!("flush set inet k8rs-netpol ingress-{web}-0\n")));
    assert!(!text.contains(&format!("delete chain inet k8rs-netpol ingress-{web}\n")));
    // Flushes come before deletes, deletes before the refill.
    let at = |s: &str| text.find(s).expect(s);
    assert!(at("flush map inet k8rs-netpol ingress-pods") < at("delete chain"));
    assert!(at("flush chain inet k8rs-netpol ingress-stale") < at("delete set"));
}

#[test]
fn unchanged_model_is_an_empty_transaction() {
    let want = render(fixture());
    assert_eq!(incremental(&want, &want.clone()), "");
}

#[test]
fn a_new_peer_pod_adds_only_its_elements() {
    let before = render(fixture());
    let mut pods = fixture();
    pods.push(pod(
        "default",
        "c3",
        "10.42.1.7",
        "n2",
        &[("role", "client")],
    ));
    let after = render(pods);
    let web = pod_hash(&key("web"));
    assert_eq!(
        incremental(&before, &after),
        format!("add element inet k8rs-netpol ingress-{web}-0 {{ 10.42.1.7 }}\n")
    );
    assert_eq!(
        incremental(&after, &before),
        format!("delete element inet k8rs-netpol ingress-{web}-0 {{ 10.42.1.7 }}\n")
    );
}

#[test]
fn a_local_pod_that_moves_or_leaves_touches_only_its_chain() {
    let before = render(fixture());
    let c1 = pod_hash(&key("c1"));
    let web = pod_hash(&key("web"));
    // c1 goes away: its chain, its map element, and its address from web's peers.
    let after = render(vec![fixture()[0].clone(), fixture()[2].clone()]);
    assert_eq!(
        incremental(&before, &after),
        format!(
            "delete element inet k8rs-netpol egress-pods {{ 10.42.0.3 }}
flush chain inet k8rs-netpol egress-{c1}
delete chain inet k8rs-netpol egress-{c1}
delete element inet k8rs-netpol ingress-{web}-0 {{ 10.42.0.3 }}
"
        )
    );
    // web gets a new address: only the map element changes.
    let mut pods = fixture();
    pods[0].ip = "10.42.0.9".parse().expect("ip");
    let after = render(pods);
    assert_eq!(
        incremental(&before, &after),
        format!(
            "delete element inet k8rs-netpol ingress-pods {{ 10.42.0.2 }}
add element inet k8rs-netpol ingress-pods {{ 10.42.0.9 : jump ingress-{web} }}
"
        )
    );
}

#[test]
fn overlapping_set_changes_flush_and_refill() {
    let mut a = render(fixture());
    let mut b = a.clone();
    let web = pod_hash(&key("web"));
    let name = format!("ingress-{web}");
    let set = format!("{name}-0");
    let r = |s: &str| crate::ranges::Range::parse_cidr(s).expect("cidr");
    if let Some(c) = a.chains.get_mut(&name) {
        c.sets.insert(set.clone(), vec![r("10.0.0.0/24")]);
    }
    if let Some(c) = b.chains.get_mut(&name) {
        c.sets.insert(set.clone(), vec![r("10.0.0.0/23")]);
    }
    assert_eq!(
        incremental(&a, &b),
        format!(
            "flush set inet k8rs-netpol {set}\nadd element inet k8rs-netpol {set} {{ 10.0.0.0/23 }}\n"
        )
    );
}

#[test]
fn existing_names_come_from_nft_json() {
    let listed = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "inet", "name": "k8rs-netpol", "handle": 1}},
      {"chain": {"family": "inet", "table": "k8rs-netpol", "name": "forward", "handle": 1}},
      {"chain": {"family": "inet", "table": "k8rs-netpol", "name": "ingress-ab", "handle": 2}},
      {"set": {"family": "inet", "name": "ingress-ab-0", "table": "k8rs-netpol", "type": "ipv4_addr"}},
      {"map": {"family": "inet", "name": "ingress-pods", "table": "k8rs-netpol", "type": "ipv4_addr", "map": "verdict"}},
      {"rule": {"family": "inet", "table": "k8rs-netpol", "chain": "forward", "expr": []}}]}"#;
    let got = parse_existing(listed);
    assert_eq!(
        got.chains,
        ["forward", "ingress-ab"].map(String::from).into()
    );
    assert_eq!(got.sets, ["ingress-ab-0"].map(String::from).into());
    assert_eq!(got.maps, ["ingress-pods"].map(String::from).into());
}
