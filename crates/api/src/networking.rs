//! networking.k8s.io/v1: NetworkPolicies, Ingresses, IngressClasses.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, IPBlock, Ingress, IngressBackend, IngressClass, IngressClassSpec, IngressRule,
    IngressSpec, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::core::container::dns_subdomain;
use crate::field::{Bad, FieldError, Path, forbidden, invalid, not_supported, required, too_long};
use crate::meta::{immutable, validate_label_selector};
use crate::names::{
    is_dns1035_label, is_dns1123_subdomain, is_valid_cidr, is_valid_port_name, is_valid_port_num,
    parse_ip,
};
use crate::{ApiType, check_meta, check_meta_update};

const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

// ---- NetworkPolicy -------------------------------------------------------------------------

impl ApiType for NetworkPolicy {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let rules = spec
            .ingress
            .iter_mut()
            .flatten()
            .flat_map(|r| r.ports.iter_mut().flatten());
        let egress = spec
            .egress
            .iter_mut()
            .flatten()
            .flat_map(|r| r.ports.iter_mut().flatten());
        for p in rules.chain(egress) {
            if p.protocol.is_none() {
                p.protocol = Some("TCP".into());
            }
        }
        if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
            let mut types = vec!["Ingress".to_string()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                types.push("Egress".into());
            }
            spec.policy_types = Some(types);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_np_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_np_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }
}

fn validate_np_spec(spec: &NetworkPolicySpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = validate_label_selector(spec.pod_selector.as_ref(), &sp.child("podSelector"));
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        let rp = sp.child("ingress").index(i);
        errs.extend(np_ports(r.ports.as_deref().unwrap_or_default(), &rp));
        errs.extend(np_peers(
            r.from.as_deref().unwrap_or_default(),
            &rp.child("from"),
        ));
    }
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        let rp = sp.child("egress").index(i);
        errs.extend(np_ports(r.ports.as_deref().unwrap_or_default(), &rp));
        errs.extend(np_peers(
            r.to.as_deref().unwrap_or_default(),
            &rp.child("to"),
        ));
    }
    let types = spec.policy_types.as_deref().unwrap_or_default();
    let tp = sp.child("policyTypes");
    if types.len() > 2 {
        let items: Vec<String> = types.iter().map(|t| crate::field::go_quote(t)).collect();
        errs.push(invalid(
            &tp,
            Bad::Go(format!("&[]networking.PolicyType{{{}}}", items.join(", "))),
            "may not specify more than two policyTypes",
        ));
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            errs.push(not_supported(&tp.index(i), t, &["Ingress", "Egress"]));
        }
    }
    errs
}

fn np_ports(ports: &[NetworkPolicyPort], rule: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(np_port(p, &rule.child("ports").index(i)));
    }
    errs
}

