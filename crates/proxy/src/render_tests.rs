use super::*;
use crate::model::{ServiceName, ServicePortName};
use crate::nft::{Proto, transaction_text};
use crate::state::TableState;

fn ctx() -> RenderContext {
    RenderContext {
        cluster_cidr: Some("10.42.0.0/16".parse().expect("cidr")),
        primary_node_ip: Some(Ipv4Addr::new(192, 168, 0, 10)),
        nodeport_ips: vec![Ipv4Addr::new(192, 168, 0, 10)],
    }
}

fn svc(name: &str, ip: u8) -> ServicePortInfo {
    let name = ServicePortName {
        service: ServiceName {
            namespace: "ns".into(),
            name: name.into(),
        },
        port: "http".into(),
        protocol: Proto::Tcp,
    };
    ServicePortInfo::cluster_ip(name, Ipv4Addr::new(10, 43, 0, ip), 80)
}

fn ep(last: u8) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::new(10, 42, 0, last),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        local: false,
    }
}

/// The fragment as nft text: chains (sorted) then elements.
fn text(f: &Fragment) -> Vec<String> {
    let mut out = Vec::new();
    for (name, chain) in &f.chains {
        for rule in &chain.rules {
            out.push(format!("{name}: {rule}"));
        }
    }
    for (name, chain) in &f.shared {
        for rule in &chain.rules {
            out.push(format!("{name}: {rule}"));
        }
    }
    for (set, key, value) in &f.elements {
        match value {
            Some(v) => out.push(format!("{set} {key} : {v}")),
            None => out.push(format!("{set} {key}")),
        }
    }
    out
}

#[test]
fn cluster_ip_with_two_endpoints_is_only_elements() {
    let s = svc("web", 5);
    let f = service_fragment(&ctx(), &s, &[ep(1), ep(2)]);
    assert!(f.chains.is_empty() && f.sets.is_empty());
    let got = text(&f);
    let want = vec![
        "lb-2: ct mark set numgen random mod 2 dnat ip to ip daddr . meta l4proto . th dport . ct mark map @cluster-endpoints",
        "cluster-ips 10.43.0.5",
        "hairpin-endpoints 10.42.0.1 . 10.42.0.1",
        "hairpin-endpoints 10.42.0.2 . 10.42.0.2",
        "service-ips 10.43.0.5 . tcp . 80 : goto lb-2",
        "cluster-endpoints 10.43.0.5 . tcp . 80 . 0 : 10.42.0.1 . 8080",
        "cluster-endpoints 10.43.0.5 . tcp . 80 . 1 : 10.42.0.2 . 8080",
    ];
    assert_eq!(got, want);
}

#[test]
fn no_endpoints_reject_and_local_without_local_endpoint_drops() {
    let mut s = svc("web", 5);
    s.node_port = Some(30080);
    let got = text(&service_fragment(&ctx(), &s, &[]));
    assert_eq!(
        got,
        vec![
            "cluster-ips 10.43.0.5",
            "no-endpoint-services 10.43.0.5 . tcp . 80 : goto reject-chain",
            "no-endpoint-nodeports tcp . 30080 : goto reject-chain",
        ]
    );
    s.internal_local = true;
    let got = text(&service_fragment(&ctx(), &s, &[ep(1)]));
    assert!(got.contains(&"no-endpoint-services 10.43.0.5 . tcp . 80 : drop".to_string()));
}

#[test]
fn node_port_and_external_local_use_both_endpoint_maps() {
    let mut s = svc("web", 5);
    s.node_port = Some(30080);
    s.external_local = true;
    let mut local = ep(2);
    local.local = true;
    let got = text(&service_fragment(&ctx(), &s, &[ep(1), local]));
    for want in [
        "service-ips 10.43.0.5 . tcp . 80 : goto lb-2",
        "service-ips 192.168.0.10 . tcp . 30080 : goto external-local",
        "external-cluster-lb 192.168.0.10 . tcp . 30080 : goto lb-2",
        "external-local-lb 192.168.0.10 . tcp . 30080 : goto lb-local-1",
        "cluster-endpoints 192.168.0.10 . tcp . 30080 . 1 : 10.42.0.2 . 8080",
        "local-endpoints 192.168.0.10 . tcp . 30080 . 0 : 10.42.0.2 . 8080",
        "lb-local-1: ct mark set numgen random mod 1 dnat ip to ip daddr . meta l4proto . th dport . ct mark map @local-endpoints",
    ] {
        assert!(got.contains(&want.to_string()), "missing {want}: {got:#?}");
    }
    s.external_local = false;
    let got = text(&service_fragment(&ctx(), &s, &[ep(1)]));
    assert!(got.contains(&"service-ips 192.168.0.10 . tcp . 30080 : goto external".to_string()));
    assert!(!got.iter().any(|l| l.starts_with("local-endpoints")));
}

