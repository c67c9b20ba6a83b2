use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

use super::*;

const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example. lab.example\noptions edns0 ndots:2\n";
const RESOLVED: &str = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
const DNS: [Ipv4Addr; 1] = [Ipv4Addr::new(10, 43, 0, 10)];

fn conf(policy: DnsPolicy, host: &str, cfg: Option<&PodDNSConfig>, host_network: bool) -> String {
    resolv_conf(
        policy,
        "team",
        &DNS,
        "cluster.local",
        host,
        cfg,
        host_network,
    )
}

#[test]
fn parses_host_resolv_conf() {
    let parsed = parse_resolv_conf(HOST);
    assert_eq!(parsed.nameservers, ["192.0.2.53", "192.0.2.54"]);
    assert_eq!(parsed.searches, ["corp.example", "lab.example"]);
    assert_eq!(parsed.options, ["edns0", "ndots:2"]);
    assert!(parse_resolv_conf(RESOLVED).searches.is_empty());
}

#[test]
fn cluster_first() {
    assert_eq!(
        conf(DnsPolicy::ClusterFirst, HOST, None, false),
        "search team.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n\
         nameserver 10.43.0.10\n\
         options ndots:5\n"
    );
}

#[test]
fn cluster_first_on_host_network_is_default() {
    assert_eq!(
        conf(DnsPolicy::ClusterFirst, RESOLVED, None, true),
        "nameserver 127.0.0.53\noptions edns0 trust-ad\n"
    );
}

#[test]
fn cluster_first_with_host_net() {
    let out = conf(DnsPolicy::ClusterFirstWithHostNet, HOST, None, true);
    assert!(out.contains("nameserver 10.43.0.10\n"), "{out}");
    assert!(out.starts_with("search team.svc.cluster.local "), "{out}");
}

#[test]
fn cluster_first_without_cluster_dns_falls_back_to_host() {
    let out = resolv_conf(
        DnsPolicy::ClusterFirst,
        "team",
        &[],
        "cluster.local",
        HOST,
        None,
        false,
    );
    assert_eq!(
        out,
        "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 ndots:2\n"
    );
}

#[test]
fn default_replaces_loopback_nameservers() {
    let mixed = "nameserver 127.0.0.53\nnameserver 192.0.2.53\n";
    assert_eq!(
        conf(DnsPolicy::Default, mixed, None, false),
        "nameserver 192.0.2.53\n"
    );
    let out = conf(DnsPolicy::Default, RESOLVED, None, false);
    assert!(
        out.starts_with("# the node's nameserver(s) 127.0.0.53 are on loopback"),
        "{out}"
    );
    assert!(!out.contains("\nnameserver"), "{out}");
    assert!(out.ends_with("options edns0 trust-ad\n"), "{out}");
}

#[test]
fn none_with_dns_config() {
    let cfg = PodDNSConfig {
        nameservers: Some(vec!["1.1.1.1".into(), "1.1.1.1".into()]),
        searches: Some(vec!["a.example".into()]),
        options: Some(vec![
            PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            },
            PodDNSConfigOption {
                name: Some("edns0".into()),
                value: None,
            },
        ]),
    };
    assert_eq!(
        conf(DnsPolicy::None, HOST, Some(&cfg), false),
        "search a.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
    );
    assert_eq!(conf(DnsPolicy::None, HOST, None, false), "");
}

#[test]
fn dns_config_merges_into_cluster_first() {
    let cfg = PodDNSConfig {
        nameservers: Some(vec!["1.1.1.1".into()]),
        searches: Some(vec!["svc.cluster.local".into(), "extra.example".into()]),
        options: Some(vec![
            PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("1".into()),
            },
            PodDNSConfigOption {
                name: Some("single-request".into()),
                value: None,
            },
        ]),
    };
    assert_eq!(
        conf(DnsPolicy::ClusterFirst, "", Some(&cfg), false),
        "search team.svc.cluster.local svc.cluster.local cluster.local extra.example\n\
         nameserver 10.43.0.10\nnameserver 1.1.1.1\n\
         options ndots:1 single-request\n"
    );
}

#[test]
fn limits() {
    let cfg = PodDNSConfig {
        nameservers: Some(vec!["1.1.1.1".into(), "2.2.2.2".into(), "3.3.3.3".into()]),
        searches: Some((0..40).map(|i| format!("d{i}.example")).collect()),
        options: None,
    };
    let out = conf(DnsPolicy::ClusterFirst, "", Some(&cfg), false);
    assert_eq!(out.matches("nameserver ").count(), MAX_NAMESERVERS);
    let search = out.lines().find(|l| l.starts_with("search ")).unwrap();
    assert_eq!(search.split_whitespace().count() - 1, MAX_SEARCH_PATHS);

    // Long domains: the line is cut from the end to 2048 characters; a domain over 253 is dropped.
    let long: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "x".repeat(200)))
        .collect();
    let mut searches = long.clone();
    searches.push("y".repeat(260));
    let cfg = PodDNSConfig {
        searches: Some(searches),
        ..Default::default()
    };
    let out = conf(DnsPolicy::None, "", Some(&cfg), false);
    let search = out.lines().next().unwrap().trim_start_matches("search ");
    assert!(search.len() <= MAX_SEARCH_LIST_CHARS);
    assert_eq!(search.split(' ').count(), 2048 / 203);
    assert!(!search.contains('y'));
}
