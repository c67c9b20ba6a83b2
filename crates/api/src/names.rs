//! String validators with upstream's exact messages: those of
//! `k8s.io/apimachinery/pkg/util/validation` come from `k8rs-machinery`; the few it lacks (CIDRs,
//! user ids, sloppy IP parsing) are here.

pub use k8rs_machinery::validation::{
    inclusive_range_error, is_config_map_key, is_dns1035_label, is_dns1123_label,
    is_dns1123_subdomain, is_http_header_name, is_qualified_name,
    is_relaxed_env_var_name as is_env_var_name, is_valid_label_value, is_valid_percent,
    is_valid_port_name, is_valid_port_num, name_is_dns_label, name_is_dns_subdomain,
    name_is_dns1035_label, validate_path_segment_name,
};

/// Parses an IP the way Go's `ParseIPSloppy` does (IPv4 parts may carry leading zeros).
pub fn parse_ip(value: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = value.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 3 || !p.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    Some(std::net::IpAddr::from(octets))
}

pub fn is_valid_ip(value: &str) -> Vec<String> {
    if parse_ip(value).is_some() {
        return vec![];
    }
    vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()]
}

pub fn is_valid_cidr(value: &str) -> Vec<String> {
    let ok = value.split_once('/').is_some_and(|(ip, bits)| {
        let max = match parse_ip(ip) {
            Some(std::net::IpAddr::V4(_)) => 32,
            Some(std::net::IpAddr::V6(_)) => 128,
            None => return false,
        };
        bits.parse::<u8>().is_ok_and(|b| b <= max) && bits.chars().all(|c| c.is_ascii_digit())
    });
    if ok {
        return vec![];
    }
    vec!["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".to_string()]
}

/// User and group ids: `0..=2147483647`.
pub fn is_valid_id(id: i64) -> Vec<String> {
    if (0..=i64::from(i32::MAX)).contains(&id) {
        vec![]
    } else {
        vec![inclusive_range_error(0, i64::from(i32::MAX))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_cidrs_and_ids() {
        assert!(is_valid_ip("10.0.0.1").is_empty() && is_valid_ip("010.0.0.1").is_empty());
        assert_eq!(
            is_valid_ip("x"),
            vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
        );
        assert!(is_valid_cidr("10.0.0.0/8").is_empty() && !is_valid_cidr("10.0.0.0/33").is_empty());
        assert!(is_valid_cidr("fd00::/64").is_empty());
        assert_eq!(
            is_valid_id(-1),
            vec!["must be between 0 and 2147483647, inclusive"]
        );
    }

    #[test]
    fn machinery_messages_are_upstreams() {
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_config_map_key("a b"),
            vec![
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
        assert_eq!(
            is_valid_port_num(0),
            vec!["must be between 1 and 65535, inclusive"]
        );
    }
}