#[test]
fn internal_local_balances_over_local_endpoints() {
    let mut s = svc("web", 5);
    s.internal_local = true;
    let mut local = ep(2);
    local.local = true;
    let got = text(&service_fragment(&ctx(), &s, &[ep(1), local]));
    assert!(got.contains(&"service-ips 10.43.0.5 . tcp . 80 : goto lb-local-1".to_string()));
    assert!(
        got.contains(&"local-endpoints 10.43.0.5 . tcp . 80 . 0 : 10.42.0.2 . 8080".to_string())
    );
    assert!(
        !got.iter().any(|l| l.contains("10.42.0.1 . 8080")),
        "{got:#?}"
    );
}

#[test]
fn affinity_services_keep_per_service_chains() {
    let mut s = svc("web", 5);
    s.affinity_timeout = Some(60);
    let f = service_fragment(&ctx(), &s, &[ep(1)]);
    let aff = format!(
        "affinity-{}-ns/web/tcp/http__10.42.0.1/8080__60s",
        affinity::hash8("ns/web/tcp/http__10.42.0.1/8080__60s")
    );
    assert_eq!(f.sets.get(&aff), Some(&SetKind::Affinity(60)));
    assert!(f.shared.is_empty());
    let lines = text(&f);
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!("update @{aff} {{ ip saddr }}")))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("ip saddr @{aff} goto endpoint-")))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("service-ips 10.43.0.5 . tcp . 80 : goto service-"))
    );
}

#[test]
fn load_balancer_with_source_ranges_gets_firewall_elements() {
    let mut s = svc("lb", 6);
    s.load_balancer_ips = vec![Ipv4Addr::new(192, 168, 0, 20)];
    s.source_ranges = vec!["192.168.0.0/24".parse().expect("cidr")];
    let lines = text(&service_fragment(&ctx(), &s, &[ep(1)]));
    for want in [
        "firewall-services 192.168.0.20 . tcp . 80",
        "firewall-allow 192.168.0.20 . tcp . 80 . 192.168.0.0/24",
        // The node is inside the ranges: it may reach its own load-balancer address.
        "firewall-allow 192.168.0.20 . tcp . 80 . 192.168.0.20/32",
        "service-ips 192.168.0.20 . tcp . 80 : goto external",
        "external-cluster-lb 192.168.0.20 . tcp . 80 : goto lb-1",
    ] {
        assert!(
            lines.contains(&want.to_string()),
            "missing {want}: {lines:#?}"
        );
    }
}

#[test]
fn skeleton_has_the_safety_checks() {
    let config = ProxyConfig::new("n1", Ipv4Addr::new(192, 168, 0, 10));
    let f = skeleton(&config, &[Ipv4Addr::new(192, 168, 0, 10)]);
    let lines = text(&f);
    for want in [
        "cluster-ips-check: ip daddr @cluster-ips goto reject-chain",
        "cluster-ips-check: ip daddr 10.43.0.0/16 drop",
        "filter-output-post-dnat: ct state new jump cluster-ips-check",
        "services: ip daddr @cluster-ips ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
        "services: ip daddr . meta l4proto . th dport vmap @service-ips",
        "firewall-check: ip daddr . meta l4proto . th dport . ip saddr @firewall-allow return",
        "firewall-check: ip daddr . meta l4proto . th dport @firewall-services drop",
        "masquerading: ip saddr . ip daddr @hairpin-endpoints masquerade fully-random",
        "masquerading: masquerade fully-random",
        "nodeport-ips 192.168.0.10",
    ] {
        assert!(
            lines.contains(&want.to_string()),
            "missing {want}: {lines:#?}"
        );
    }
}

#[test]
fn one_endpoint_change_touches_only_elements_of_that_service() {
    let c = ctx();
    let config = ProxyConfig::new("n1", Ipv4Addr::new(192, 168, 0, 10));
    let mut state = TableState::new(skeleton(&config, &[]));
    let services: Vec<ServicePortInfo> = (1..=50).map(|i| svc(&format!("s{i}"), i)).collect();
    let initial = services
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                Some(service_fragment(&c, s, &[ep(1), ep(2)])),
            )
        })
        .collect();
    let created = state.update(initial);
    let text = transaction_text(&created);
    assert_eq!(
        text.matches("add chain").count(),
        1,
        "one shared lb-2: {text}"
    );
    let target = &services[9];
    let ops = state.update(vec![(
        target.name.clone(),
        Some(service_fragment(&c, target, &[ep(1), ep(3)])),
    )]);
    let lines: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
    // 10.42.0.2 still serves the other Services: its hairpin element stays.
    assert_eq!(
        lines,
        [
            "delete element ip k8rs-proxy cluster-endpoints { 10.43.0.10 . tcp . 80 . 1 }",
            "add element ip k8rs-proxy cluster-endpoints { 10.43.0.10 . tcp . 80 . 1 : 10.42.0.3 . 8080 }",
            "add element ip k8rs-proxy hairpin-endpoints { 10.42.0.3 . 10.42.0.3 }",
        ]
    );
    // A third endpoint moves the Service to a new shared chain, created once.
    let ops = state.update(vec![(
        target.name.clone(),
        Some(service_fragment(&c, target, &[ep(1), ep(2), ep(3)])),
    )]);
    let text = transaction_text(&ops);
    assert!(text.starts_with("add chain ip k8rs-proxy lb-3\n"), "{text}");
    assert!(text.contains("10.43.0.10 . tcp . 80 : goto lb-3"), "{text}");
    assert!(
        !text.contains("delete chain"),
        "lb-2 still has users: {text}"
    );
    // The same contents again: nothing to do.
    let same = state.update(vec![(
        target.name.clone(),
        Some(service_fragment(&c, target, &[ep(1), ep(2), ep(3)])),
    )]);
    assert!(same.is_empty());
}

