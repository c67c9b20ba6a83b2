//! The host's own non-loopback IPv4 addresses, read from `/proc/net/fib_trie` (no netlink, no
//! libc): every leaf marked `/32 host LOCAL` is an address assigned to an interface.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

const FIB_TRIE: &str = "/proc/net/fib_trie";

/// The host's non-loopback IPv4 addresses, sorted; empty if `/proc/net/fib_trie` is unreadable.
pub fn host_ipv4_addresses() -> Vec<Ipv4Addr> {
    match std::fs::read_to_string(FIB_TRIE) {
        Ok(text) => parse_fib_trie(&text),
        Err(e) => {
            tracing::warn!("cannot read {FIB_TRIE} to find host addresses: {e}");
            Vec::new()
        }
    }
}

/// Parses the text of `/proc/net/fib_trie` into the local non-loopback addresses.
pub fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut found = BTreeSet::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(ip) = leaf.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) {
                found.insert(ip);
            }
        } else if !line.starts_with('/') {
            leaf = None;
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.168.1.0/24 2 0 2
           |-- 192.168.1.0
              /24 link UNICAST
           |-- 192.168.1.20
              /24 link UNICAST
              /32 host LOCAL
        |-- 192.168.1.255
           /32 link BROADCAST
     |-- 10.1.2.3
        /32 host LOCAL
Local:
     |-- 10.1.2.3
        /32 host LOCAL
";

    #[test]
    fn finds_local_non_loopback_addresses_once() {
        let ips = parse_fib_trie(SAMPLE);
        assert_eq!(
            ips,
            [Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(192, 168, 1, 20)]
        );
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(parse_fib_trie("|-- not-an-ip\n /32 host LOCAL\n").is_empty());
        assert!(parse_fib_trie("").is_empty());
    }
}
