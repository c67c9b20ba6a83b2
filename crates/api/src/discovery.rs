//! discovery.k8s.io/v1: EndpointSlices.

use std::collections::HashSet;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use crate::core::container::{dns_label, dns_subdomain, qualified_name};
use crate::field::{FieldError, Path, duplicate, invalid, not_supported, required, too_many};
use crate::meta::{immutable, validate_labels};
use crate::names::{is_dns1123_subdomain, is_valid_port_num, parse_ip};
use crate::{ApiType, check_meta, check_meta_update};

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;
const MAX_TOPOLOGY_LABELS: usize = 16;

impl ApiType for EndpointSlice {
    fn set_defaults(&mut self) {
        for p in self.ports.iter_mut().flatten() {
            if p.name.is_none() {
                p.name = Some(String::new());
            }
            if p.protocol.is_none() {
                p.protocol = Some("TCP".into());
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let ap = Path::new("addressType");
        if self.address_type.is_empty() {
            errs.push(required(&ap, ""));
        } else if !ADDRESS_TYPES.contains(&self.address_type.as_str()) {
            errs.push(not_supported(&ap, &self.address_type, ADDRESS_TYPES));
        }
        errs.extend(validate_endpoints(&self.endpoints, &self.address_type));
        errs.extend(validate_ports(self.ports.as_deref().unwrap_or_default()));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(self.validate());
        if self.address_type != old.address_type {
            errs.push(immutable(&Path::new("addressType"), &self.address_type));
        }
        errs
    }
}

fn validate_endpoints(endpoints: &[Endpoint], address_type: &str) -> Vec<FieldError> {
    let ep = Path::new("endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        return vec![too_many(&ep, endpoints.len(), MAX_ENDPOINTS)];
    }
    let mut errs = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let ip = ep.index(i);
        let ap = ip.child("addresses");
        if e.addresses.is_empty() {
            errs.push(required(&ap, "must contain at least 1 address"));
        } else if e.addresses.len() > MAX_ADDRESSES {
            errs.push(too_many(&ap, e.addresses.len(), MAX_ADDRESSES));
        }
        for (j, a) in e.addresses.iter().enumerate() {
            errs.extend(validate_address(a, address_type, &ap.index(j)));
        }
        if let Some(n) = &e.node_name {
            errs.extend(dns_subdomain(n, &ip.child("nodeName")));
        }
        let tp = ip.child("deprecatedTopology");
        let topology = e.deprecated_topology.as_ref();
        if topology.is_some_and(|t| t.len() > MAX_TOPOLOGY_LABELS) {
            errs.push(too_many(
                &tp,
                topology.map_or(0, |t| t.len()),
                MAX_TOPOLOGY_LABELS,
            ));
        }
        errs.extend(validate_labels(topology, &tp));
        if let Some(h) = &e.hostname {
            errs.extend(dns_label(h, &ip.child("hostname")));
        }
    }
    errs
}

fn validate_address(a: &str, address_type: &str, path: &Path) -> Vec<FieldError> {
    let parsed = parse_ip(a);
    match address_type {
        "IPv4" if !matches!(parsed, Some(std::net::IpAddr::V4(_))) => {
            vec![invalid(path, a, "must be a valid IPv4 address")]
        }
        "IPv6" if !matches!(parsed, Some(std::net::IpAddr::V6(_))) => {
            vec![invalid(path, a, "must be a valid IPv6 address")]
        }
        "IPv4" | "IPv6" => crate::core::endpoints::non_special_ip(a, path),
        "FQDN" => {
            let name = a.strip_suffix('.').unwrap_or(a);
            let mut errs: Vec<FieldError> = is_dns1123_subdomain(&name.to_lowercase())
                .iter()
                .map(|m| invalid(path, a, m))
                .collect();
            if name.split('.').count() < 2 {
                errs.push(invalid(
                    path,
                    a,
                    "should be a domain with at least two segments separated by dots",
                ));
            }
            errs
        }
        _ => vec![],
    }
}

fn validate_ports(ports: &[EndpointPort]) -> Vec<FieldError> {
    let pp = Path::new("ports");
    if ports.len() > MAX_PORTS {
        return vec![too_many(&pp, ports.len(), MAX_PORTS)];
    }
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ip = pp.index(i);
        let name = p.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            errs.extend(dns_label(name, &ip.child("name")));
        }
        if !names.insert(name) {
            errs.push(duplicate(&ip.child("name"), name));
        }
        match p.protocol.as_deref() {
            None => errs.push(required(&ip.child("protocol"), "")),
            Some(proto) if !PROTOCOLS.contains(&proto) => {
                errs.push(not_supported(&ip.child("protocol"), proto, PROTOCOLS))
            }
            Some(_) => {}
        }
        if let Some(n) = p.port {
            errs.extend(
                is_valid_port_num(i64::from(n))
                    .iter()
                    .map(|m| invalid(&ip.child("port"), n, m)),
            );
        }
        if let Some(ap) = &p.app_protocol {
            errs.extend(qualified_name(ap, &ip.child("appProtocol")));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoint_slice_checks() {
        let mut s: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "resourceVersion": "1"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"]}, {"addresses": ["fd00::1"]}],
            "ports": [{"port": 80}]
        }))
        .unwrap_or_default();
        s.set_defaults();
        let e: Vec<String> = s.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "endpoints[1].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"
            ]
        );
        let mut changed = s.clone();
        changed.address_type = "IPv6".into();
        let e: Vec<String> = changed
            .validate_update(&s)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            e.contains(&"addressType: Invalid value: \"IPv6\": field is immutable".to_string())
        );
    }
}