#[test]
fn removing_an_affinity_service_deletes_its_elements_then_chains() {
    let c = ctx();
    let config = ProxyConfig::new("n1", Ipv4Addr::new(192, 168, 0, 10));
    let mut state = TableState::new(skeleton(&config, &[]));
    let mut s = svc("web", 5);
    s.affinity_timeout = Some(60);
    state.update(vec![(
        s.name.clone(),
        Some(service_fragment(&c, &s, &[ep(1)])),
    )]);
    let ops = state.update(vec![(s.name.clone(), None)]);
    let lines: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
    let first_delete_chain = lines
        .iter()
        .position(|l| l.starts_with("delete chain"))
        .expect("delete chain");
    let elem_delete = lines
        .iter()
        .position(|l| l.starts_with("delete element ip k8rs-proxy service-ips"))
        .expect("delete element");
    assert!(elem_delete < first_delete_chain);
    assert!(lines.contains(&"delete element ip k8rs-proxy cluster-ips { 10.43.0.5 }".to_string()));
    assert!(state.is_empty());
}

#[test]
fn a_shared_key_stays_while_one_owner_remains() {
    let c = ctx();
    let config = ProxyConfig::new("n1", Ipv4Addr::new(192, 168, 0, 10));
    let mut state = TableState::new(skeleton(&config, &[]));
    let a = svc("web", 5);
    let mut b = a.clone();
    b.name.port = "https".into();
    b.port = 443;
    state.update(vec![
        (a.name.clone(), Some(service_fragment(&c, &a, &[ep(1)]))),
        (b.name.clone(), Some(service_fragment(&c, &b, &[ep(1)]))),
    ]);
    let ops = state.update(vec![(a.name.clone(), None)]);
    let text = transaction_text(&ops);
    assert!(!text.contains("cluster-ips"), "{text}");
}

#[test]
fn full_rewrite_flushes_instead_of_deleting_the_table() {
    let config = ProxyConfig::new("n1", Ipv4Addr::new(192, 168, 0, 10));
    let mut state = TableState::new(skeleton(&config, &[]));
    let s = svc("web", 5);
    state.update(vec![(
        s.name.clone(),
        Some(service_fragment(&ctx(), &s, &[ep(1)])),
    )]);
    let mut existing = crate::state::Existing::default();
    existing.chains.insert("services".into());
    existing.chains.insert("endpoint-OLD".into());
    existing.sets.insert("service-ips".into(), true);
    existing.sets.insert("affinity-OLD".into(), false);
    let lines: Vec<String> = state
        .full(&existing)
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(
        lines[..2],
        ["add table ip k8rs-proxy", "flush table ip k8rs-proxy"]
    );
    assert!(!lines.iter().any(|l| l.starts_with("delete table")));
    let pos = |want: &str| lines.iter().position(|l| l == want).expect(want);
    let flush = pos("flush map ip k8rs-proxy service-ips");
    let stale_set = pos("delete set ip k8rs-proxy affinity-OLD");
    let stale_chain = pos("delete chain ip k8rs-proxy endpoint-OLD");
    let first_rule = lines
        .iter()
        .position(|l| l.starts_with("add rule"))
        .expect("rules");
    assert!(flush < stale_chain && stale_set < stale_chain && stale_chain < first_rule);
    assert!(!lines.contains(&"add map ip k8rs-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }".to_string()));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("add set ip k8rs-proxy cluster-ips"))
    );
    assert!(lines.contains(&"add chain ip k8rs-proxy lb-1".to_string()));
    // A shared chain goes with its last user, after the elements that referred to it.
    let removed = transaction_text(&state.update(vec![(s.name.clone(), None)]));
    assert!(
        removed.ends_with("delete chain ip k8rs-proxy lb-1\n"),
        "{removed}"
    );
    let lines = transaction_text(&state.full(&existing));
    assert!(!lines.contains("lb-1"), "{lines}");
}
