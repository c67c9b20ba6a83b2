//! Addresses: each hollow node's InternalIP, from the benchmarking range 198.18.0.0/15
//! (RFC 2544: never routed, never contacted), and the pod IPs each node hands out from its
//! `spec.podCIDR` as a host-local IPAM does: sequentially, skipping the network address, the
//! gateway (the first host) and the broadcast address, reusing freed addresses after a wrap.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The first address of the range node InternalIPs come from.
const NODE_RANGE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Usable addresses per /24 of that range (.1 to .254).
const PER_BLOCK: usize = 254;
/// How many /24 blocks the /15 holds.
const BLOCKS: usize = 512;

/// The most nodes one process can address.
pub const MAX_NODES: usize = PER_BLOCK * BLOCKS;

/// The InternalIP of the node with this index, never an address ending in .0 or .255.
pub fn node_ip(index: usize) -> Option<Ipv4Addr> {
    if index >= MAX_NODES {
        return None;
    }
    let block = (index / PER_BLOCK) as u32;
    let host = (index % PER_BLOCK) as u32 + 1;
    Some(Ipv4Addr::from(u32::from(NODE_RANGE) + block * 256 + host))
}

/// Parses `a.b.c.d/n` into its network address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = s.trim().split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Some((Ipv4Addr::from(u32::from(addr) & mask), prefix))
}

/// The pod addresses of one node's podCIDR.
#[derive(Clone, Debug)]
pub struct PodIpPool {
    cidr: String,
    first: u32,
    last: u32,
    next: u32,
    used: HashSet<u32>,
}

impl PodIpPool {
    /// A pool over `cidr`'s hosts after the gateway; `None` when `cidr` does not parse.
    pub fn new(cidr: &str) -> Option<PodIpPool> {
        let (network, prefix) = parse_cidr(cidr)?;
        let size = 1u64 << (32 - u32::from(prefix));
        let base = u64::from(u32::from(network));
        // network, gateway ... broadcast: hosts are base+2 ..= base+size-2.
        let (first, last) = (base + 2, (base + size).saturating_sub(2));
        let (first, last) = if size < 4 {
            (1, 0)
        } else {
            (first as u32, last as u32)
        };
        Some(PodIpPool {
            cidr: cidr.to_string(),
            first,
            last,
            next: first,
            used: HashSet::new(),
        })
    }

    /// The CIDR this pool was made from.
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    /// The next free address after the last one handed out, wrapping around.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        if self.first > self.last {
            return None;
        }
        let span = self.last - self.first + 1;
        for step in 0..span {
            let candidate = self.first + (self.next - self.first + step) % span;
            if self.used.insert(candidate) {
                self.next = if candidate == self.last {
                    self.first
                } else {
                    candidate + 1
                };
                return Some(Ipv4Addr::from(candidate));
            }
        }
        None
    }

    /// Marks an address as taken (a pod adopted after a restart); `false` if outside the pool.
    pub fn occupy(&mut self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        let inside = (self.first..=self.last).contains(&ip);
        if inside {
            self.used.insert(ip);
        }
        inside
    }

    /// Frees an address.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }

    /// How many addresses are taken.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn node_ips_skip_network_and_broadcast() {
        assert_eq!(node_ip(0), Some(ip("198.18.0.1")));
        assert_eq!(node_ip(253), Some(ip("198.18.0.254")));
        assert_eq!(node_ip(254), Some(ip("198.18.1.1")));
        assert_eq!(node_ip(MAX_NODES - 1), Some(ip("198.19.255.254")));
        assert_eq!(node_ip(MAX_NODES), None);
        let ips: HashSet<_> = (0..5000).filter_map(node_ip).collect();
        assert_eq!(ips.len(), 5000);
    }

    #[test]
    fn parses_cidrs() {
        assert_eq!(parse_cidr("10.42.3.9/24"), Some((ip("10.42.3.0"), 24)));
        assert_eq!(parse_cidr("10.42.3.0/0"), Some((ip("0.0.0.0"), 0)));
        assert_eq!(parse_cidr("10.42.3.0/33"), None);
        assert_eq!(parse_cidr("10.42.3.0"), None);
        assert_eq!(parse_cidr("fd00::/64"), None);
    }

    #[test]
    fn pod_ips_are_sequential_after_the_gateway() {
        let mut pool = PodIpPool::new("10.42.1.0/24").expect("pool");
        assert_eq!(pool.allocate(), Some(ip("10.42.1.2")));
        assert_eq!(pool.allocate(), Some(ip("10.42.1.3")));
        assert_eq!(pool.in_use(), 2);
    }

    #[test]
    fn pod_ips_wrap_and_reuse_freed_addresses() {
        let mut pool = PodIpPool::new("10.42.1.0/29").expect("pool");
        // .2 to .6: five addresses, .7 is broadcast.
        let all: Vec<_> = (0..5).filter_map(|_| pool.allocate()).collect();
        assert_eq!(all.last(), Some(&ip("10.42.1.6")));
        assert_eq!(pool.allocate(), None);
        pool.release(ip("10.42.1.4"));
        assert_eq!(pool.allocate(), Some(ip("10.42.1.4")));
        pool.release(ip("10.42.1.3"));
        pool.release(ip("10.42.1.5"));
        assert_eq!(
            pool.allocate(),
            Some(ip("10.42.1.5")),
            "after the last handed out"
        );
        assert_eq!(pool.allocate(), Some(ip("10.42.1.3")));
    }

    #[test]
    fn slash24_holds_253_pods() {
        let mut pool = PodIpPool::new("10.42.7.0/24").expect("pool");
        let n = std::iter::from_fn(|| pool.allocate()).count();
        assert_eq!(n, 253);
    }

    #[test]
    fn tiny_cidrs_have_no_pod_addresses() {
        for c in ["10.0.0.0/32", "10.0.0.0/31"] {
            let mut pool = PodIpPool::new(c).expect("pool");
            assert_eq!(pool.allocate(), None, "{c}");
        }
        let mut pool = PodIpPool::new("10.0.0.0/30").expect("pool");
        assert_eq!(pool.allocate(), Some(ip("10.0.0.2")));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn occupy_marks_adopted_addresses() {
        let mut pool = PodIpPool::new("10.42.1.0/24").expect("pool");
        assert!(pool.occupy(ip("10.42.1.2")));
        assert!(!pool.occupy(ip("10.42.2.2")));
        assert!(
            !pool.occupy(ip("10.42.1.1")),
            "the gateway is not a pod address"
        );
        assert_eq!(pool.allocate(), Some(ip("10.42.1.3")));
    }
}
