//! Endpoints (core/v1) and the non-special-IP rule shared with Services and EndpointSlices.

use k8s_openapi::api::core::v1::{EndpointPort, Endpoints};

use super::container::{PROTOCOLS, dns_label, dns_subdomain, qualified_name};
use crate::field::{FieldError, Path, invalid, not_supported, required};
use crate::names::{is_valid_ip, is_valid_port_num, parse_ip};
use crate::{ApiType, check_meta, check_meta_update};

/// `ValidateNonSpecialIP`.
pub fn non_special_ip(ip: &str, path: &Path) -> Vec<FieldError> {
    let Some(addr) = parse_ip(ip) else {
        return vec![invalid(path, ip, "must be a valid IP address")];
    };
    let mut errs = Vec::new();
    if addr.is_unspecified() {
        errs.push(invalid(path, ip, &format!("may not be unspecified ({ip})")));
    }
    if addr.is_loopback() {
        errs.push(invalid(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local = match addr {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        errs.push(invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let ll_multicast = match addr {
        std::net::IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xff0f) == 0xff02,
    };
    if ll_multicast {
        errs.push(invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

impl ApiType for Endpoints {
    fn set_defaults(&mut self) {
        for p in self
            .subsets
            .iter_mut()
            .flatten()
            .flat_map(|s| s.ports.iter_mut().flatten())
        {
            if p.protocol.as_deref().unwrap_or("").is_empty() {
                p.protocol = Some("TCP".into());
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_subsets(self));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(self.validate());
        errs
    }
}

fn validate_subsets(ep: &Endpoints) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ss) in ep.subsets.iter().flatten().enumerate() {
        let ip = Path::new("subsets").index(i);
        let (addrs, not_ready) = (
            ss.addresses.as_deref().unwrap_or_default(),
            ss.not_ready_addresses.as_deref().unwrap_or_default(),
        );
        if addrs.is_empty() && not_ready.is_empty() {
            errs.push(required(
                &ip,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (field, list) in [("addresses", addrs), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let ap = ip.child(field).index(j);
                errs.extend(
                    is_valid_ip(&a.ip)
                        .iter()
                        .map(|m| invalid(&ap.child("ip"), &a.ip, m)),
                );
                if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
                    errs.extend(dns_label(h, &ap.child("hostname")));
                }
                if let Some(n) = &a.node_name {
                    errs.extend(dns_subdomain(n, &ap.child("nodeName")));
                }
                errs.extend(non_special_ip(&a.ip, &ap.child("ip")));
            }
        }
        let ports = ss.ports.as_deref().unwrap_or_default();
        for (j, p) in ports.iter().enumerate() {
            errs.extend(validate_endpoint_port(
                p,
                ports.len() > 1,
                &ip.child("ports").index(j),
            ));
        }
    }
    errs
}

fn validate_endpoint_port(p: &EndpointPort, require_name: bool, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(dns_label(name, &path.child("name")));
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
    if let Some(ap) = &p.app_protocol {
        errs.extend(qualified_name(ap, &path.child("appProtocol")));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_checks() {
        let mut ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80}]}, {"ports": [{"port": 81}]}]
        }))
        .unwrap_or_default();
        ep.set_defaults();
        let e: Vec<String> = ep.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
            ]
        );
    }
}
