//! Services and Endpoints: defaults, validation and the update rules for allocated fields.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::{PROTOCOLS, dns_label, dns_subdomain, port_num_or_name, qualified_name};
use super::endpoints::non_special_ip;
use crate::field::{
    Bad, FieldError, Path, bad_strings, duplicate, forbidden, go_quote, invalid, not_supported,
    required,
};
use crate::meta::validate_labels;
use crate::names::{is_valid_cidr, is_valid_ip, is_valid_port_num, parse_ip};
use crate::{ApiType, NameRule, check_meta, check_meta_update};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;

impl ApiType for Service {
    const NAME_RULE: NameRule = NameRule::Dns1035Label;

    fn set_defaults(&mut self) {
        default_service_spec(self.spec.get_or_insert_with(Default::default));
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_spec(
            self.spec.as_ref().unwrap_or(&ServiceSpec::default()),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let default = ServiceSpec::default();
        let (new_spec, old_spec) = (
            self.spec.as_ref().unwrap_or(&default),
            old.spec.as_ref().unwrap_or(&default),
        );
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_cluster_ips_update(new_spec, old_spec));
        errs.extend(validate_lb_class_update(new_spec, old_spec));
        if needs_health_check(new_spec)
            && needs_health_check(old_spec)
            && new_spec.health_check_node_port != old_spec.health_check_node_port
        {
            errs.push(forbidden(
                &Path::new("spec").child("healthCheckNodePort"),
                "field is immutable",
            ));
        }
        errs.extend(validate_spec(new_spec));
        errs
    }
}

fn type_of(s: &ServiceSpec) -> &str {
    s.type_.as_deref().unwrap_or("")
}

fn externally_accessible(s: &ServiceSpec) -> bool {
    matches!(type_of(s), "LoadBalancer" | "NodePort")
        || (type_of(s) == "ClusterIP" && s.external_ips.as_ref().is_some_and(|e| !e.is_empty()))
}

fn needs_health_check(s: &ServiceSpec) -> bool {
    type_of(s) == "LoadBalancer" && s.external_traffic_policy.as_deref() == Some("Local")
}

fn is_headless(s: &ServiceSpec) -> bool {
    s.cluster_ips
        .as_deref()
        .is_some_and(|ips| ips.len() == 1 && ips[0] == "None")
}

/// core/v1 `SetDefaults_Service` plus the IP-family fields the allocator would fill.
fn default_service_spec(s: &mut ServiceSpec) {
    if s.session_affinity.as_deref().unwrap_or("").is_empty() {
        s.session_affinity = Some("None".into());
    }
    match s.session_affinity.as_deref() {
        Some("None") => s.session_affinity_config = None,
        Some("ClientIP") => {
            let timeout = s
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if timeout.is_none() {
                s.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(DEFAULT_AFFINITY_TIMEOUT),
                    }),
                });
            }
        }
        _ => {}
    }
    if type_of(s).is_empty() {
        s.type_ = Some("ClusterIP".into());
    }
    for p in s.ports.iter_mut().flatten() {
        default_service_port(p);
    }
    if externally_accessible(s)
        && s.external_traffic_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        s.external_traffic_policy = Some("Cluster".into());
    }
    let t = type_of(s).to_string();
    if s.internal_traffic_policy.is_none()
        && matches!(t.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer")
    {
        s.internal_traffic_policy = Some("Cluster".into());
    }
    if t == "LoadBalancer" && s.allocate_load_balancer_node_ports.is_none() {
        s.allocate_load_balancer_node_ports = Some(true);
    }
    if t != "ExternalName" {
        sync_cluster_ips(s);
        if s.ip_family_policy.is_none() {
            s.ip_family_policy = Some("SingleStack".into());
        }
        if s.ip_families.as_ref().is_none_or(Vec::is_empty) {
            let family = match s
                .cluster_ips
                .as_ref()
                .and_then(|ips| ips.first())
                .and_then(|ip| parse_ip(ip))
            {
                Some(std::net::IpAddr::V6(_)) => "IPv6",
                _ => "IPv4",
            };
            s.ip_families = Some(vec![family.into()]);
        }
    }
}

