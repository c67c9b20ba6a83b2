//! A pod's `/etc/resolv.conf` by its `dnsPolicy`, as the kubelet composes it
//! (`pkg/kubelet/network/dns`): the pure function the kubelet calls, and the host resolv.conf
//! parser the forwarder shares.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::PodDNSConfig;

/// Upstream's limits (`validation.MaxDNSNameservers`, `MaxDNSSearchPaths`,
/// `MaxDNSSearchListChars`) and the longest search domain glibc accepts.
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCH_PATHS: usize = 32;
pub const MAX_SEARCH_LIST_CHARS: usize = 2048;
const MAX_SEARCH_DOMAIN_LEN: usize = 253;

/// A pod's `spec.dnsPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsPolicy {
    /// The cluster DNS, unless the pod uses the host's network (then as `Default`).
    #[default]
    ClusterFirst,
    /// The cluster DNS, also for host-network pods.
    ClusterFirstWithHostNet,
    /// The node's resolv.conf.
    Default,
    /// Only what `dnsConfig` says.
    None,
}

impl DnsPolicy {
    /// Parses `spec.dnsPolicy`; absent or unknown is `ClusterFirst` (the API default).
    pub fn from_spec(policy: Option<&str>) -> DnsPolicy {
        match policy {
            Some("ClusterFirstWithHostNet") => DnsPolicy::ClusterFirstWithHostNet,
            Some("Default") => DnsPolicy::Default,
            Some("None") => DnsPolicy::None,
            _ => DnsPolicy::ClusterFirst,
        }
    }
}

/// The parts of a resolv.conf that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parses resolv.conf text as the kubelet does: the last `search` line wins (without `.` and
/// trailing dots), `options` accumulate (a later value of an option replaces the earlier one).
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_owned)),
            Some("search") => {
                conf.searches = fields
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_owned())
                    .collect();
            }
            Some("options") => {
                conf.options = merge_options(&conf.options, fields.map(option_pair));
            }
            _ => {}
        }
    }
    conf
}

fn option_pair(option: &str) -> (String, Option<String>) {
    match option.split_once(':') {
        Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
        None => (option.to_owned(), None),
    }
}

/// Upstream's `mergeDNSOptions`: later options replace earlier ones of the same name (kept in
/// first-seen order, so the output is deterministic).
fn merge_options(
    existing: &[String],
    extra: impl IntoIterator<Item = (String, Option<String>)>,
) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> =
        existing.iter().map(|o| option_pair(o)).collect();
    for (name, value) in extra {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        }
    }
    merged
        .into_iter()
        .map(|(name, value)| match value.filter(|v| !v.is_empty()) {
            Some(v) => format!("{name}:{v}"),
            None => name,
        })
        .collect()
}

fn omit_duplicates(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Whether a nameserver is on loopback (unreachable from a pod's own network namespace).
pub(crate) fn is_loopback(nameserver: &str) -> bool {
    nameserver
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The resolv.conf of a pod.
///
/// - `ClusterFirst` (not host network) and `ClusterFirstWithHostNet`: `nameserver` the cluster
///   DNS, `search <ns>.svc.<domain> svc.<domain> <domain>` then the host's search domains,
///   `options ndots:5`. With no cluster DNS configured the kubelet falls back to `Default`.
/// - `Default` (and `ClusterFirst` on the host network): the host's resolv.conf; for a pod in
///   its own network namespace a loopback nameserver is left out (the others are kept), with a
///   comment when none is left.
/// - `None`: only `dns_config`.
///
/// `dns_config` is then merged in (nameservers and searches appended without duplicates,
/// options by name) and upstream's limits applied.
#[allow(clippy::too_many_arguments)]
pub fn resolv_conf(
    policy: DnsPolicy,
    pod_namespace: &str,
    cluster_dns: &[Ipv4Addr],
    cluster_domain: &str,
    host_resolv_conf_text: &str,
    dns_config: Option<&PodDNSConfig>,
    host_network: bool,
) -> String {
    let host = parse_resolv_conf(host_resolv_conf_text);
    let use_cluster = match policy {
        DnsPolicy::ClusterFirstWithHostNet => true,
        DnsPolicy::ClusterFirst => !host_network,
        DnsPolicy::Default | DnsPolicy::None => false,
    };
    let mut comments = Vec::new();
    let mut conf = if policy == DnsPolicy::None {
        ResolvConf::default()
    } else if use_cluster && !cluster_dns.is_empty() {
        ResolvConf {
            nameservers: cluster_dns.iter().map(Ipv4Addr::to_string).collect(),
            searches: cluster_searches(pod_namespace, cluster_domain, host.searches),
            options: vec!["ndots:5".to_owned()],
        }
    } else {
        host_for_pod(host, host_network, &mut comments)
    };
    if let Some(extra) = dns_config {
        append_dns_config(&mut conf, extra);
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches = fit_search_limits(conf.searches);
    render(&comments, &conf)
}

fn cluster_searches(namespace: &str, domain: &str, host_searches: Vec<String>) -> Vec<String> {
    let domain = domain.trim_matches('.');
    if domain.is_empty() {
        return host_searches;
    }
    let mut searches = vec![
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_owned(),
    ];
    searches.extend(host_searches);
    omit_duplicates(searches)
}

/// The host's configuration, without loopback nameservers a pod's namespace cannot reach.
fn host_for_pod(
    mut host: ResolvConf,
    host_network: bool,
    comments: &mut Vec<String>,
) -> ResolvConf {
    if host_network {
        return host;
    }
    let (loopback, reachable): (Vec<String>, Vec<String>) =
        host.nameservers.into_iter().partition(|ns| is_loopback(ns));
    if reachable.is_empty() && !loopback.is_empty() {
        comments.push(format!(
            "# the node's nameserver(s) {} are on loopback, which this pod cannot reach; none left",
            loopback.join(" ")
        ));
    }
    host.nameservers = reachable;
    host
}

fn append_dns_config(conf: &mut ResolvConf, extra: &PodDNSConfig) {
    let mut nameservers = std::mem::take(&mut conf.nameservers);
    nameservers.extend(extra.nameservers.iter().flatten().cloned());
    conf.nameservers = omit_duplicates(nameservers);
    let mut searches = std::mem::take(&mut conf.searches);
    searches.extend(extra.searches.iter().flatten().cloned());
    conf.searches = omit_duplicates(searches);
    let options = extra
        .options
        .iter()
        .flatten()
        .filter_map(|o| Some((o.name.clone()?, o.value.clone())));
    conf.options = merge_options(&conf.options, options);
}

/// Upstream's `formDNSSearchFitsLimits`: at most 32 domains, none longer than 253 characters,
/// and a search line of at most 2048 characters (dropping domains from the end).
fn fit_search_limits(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_PATHS);
    searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
        searches.pop();
    }
    searches
}

fn render(comments: &[String], conf: &ResolvConf) -> String {
    let mut out = String::new();
    for comment in comments {
        out.push_str(comment);
        out.push('\n');
    }
    if !conf.searches.is_empty() {
        out.push_str(&format!("search {}\n", conf.searches.join(" ")));
    }
    for ns in &conf.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !conf.options.is_empty() {
        out.push_str(&format!("options {}\n", conf.options.join(" ")));
    }
    out
}

#[cfg(test)]
#[path = "resolvconf_tests.rs"]
mod tests;
