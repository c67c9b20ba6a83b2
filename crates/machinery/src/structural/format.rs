//! The string `format`s upstream checks (kube-openapi's `strfmt` registry); unknown formats, and
//! the numeric ones (`int32`, `int64`, `float`, `double`), do not constrain strings.

use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;

/// Whether `s` is valid for `format`; `None` when the format does not constrain strings.
pub(crate) fn check(format: &str, s: &str) -> Option<bool> {
    let ok = match format {
        "byte" => is_base64(s),
        "date" => is_date(s),
        "date-time" | "datetime" => is_date_time(s),
        "uuid" => is_uuid(s),
        "ipv4" => s.contains('.') && s.parse::<IpAddr>().is_ok(),
        "ipv6" => s.contains(':') && s.parse::<IpAddr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "hostname" => is_hostname(s),
        _ => return None,
    };
    Some(ok)
}

/// Go's `base64.StdEncoding` (padded).
fn is_base64(s: &str) -> bool {
    let s: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if !s.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `2006-01-02`, a real calendar day.
fn is_date(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// strfmt's `IsDateTime`: a date, `t`, then `hh:mm:ss[.frac](z|±hh:mm)` (case-insensitive).
fn is_date_time(s: &str) -> bool {
    static TIME: OnceLock<Option<Regex>> = OnceLock::new();
    let time = TIME.get_or_init(|| {
        Regex::new(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$").ok()
    });
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let Some(caps) = time.as_ref().and_then(|re| re.captures(parts[1])) else {
        return false;
    };
    let field = |i: usize| caps.get(i).and_then(|m| m.as_str().parse::<u32>().ok());
    matches!((field(1), field(2), field(3)), (Some(h), Some(m), Some(sec)) if h <= 23 && m <= 59 && sec <= 59)
}

fn is_uuid(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !s.contains('-') {
        return hex(s, 32);
    }
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5 && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| hex(p, n))
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    digits(bits, bits.len()).is_some_and(|b| !bits.is_empty() && b <= max)
}

/// Go's `net.ParseMAC` for 6-byte addresses (`:`/`-` separated pairs or `.` separated quads).
fn is_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if [6, 8, 20].contains(&parts.len()) && parts.iter().all(|p| hex(p, 2)) {
            return true;
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    [3, 4, 10].contains(&parts.len()) && parts.iter().all(|p| hex(p, 4))
}

/// strfmt's hostname rule.
fn is_hostname(s: &str) -> bool {
    static HOST: OnceLock<Option<Regex>> = OnceLock::new();
    let host = HOST.get_or_init(|| {
        Regex::new(
            r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
        )
        .ok()
    });
    s.len() <= 255 && host.as_ref().is_some_and(|re| re.is_match(s))
}