/// `clusterIP` and `clusterIPs[0]` mirror each other when only one is given.
fn sync_cluster_ips(s: &mut ServiceSpec) {
    let ip = s.cluster_ip.clone().unwrap_or_default();
    let ips_empty = s.cluster_ips.as_ref().is_none_or(Vec::is_empty);
    if !ip.is_empty() && ips_empty {
        s.cluster_ips = Some(vec![ip]);
    } else if ip.is_empty() && !ips_empty {
        s.cluster_ip = s.cluster_ips.as_ref().and_then(|ips| ips.first().cloned());
    }
}

fn default_service_port(p: &mut ServicePort) {
    if p.protocol.as_deref().unwrap_or("").is_empty() {
        p.protocol = Some("TCP".into());
    }
    let unset = match &p.target_port {
        None => true,
        Some(IntOrString::Int(0)) => true,
        Some(IntOrString::String(s)) => s.is_empty(),
        _ => false,
    };
    if unset {
        p.target_port = Some(IntOrString::Int(p.port));
    }
}

/// Carries allocated values (cluster IPs, node ports, health-check port) from the stored
/// service into an update that left them empty, as upstream's `patchAllocatedValues`; the API
/// server calls it before [`ApiType::validate_update`].
pub fn service_carry_allocated(new: &mut Service, old: &Service) {
    let (Some(n), Some(o)) = (new.spec.as_mut(), old.spec.as_ref()) else {
        return;
    };
    if type_of(n) != "ExternalName" && type_of(o) != "ExternalName" {
        if n.cluster_ip.as_deref().unwrap_or("").is_empty() {
            n.cluster_ip.clone_from(&o.cluster_ip);
        }
        if n.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            n.cluster_ips.clone_from(&o.cluster_ips);
        }
    }
    let needs_node_port = |s: &ServiceSpec| {
        type_of(s) == "NodePort"
            || (type_of(s) == "LoadBalancer" && s.allocate_load_balancer_node_ports != Some(false))
    };
    if needs_node_port(n) && needs_node_port(o) {
        let used_new: HashSet<i32> = n
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.node_port)
            .collect();
        for p in n
            .ports
            .iter_mut()
            .flatten()
            .filter(|p| p.node_port.unwrap_or(0) == 0)
        {
            let old_port = o
                .ports
                .iter()
                .flatten()
                .find(|op| op.name == p.name)
                .and_then(|op| op.node_port);
            if let Some(np) = old_port.filter(|np| !used_new.contains(np)) {
                p.node_port = Some(np);
            }
        }
    }
    if needs_health_check(n) && needs_health_check(o) && n.health_check_node_port.unwrap_or(0) == 0
    {
        n.health_check_node_port = o.health_check_node_port;
    }
}

fn validate_spec(s: &ServiceSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let ports = s.ports.as_deref().unwrap_or_default();
    let t = type_of(s);
    if ports.is_empty() && !is_headless(s) && t != "ExternalName" {
        errs.push(required(&sp.child("ports"), ""));
    }
    errs.extend(type_specific(s, &sp));
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_port(
            p,
            ports.len() > 1,
            &mut names,
            &sp.child("ports").index(i),
        ));
    }
    errs.extend(validate_labels(s.selector.as_ref(), &sp.child("selector")));
    errs.extend(validate_affinity(s, &sp));
    errs.extend(validate_cluster_ips(s, &sp));
    for (i, ip) in s.external_ips.iter().flatten().enumerate() {
        let ipp = sp.child("externalIPs").index(i);
        let bad: Vec<FieldError> = is_valid_ip(ip)
            .iter()
            .map(|m| invalid(&ipp, ip, m))
            .collect();
        if bad.is_empty() {
            errs.extend(non_special_ip(ip, &ipp));
        } else {
            errs.extend(bad);
        }
    }
    match t {
        "" => errs.push(required(&sp.child("type"), "")),
        t if !TYPES.contains(&t) => errs.push(not_supported(&sp.child("type"), t, TYPES)),
        _ => {}
    }
    errs.extend(validate_node_ports(s, ports, &sp));
    errs.extend(validate_load_balancer_fields(s, &sp));
    errs.extend(validate_traffic_policies(s, &sp));
    errs
}

