//! Command-line value types shared by the subcommands, parsed as upstream's flags are.

use std::net::Ipv4Addr;

/// A CIDR such as 10.43.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want ADDRESS/PREFIX)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv4 address (IPv4 only for now)"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("prefix length {prefix:?} must be a number from 8 to 30"))?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(ip) & !mask != 0 {
            return Err(format!(
                "{s} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(ip) & mask)
            ));
        }
        Ok(Cidr { net: ip, prefix })
    }
}

impl Cidr {
    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        u32::from(ip) & mask == u32::from(self.net)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// A duration such as `5m`, `30s`, `1h30m` or `0`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {c:?} (use h, m, s, ms)"
                ));
            }
        };
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        total += n * unit;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("invalid duration {s:?}: want e.g. 5m, 30s, 1h30m"));
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_their_addresses_only() {
        let c: Cidr = "10.42.0.0/16".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(10, 42, 0, 0)));
        assert!(c.contains(Ipv4Addr::new(10, 42, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 43, 0, 1)));
        assert!(!c.contains(Ipv4Addr::new(192, 168, 88, 1)));
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("1h30m"),
            Ok(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert_eq!(parse_duration("0"), Ok(std::time::Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn cidr_parsing_explains_errors() {
        assert_eq!(
            "10.43.0.0/16".parse::<Cidr>(),
            Ok(Cidr {
                net: Ipv4Addr::new(10, 43, 0, 0),
                prefix: 16
            })
        );
        assert!(
            "10.43.0.1/16"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!(
            "10.43.0.0"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("not a CIDR")
        );
        assert!("fd00::/64".parse::<Cidr>().is_err());
    }
}