fn np_port(p: &NetworkPolicyPort, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(proto) = p.protocol.as_deref().filter(|pr| !PROTOCOLS.contains(pr)) {
        errs.push(not_supported(&path.child("protocol"), proto, PROTOCOLS));
    }
    let ep = path.child("endPort");
    match (&p.port, p.end_port) {
        (Some(IntOrString::Int(n)), end) => {
            errs.extend(
                is_valid_port_num(i64::from(*n))
                    .iter()
                    .map(|m| invalid(&path.child("port"), *n, m)),
            );
            if let Some(e) = end {
                if e < *n {
                    errs.push(invalid(&ep, *n, "must be greater than or equal to `port`"));
                }
                errs.extend(
                    is_valid_port_num(i64::from(e))
                        .iter()
                        .map(|m| invalid(&ep, e, m)),
                );
            }
        }
        (Some(IntOrString::String(s)), end) => {
            if let Some(e) = end {
                errs.push(invalid(
                    &ep,
                    e,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            errs.extend(
                is_valid_port_name(s)
                    .iter()
                    .map(|m| invalid(&path.child("port"), s, m)),
            );
        }
        (None, Some(e)) => errs.push(invalid(
            &ep,
            e,
            "may not be specified when `port` is not specified",
        )),
        (None, None) => {}
    }
    errs
}

fn np_peers(peers: &[NetworkPolicyPeer], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let pp = path.index(i);
        let mut count = 0;
        for (field, sel) in [
            ("podSelector", &peer.pod_selector),
            ("namespaceSelector", &peer.namespace_selector),
        ] {
            if let Some(s) = sel {
                count += 1;
                errs.extend(validate_label_selector(Some(s), &pp.child(field)));
            }
        }
        if let Some(b) = &peer.ip_block {
            count += 1;
            errs.extend(ip_block(b, &pp.child("ipBlock")));
        }
        if count == 0 {
            errs.push(required(&pp, "must specify a peer"));
        } else if count > 1 && peer.ip_block.is_some() {
            errs.push(forbidden(
                &pp,
                "may not specify both ipBlock and another peer",
            ));
        }
    }
    errs
}

/// A CIDR as (address bits, prefix length, IPv6?).
fn parse_cidr(c: &str) -> Option<(u128, u32, bool)> {
    let (ip, bits) = c.split_once('/')?;
    let bits: u32 = bits.parse().ok()?;
    match parse_ip(ip)? {
        std::net::IpAddr::V4(v4) => Some((u128::from(u32::from(v4)), bits, false)),
        std::net::IpAddr::V6(v6) => Some((u128::from(v6), bits, true)),
    }
}

fn ip_block(b: &IPBlock, path: &Path) -> Vec<FieldError> {
    let cp = path.child("cidr");
    if b.cidr.is_empty() {
        return vec![required(&cp, "")];
    }
    let mut errs: Vec<FieldError> = is_valid_cidr(&b.cidr)
        .iter()
        .map(|m| invalid(&cp, &b.cidr, m))
        .collect();
    let Some((net, len, v6)) = parse_cidr(&b.cidr) else {
        return errs;
    };
    let width = if v6 { 128 } else { 32 };
    let mask = |l: u32| {
        if l == 0 {
            0
        } else {
            (!0u128 << (width - l.min(width))) & (if v6 { !0 } else { u128::from(u32::MAX) })
        }
    };
    for (i, e) in b.except.iter().flatten().enumerate() {
        let ep = path.child("except").index(i);
        let msgs = is_valid_cidr(e);
        errs.extend(msgs.iter().map(|m| invalid(&ep, e, m)));
        let Some((ex, ex_len, ex_v6)) = parse_cidr(e) else {
            continue;
        };
        let contained = ex_v6 == v6 && (ex & mask(len)) == (net & mask(len));
        if !contained || len >= ex_len {
            errs.push(invalid(&ep, e, "must be a strict subset of `cidr`"));
        }
    }
    errs
}

// ---- Ingress -------------------------------------------------------------------------------

impl ApiType for Ingress {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_ingress_spec(
            &self.spec.clone().unwrap_or_default(),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_ingress_spec(
            &self.spec.clone().unwrap_or_default(),
        ));
        errs
    }
}

fn validate_ingress_spec(spec: &IngressSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let rules = spec.rules.as_deref().unwrap_or_default();
    if rules.is_empty() && spec.default_backend.is_none() {
        let bad = if spec.rules.is_none() {
            "[]networking.IngressRule(nil)"
        } else {
            "[]networking.IngressRule{}"
        };
        errs.push(invalid(
            &sp,
            Bad::Go(bad.into()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = &spec.default_backend {
        errs.extend(ingress_backend(b, &sp.child("defaultBackend")));
    }
    for (i, r) in rules.iter().enumerate() {
        errs.extend(ingress_rule(r, &sp.child("rules").index(i)));
    }
    for (i, t) in spec.tls.iter().flatten().enumerate() {
        for (j, h) in t.hosts.iter().flatten().enumerate() {
            errs.extend(host_name(
                h,
                &sp.child("tls").index(i).child("hosts").index(j),
            ));
        }
    }
    if let Some(c) = &spec.ingress_class_name {
        errs.extend(dns_subdomain(c, &sp.child("ingressClassName")));
    }
    errs
}

/// A DNS name or a `*.`-wildcard one.
fn host_name(host: &str, path: &Path) -> Vec<FieldError> {
    match host.strip_prefix("*.") {
        Some(rest) if !rest.contains('*') => is_dns1123_subdomain(rest)
            .iter()
            .map(|_| invalid(path, host, WILDCARD_MSG))
            .take(1)
            .collect(),
        _ if host.contains('*') => vec![invalid(path, host, WILDCARD_MSG)],
        _ => is_dns1123_subdomain(host)
            .iter()
            .map(|m| invalid(path, host, m))
            .collect(),
    }
}

const WILDCARD_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn ingress_rule(r: &IngressRule, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(h) = r.host.as_deref().filter(|h| !h.is_empty()) {
        if parse_ip(h).is_some() {
            errs.push(invalid(
                &path.child("host"),
                h,
                "must be a DNS name, not an IP address",
            ));
        }
        errs.extend(host_name(h, &path.child("host")));
    }
    if let Some(http) = &r.http {
        let hp = path.child("http");
        if http.paths.is_empty() {
            errs.push(required(&hp.child("paths"), ""));
        }
        for (i, p) in http.paths.iter().enumerate() {
            errs.extend(ingress_path(p, &hp.child("paths").index(i)));
        }
    }
    errs
}

fn ingress_path(p: &HTTPIngressPath, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let value = p.path.as_deref().unwrap_or("");
    let pp = path.child("path");
    match p.path_type.as_str() {
        "" => {
            return vec![required(
                &path.child("pathType"),
                "pathType must be specified",
            )];
        }
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(invalid(&pp, value, "must be an absolute path"));
            }
            for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                if value.contains(seq) {
                    errs.push(invalid(&pp, value, &format!("must not contain '{seq}'")));
                }
            }
            for suffix in ["/..", "/."] {
                if value.ends_with(suffix) {
                    errs.push(invalid(&pp, value, &format!("cannot end with '{suffix}'")));
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(invalid(&pp, value, "must be an absolute path"));
            }
        }
        other => errs.push(not_supported(&path.child("pathType"), other, PATH_TYPES)),
    }
    errs.extend(ingress_backend(&p.backend, &path.child("backend")));
    errs
}

fn ingress_backend(b: &IngressBackend, path: &Path) -> Vec<FieldError> {
    match (&b.resource, &b.service) {
        (Some(_), Some(_)) => vec![invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )],
        (Some(r), None) => {
            let rp = path.child("resource");
            let mut errs = Vec::new();
            if r.kind.is_empty() {
                errs.push(required(&rp.child("kind"), ""));
            }
            if r.name.is_empty() {
                errs.push(required(&rp.child("name"), ""));
            }
            errs
        }
        (None, Some(s)) => {
            let mut errs = Vec::new();
            let np = path.child("service").child("name");
            if s.name.is_empty() {
                errs.push(required(&np, ""));
            } else {
                errs.extend(
                    is_dns1035_label(&s.name)
                        .iter()
                        .map(|m| invalid(&np, &s.name, m)),
                );
            }
            let port = s.port.clone().unwrap_or_default();
            let name = port.name.unwrap_or_default();
            let number = port.number.unwrap_or(0);
            let portp = path.child("service").child("port");
            match (name.is_empty(), number == 0) {
                (false, false) => {
                    errs.push(invalid(path, "", "cannot set both port name & port number"))
                }
                (false, true) => errs.extend(
                    is_valid_port_name(&name)
                        .iter()
                        .map(|m| invalid(&portp.child("name"), &name, m)),
                ),
                (true, false) => errs.extend(
                    is_valid_port_num(i64::from(number))
                        .iter()
                        .map(|m| invalid(&portp.child("number"), number, m)),
                ),
                (true, true) => errs.push(required(path, "port name or number is required")),
            }
            errs
        }
        (None, None) => vec![invalid(path, "", "resource or service backend is required")],
    }
}

// ---- IngressClass --------------------------------------------------------------------------

impl ApiType for IngressClass {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_ingress_class_spec(
            &self.spec.clone().unwrap_or_default(),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let (n, o) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        errs.extend(validate_ingress_class_spec(&n));
        if n.controller != o.controller {
            errs.push(immutable(
                &Path::new("spec").child("controller"),
                n.controller.as_deref().unwrap_or(""),
            ));
        }
        errs
    }
}

fn validate_ingress_class_spec(spec: &IngressClassSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let cp = sp.child("controller");
    let controller = spec.controller.as_deref().unwrap_or("");
    let mut errs = Vec::new();
    if controller.len() > 250 {
        errs.push(too_long(&cp, 250));
    }
    errs.extend(domain_prefixed_path(controller, &cp));
    if let Some(p) = &spec.parameters {
        let pp = sp.child("parameters");
        if p.kind.is_empty() {
            errs.push(required(&pp.child("kind"), ""));
        }
        if p.name.is_empty() {
            errs.push(required(&pp.child("name"), ""));
        }
        let ns = p.namespace.as_deref().unwrap_or("");
        match p.scope.as_deref() {
            None | Some("Cluster") if !ns.is_empty() => errs.push(forbidden(
                &pp.child("namespace"),
                "`parameters.scope` is set to 'Cluster'",
            )),
            Some("Namespace") if ns.is_empty() => errs.push(required(
                &pp.child("namespace"),
                "`parameters.scope` is set to 'Namespace'",
            )),
            None | Some("Cluster") | Some("Namespace") => {}
            Some(other) => errs.push(not_supported(
                &pp.child("scope"),
                other,
                &["Cluster", "Namespace"],
            )),
        }
    }
    errs
}

/// Upstream's `IsDomainPrefixedPath`.
fn domain_prefixed_path(value: &str, path: &Path) -> Vec<FieldError> {
    if value.is_empty() {
        return vec![required(path, "")];
    }
    let Some((host, rest)) = value.split_once('/') else {
        return vec![invalid(
            path,
            value,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )];
    };
    let mut errs: Vec<FieldError> = is_dns1123_subdomain(host)
        .iter()
        .map(|m| invalid(path, host, m))
        .collect();
    let path_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
    if !path_ok {
        errs.push(invalid(path, rest, "must be a valid path"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(e: Vec<FieldError>) -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn network_policy_defaults_and_peers() {
        let mut np: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": "np", "namespace": "default"},
            "spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}], "to": [{}]}]}
        }))
        .unwrap_or_default();
        np.set_defaults();
        let v = serde_json::to_value(&np).unwrap_or_default();
        assert_eq!(v["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(v["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            errs(np.validate()),
            vec!["spec.egress[0].to[0]: Required value: must specify a peer"]
        );
    }

    #[test]
    fn ingress_table() {
        let ing = |spec: serde_json::Value| -> Ingress {
            serde_json::from_value(
                json!({"metadata": {"name": "i", "namespace": "default"}, "spec": spec}),
            )
            .unwrap_or_default()
        };
        let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (
                json!({"rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}),
                vec![],
            ),
            (
                json!({}),
                vec![
                    "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
                ],
            ),
            (
                json!({"rules": [{"http": {"paths": [{"path": "/", "backend": backend}]}}]}),
                vec![
                    "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
                ],
            ),
            (
                json!({"rules": [{"http": {"paths": [{"path": "x", "pathType": "Exact", "backend": backend}]}}]}),
                vec![
                    "spec.rules[0].http.paths[0].path: Invalid value: \"x\": must be an absolute path",
                ],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "web"}}}),
                vec!["spec.defaultBackend: Required value: port name or number is required"],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(errs(ing(spec.clone()).validate()), want, "{spec}");
        }
    }

    #[test]
    fn ingress_class_controller() {
        let c: IngressClass = serde_json::from_value(
            json!({"metadata": {"name": "nginx"}, "spec": {"controller": "nginx"}}),
        )
        .unwrap_or_default();
        assert_eq!(
            errs(c.validate()),
            vec![
                "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"
            ]
        );
    }
}