fn type_specific(s: &ServiceSpec, sp: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let t = type_of(s);
    if (t == "LoadBalancer" || t == "NodePort") && is_headless(s) {
        errs.push(invalid(
            &sp.child("clusterIPs").index(0),
            "None",
            &format!("may not be set to 'None' for {t} services"),
        ));
    }
    if t != "ExternalName" {
        return errs;
    }
    if s.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
        errs.push(forbidden(
            &sp.child("clusterIPs"),
            "may not be set for ExternalName services",
        ));
    }
    if s.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
        errs.push(forbidden(
            &sp.child("ipFamilies"),
            "may not be set for ExternalName services",
        ));
    }
    if s.ip_family_policy.is_some() {
        errs.push(forbidden(
            &sp.child("ipFamilyPolicy"),
            "may not be set for ExternalName services",
        ));
    }
    let name = s.external_name.as_deref().unwrap_or("");
    let cname = name.strip_suffix('.').unwrap_or(name);
    if cname.is_empty() {
        errs.push(required(&sp.child("externalName"), ""));
    } else {
        errs.extend(dns_subdomain(cname, &sp.child("externalName")));
    }
    errs
}

fn validate_port(
    p: &ServicePort,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(dns_label(name, &path.child("name")));
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&path.child("name"), name));
        }
    }
    errs.extend(
        is_valid_port_num(i64::from(p.port))
            .iter()
            .map(|m| invalid(&path.child("port"), p.port, m)),
    );
    match p.protocol.as_deref().unwrap_or("") {
        "" => errs.push(required(&path.child("protocol"), "")),
        proto if !PROTOCOLS.contains(&proto) => {
            errs.push(not_supported(&path.child("protocol"), proto, PROTOCOLS))
        }
        _ => {}
    }
    errs.extend(port_num_or_name(
        p.target_port.as_ref().unwrap_or(&IntOrString::Int(0)),
        &path.child("targetPort"),
    ));
    if let Some(ap) = &p.app_protocol {
        errs.extend(qualified_name(ap, &path.child("appProtocol")));
    }
    errs
}

fn validate_affinity(s: &ServiceSpec, sp: &Path) -> Vec<FieldError> {
    let ap = sp.child("sessionAffinity");
    let cp = sp.child("sessionAffinityConfig");
    let affinity = s.session_affinity.as_deref().unwrap_or("");
    match affinity {
        "" => vec![required(&ap, "")],
        "ClientIP" => {
            let when = "when session affinity type is ClientIP";
            let Some(cfg) = &s.session_affinity_config else {
                return vec![required(&cp, when)];
            };
            let Some(cip) = &cfg.client_ip else {
                return vec![required(&cp.child("clientIP"), when)];
            };
            let tp = cp.child("clientIP").child("timeoutSeconds");
            match cip.timeout_seconds {
                None => vec![required(&tp, when)],
                Some(t) if t <= 0 || t > 86400 => vec![invalid(
                    &tp,
                    t,
                    "must be greater than 0 and less than 86400",
                )],
                Some(_) => vec![],
            }
        }
        "None" if s.session_affinity_config.is_some() => {
            vec![forbidden(
                &cp,
                "must not be set when session affinity is None",
            )]
        }
        "None" => vec![],
        other => vec![not_supported(&ap, other, &["ClientIP", "None"])],
    }
}

fn validate_cluster_ips(s: &ServiceSpec, sp: &Path) -> Vec<FieldError> {
    if type_of(s) == "ExternalName" {
        return vec![];
    }
    let mut errs = Vec::new();
    let cp = sp.child("clusterIPs");
    let ips = s.cluster_ips.as_deref().unwrap_or_default();
    let ip = s.cluster_ip.as_deref().unwrap_or("");
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(required(&cp, ""));
        } else if ips[0] != ip {
            errs.push(invalid(
                &cp,
                bad_strings(Some(ips)),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(invalid(
            &cp,
            bad_strings(Some(ips)),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = HashSet::new();
    for (i, f) in s.ip_families.iter().flatten().enumerate() {
        let fp = sp.child("ipFamilies").index(i);
        if f != "IPv4" && f != "IPv6" {
            errs.push(not_supported(&fp, f, &["IPv4", "IPv6"]));
        }
        if !seen.insert(f) {
            errs.push(duplicate(&fp, f));
        }
    }
    if let Some(p) = s.ip_family_policy.as_deref() {
        let valid = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !valid.contains(&p) {
            errs.push(not_supported(&sp.child("ipFamilyPolicy"), p, &valid));
        }
    }
    let mut bad_ips = false;
    for (i, addr) in ips.iter().enumerate() {
        if i == 0 && addr == "None" {
            if ips.len() > 1 {
                bad_ips = true;
                errs.push(invalid(
                    &cp,
                    bad_strings(Some(ips)),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let msgs = is_valid_ip(addr);
        bad_ips |= !msgs.is_empty();
        errs.extend(msgs.iter().map(|m| invalid(&cp.index(i), addr, m)));
    }
    if ips.len() > 2 {
        errs.push(invalid(
            &cp,
            bad_strings(Some(ips)),
            "may only hold up to 2 values",
        ));
    }
    if bad_ips {
        return errs;
    }
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|a| a.contains(':')).count();
        if v6 != 1 || ips.len() != 2 {
            errs.push(invalid(
                &cp,
                bad_strings(Some(ips)),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(s) {
        for (i, (addr, fam)) in ips.iter().zip(s.ip_families.iter().flatten()).enumerate() {
            let is_v6 = addr.contains(':');
            if fam == "IPv4" && is_v6 {
                errs.push(invalid(
                    &cp.index(i),
                    addr,
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if fam == "IPv6" && !is_v6 {
                errs.push(invalid(
                    &cp.index(i),
                    addr,
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

/// `core.ServicePort{...}` as Go's `%#v` prints the (protocol, port) key of a duplicate.
fn go_port_key(protocol: &str, port: i32) -> Bad {
    Bad::Go(format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(protocol)
    ))
}

fn validate_node_ports(s: &ServiceSpec, ports: &[ServicePort], sp: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let pp = sp.child("ports");
    if type_of(s) == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.node_port.unwrap_or(0) != 0 {
                errs.push(forbidden(
                    &pp.index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = p.node_port.unwrap_or(0);
        if np != 0 && !node_ports.insert((p.protocol.clone(), np)) {
            errs.push(duplicate(&pp.index(i).child("nodePort"), np));
        }
    }
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.clone().unwrap_or_default();
        if !seen.insert((proto.clone(), p.port)) {
            errs.push(duplicate(&pp.index(i), go_port_key(&proto, p.port)));
        }
    }
    errs
}

fn validate_load_balancer_fields(s: &ServiceSpec, sp: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let is_lb = type_of(s) == "LoadBalancer";
    let ranges = s.load_balancer_source_ranges.as_deref().unwrap_or_default();
    if !ranges.is_empty() {
        let rp = sp.child("LoadBalancerSourceRanges");
        if !is_lb {
            errs.push(forbidden(
                &rp,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.trim();
            errs.extend(is_valid_cidr(r).iter().map(|m| invalid(&rp.index(i), r, m)));
        }
    }
    if s.allocate_load_balancer_node_ports.is_some() && !is_lb {
        errs.push(forbidden(
            &sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if is_lb && s.allocate_load_balancer_node_ports.is_none() {
        errs.push(required(&Path::new("allocateLoadBalancerNodePorts"), ""));
    }
    match (&s.load_balancer_class, is_lb) {
        (Some(c), true) => errs.extend(qualified_name(c, &sp.child("loadBalancerClass"))),
        (Some(_), false) => errs.push(forbidden(
            &sp.child("loadBalancerClass"),
            "may only be used when `type` is 'LoadBalancer'",
        )),
        _ => {}
    }
    errs
}

fn validate_traffic_policies(s: &ServiceSpec, sp: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let etp = s.external_traffic_policy.as_deref().unwrap_or("");
    let etp_path = sp.child("externalTrafficPolicy");
    if !externally_accessible(s) {
        if !etp.is_empty() {
            errs.push(invalid(
                &etp_path,
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(required(&etp_path, ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(not_supported(&etp_path, etp, &["Cluster", "Local"]));
    }
    let hc = s.health_check_node_port.unwrap_or(0);
    let hcp = sp.child("healthCheckNodePort");
    if !needs_health_check(s) {
        if hc != 0 {
            errs.push(invalid(&hcp, hc, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"));
        }
    } else if hc == 0 {
        errs.push(required(&hcp, ""));
    } else {
        errs.extend(
            is_valid_port_num(i64::from(hc))
                .iter()
                .map(|m| invalid(&hcp, hc, m)),
        );
    }
    let itp_path = sp.child("internalTrafficPolicy");
    match s.internal_traffic_policy.as_deref() {
        None if matches!(type_of(s), "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(required(&itp_path, ""))
        }
        Some(p) if p != "Cluster" && p != "Local" => {
            errs.push(not_supported(&itp_path, p, &["Cluster", "Local"]))
        }
        _ => {}
    }
    if let Some(td) = s
        .traffic_distribution
        .as_deref()
        .filter(|td| *td != "PreferClose")
    {
        errs.push(not_supported(
            &sp.child("trafficDistribution"),
            td,
            &["PreferClose"],
        ));
    }
    errs
}

fn validate_cluster_ips_update(new: &ServiceSpec, old: &ServiceSpec) -> Vec<FieldError> {
    if type_of(new) == "ExternalName" || type_of(old) == "ExternalName" {
        return vec![];
    }
    if is_headless(new) && is_headless(old) {
        return vec![];
    }
    let mut errs = Vec::new();
    let cp = Path::new("spec").child("clusterIPs");
    let (n, o) = (
        new.cluster_ips.as_deref().unwrap_or_default(),
        old.cluster_ips.as_deref().unwrap_or_default(),
    );
    let bad = || bad_strings(Some(n));
    if n.len() == o.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                errs.push(invalid(&cp.index(i), bad(), "may not change once set"));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(invalid(
                &cp.index(0),
                bad(),
                "primary clusterIP can not be unset",
            ));
        } else if n[0] != o[0] {
            errs.push(invalid(&cp.index(0), bad(), "may not change once set"));
        }
        if n.len() == 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
            errs.push(invalid(
                &Path::new("spec").child("ipFamilyPolicy"),
                new.ip_family_policy.as_deref(),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(invalid(&cp.index(0), bad(), "may not change once set"));
    }
    errs
}

fn validate_lb_class_update(new: &ServiceSpec, old: &ServiceSpec) -> Vec<FieldError> {
    if type_of(new) == "LoadBalancer"
        && type_of(old) == "LoadBalancer"
        && new.load_balancer_class != old.load_balancer_class
    {
        return vec![invalid(
            &Path::new("spec").child("loadBalancerClass"),
            new.load_balancer_class.as_deref(),
            "may not change once set",
        )];
    }
    vec![]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn svc(patch: Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
        });
        json_patch::merge(&mut v, &patch);
        let mut s: Service = serde_json::from_value(v).unwrap_or_default();
        s.set_defaults();
        s
    }

    fn errs(e: Vec<FieldError>) -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_match_upstream() {
        let s =
            serde_json::to_value(svc(json!({"spec": {"type": "NodePort"}}))).unwrap_or_default();
        let spec = &s["spec"];
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        let s = serde_json::to_value(svc(json!({}))).unwrap_or_default();
        assert!(s["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn create_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({}), vec![]),
            (
                json!({"spec": {"clusterIP": "None", "ports": null}}),
                vec![],
            ),
            (
                json!({"spec": {"ports": null}}),
                vec!["spec.ports: Required value"],
            ),
            (
                json!({"spec": {"type": "Fancy"}}),
                vec![
                    "spec.type: Unsupported value: \"Fancy\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                ],
            ),
            (
                json!({"spec": {"ports": [{"port": 0}]}}),
                vec![
                    "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}}),
                vec!["spec.ports[1].name: Duplicate value: \"a\""],
            ),
            (
                json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}}),
                vec![
                    "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
                ],
            ),
            (
                json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
                vec![
                    "spec.ports[0].name: Required value",
                    "spec.ports[1].name: Required value",
                ],
            ),
            (
                json!({"spec": {"ports": [{"port": 80, "nodePort": 30000}]}}),
                vec![
                    "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                ],
            ),
            (
                json!({"metadata": {"name": "1web"}}),
                vec![
                    "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                ],
            ),
            (
                json!({"spec": {"type": "ExternalName", "externalName": "example.com", "ports": null, "ipFamilies": null, "ipFamilyPolicy": null}}),
                vec![],
            ),
        ];
        for (patch, want) in cases {
            let s = svc(patch.clone());
            assert_eq!(errs(s.validate()), want, "{patch}");
        }
    }

    #[test]
    fn cluster_ip_is_immutable_and_carried_over() {
        let old = svc(json!({"spec": {"clusterIP": "10.0.0.10"}}));
        let new = svc(json!({"spec": {"clusterIP": "10.0.0.11"}}));
        assert_eq!(
            errs(new.validate_update(&old)),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.11\"}: may not change once set"
            ]
        );
        let mut new = svc(json!({}));
        service_carry_allocated(&mut new, &old);
        assert!(new.validate_update(&old).is_empty());
        assert_eq!(
            new.spec.and_then(|s| s.cluster_ip).as_deref(),
            Some("10.0.0.10")
        );
    }
}
