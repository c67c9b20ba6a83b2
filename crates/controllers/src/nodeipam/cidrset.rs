//! The pure allocator, as upstream's `cidrset`: a cluster CIDR cut into equal node subnets, a
//! bitmap of the used ones and a rotating cursor, so a released subnet is handed out again only
//! after the others (a deleted node's address range is not reused at once).

use std::fmt;
use std::net::Ipv4Addr;

use super::Error;

/// At most 2^16 node subnets per cluster CIDR, as upstream (`clusterSubNetMaxDiff`).
pub const MAX_SUBNET_BITS: u8 = 16;

/// An IPv4 CIDR: a network address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; the address is masked to its network.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = s.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= 32).then(|| Cidr::new(addr, prefix))
    }

    /// The CIDR of `addr/prefix` with the host bits cleared (`prefix` capped at 32).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Cidr {
        let prefix = prefix.min(32);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    fn last(&self) -> u32 {
        self.first() | !mask(self.prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// The node subnets of one cluster CIDR and which of them are in use.
#[derive(Clone, Debug)]
pub struct CidrSet {
    cluster: Cidr,
    node_prefix: u8,
    used: Vec<u64>,
    count: usize,
    allocated: usize,
    next: usize,
}

impl CidrSet {
    /// A set of `/node_prefix` subnets of `cluster`.
    pub fn new(cluster: Cidr, node_prefix: u8) -> Result<CidrSet, Error> {
        if node_prefix > 32 || node_prefix < cluster.prefix {
            return Err(Error::InvalidMask {
                cluster: cluster.to_string(),
                node_prefix,
            });
        }
        if node_prefix - cluster.prefix > MAX_SUBNET_BITS {
            return Err(Error::SubnetTooBig);
        }
        let count = 1usize << (node_prefix - cluster.prefix);
        Ok(CidrSet {
            cluster,
            node_prefix,
            used: vec![0; count.div_ceil(64)],
            count,
            allocated: 0,
            next: 0,
        })
    }

    /// How many node subnets the cluster CIDR holds.
    pub fn capacity(&self) -> usize {
        self.count
    }

    /// How many are in use.
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// The next free subnet after the cursor, wrapping around; `Full` when none is left.
    pub fn allocate(&mut self) -> Result<Cidr, Error> {
        if self.allocated >= self.count {
            return Err(Error::Full);
        }
        for step in 0..self.count {
            let i = (self.next + step) % self.count;
            if !self.is_used(i) {
                self.set(i, true);
                self.next = (i + 1) % self.count;
                return Ok(self.subnet(i));
            }
        }
        Err(Error::Full)
    }

    /// Marks every node subnet that `cidr` overlaps as used.
    pub fn occupy(&mut self, cidr: Cidr) -> Result<(), Error> {
        let (begin, end) = self.indices(cidr)?;
        for i in begin..=end {
            self.set(i, true);
        }
        Ok(())
    }

    /// Marks every node subnet that `cidr` overlaps as free.
    pub fn release(&mut self, cidr: Cidr) -> Result<(), Error> {
        let (begin, end) = self.indices(cidr)?;
        for i in begin..=end {
            self.set(i, false);
        }
        Ok(())
    }

    /// Whether the node subnet that holds `cidr`'s address is used.
    pub fn is_occupied(&self, cidr: Cidr) -> bool {
        self.indices(cidr)
            .map(|(begin, _)| self.is_used(begin))
            .unwrap_or(false)
    }

    fn subnet(&self, i: usize) -> Cidr {
        let step = 1u64 << (32 - u32::from(self.node_prefix));
        let addr = u64::from(self.cluster.first()) + step * i as u64;
        Cidr::new(Ipv4Addr::from(addr as u32), self.node_prefix)
    }

    /// The first and last node subnet index `cidr` overlaps, clipped to the cluster CIDR.
    fn indices(&self, cidr: Cidr) -> Result<(usize, usize), Error> {
        let (first, last) = (cidr.first(), cidr.last());
        if last < self.cluster.first() || first > self.cluster.last() {
            return Err(Error::OutOfRange {
                cidr: cidr.to_string(),
                cluster: self.cluster.to_string(),
            });
        }
        let shift = 32 - u32::from(self.node_prefix);
        let index = |a: u32| (u64::from(a - self.cluster.first()) >> shift) as usize;
        let begin = index(first.max(self.cluster.first()));
        let end = index(last.min(self.cluster.last()));
        Ok((begin, end.min(self.count - 1)))
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        let was = self.is_used(i);
        if used && !was {
            self.used[i / 64] |= 1 << (i % 64);
            self.allocated += 1;
        } else if !used && was {
            self.used[i / 64] &= !(1 << (i % 64));
            self.allocated -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).expect("valid CIDR")
    }

    fn set(cluster: &str, node: u8) -> CidrSet {
        CidrSet::new(cidr(cluster), node).expect("valid set")
    }

    #[test]
    fn parses_and_masks() {
        assert_eq!(cidr("10.42.3.7/24").to_string(), "10.42.3.0/24");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in ["10.42.0.0", "10.42.0.0/33", "x/24", "10.42.0.0/a", "::1/64"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn allocates_in_order() {
        let mut s = set("10.42.0.0/16", 24);
        assert_eq!(s.capacity(), 256);
        assert_eq!(
            s.allocate().map(|c| c.to_string()),
            Ok("10.42.0.0/24".into())
        );
        assert_eq!(
            s.allocate().map(|c| c.to_string()),
            Ok("10.42.1.0/24".into())
        );
        assert_eq!(s.allocated(), 2);
    }

    #[test]
    fn slash16_holds_256_nodes_then_is_full() {
        let mut s = set("10.42.0.0/16", 24);
        let all: Vec<Cidr> = (0..256).map(|_| s.allocate().expect("free")).collect();
        assert_eq!(all[255].to_string(), "10.42.255.0/24");
        assert_eq!(s.allocate(), Err(Error::Full));
    }

    #[test]
    fn slash12_holds_4096_nodes() {
        let mut s = set("10.32.0.0/12", 24);
        assert_eq!(s.capacity(), 4096);
        let mut last = None;
        for _ in 0..4096 {
            last = Some(s.allocate().expect("free"));
        }
        assert_eq!(last.map(|c| c.to_string()), Some("10.47.255.0/24".into()));
        assert_eq!(s.allocate(), Err(Error::Full));
    }

    #[test]
    fn released_subnet_is_reused_after_the_others() {
        let mut s = set("10.42.0.0/22", 24);
        let a = s.allocate().expect("free");
        let _b = s.allocate().expect("free");
        s.release(a).expect("in range");
        assert_eq!(
            s.allocate().map(|c| c.to_string()),
            Ok("10.42.2.0/24".into())
        );
        assert_eq!(
            s.allocate().map(|c| c.to_string()),
            Ok("10.42.3.0/24".into())
        );
        assert_eq!(s.allocate(), Ok(a), "wraps around to the released one");
        assert_eq!(s.allocate(), Err(Error::Full));
        s.release(a).expect("in range");
        assert_eq!(s.allocate(), Ok(a));
    }

    #[test]
    fn occupied_subnets_are_skipped() {
        let mut s = set("10.42.0.0/16", 24);
        s.occupy(cidr("10.42.0.0/24")).expect("in range");
        s.occupy(cidr("10.42.2.0/23")).expect("in range");
        assert!(s.is_occupied(cidr("10.42.3.0/24")));
        assert_eq!(s.allocated(), 3);
        assert_eq!(
            s.allocate().map(|c| c.to_string()),
            Ok("10.42.1.0/24".into())
        );
        assert_eq!(
            s.allocate().map(|c| c.to_string()),
            Ok("10.42.4.0/24".into())
        );
    }

    #[test]
    fn occupy_is_idempotent_and_clipped() {
        let mut s = set("10.42.0.0/16", 24);
        s.occupy(cidr("10.42.7.0/24")).expect("in range");
        s.occupy(cidr("10.42.7.0/24")).expect("in range");
        assert_eq!(s.allocated(), 1);
        s.occupy(cidr("10.0.0.0/8")).expect("overlaps");
        assert_eq!(s.allocated(), 256);
        s.release(cidr("10.42.7.0/24")).expect("in range");
        assert_eq!(s.allocated(), 255);
    }

    #[test]
    fn out_of_range_is_an_error() {
        let mut s = set("10.42.0.0/16", 24);
        assert!(matches!(
            s.occupy(cidr("10.43.0.0/24")),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            s.release(cidr("192.168.0.0/24")),
            Err(Error::OutOfRange { .. })
        ));
        assert_eq!(s.allocated(), 0);
    }

    #[test]
    fn rejects_bad_masks() {
        let c = cidr("10.42.0.0/16");
        assert!(matches!(CidrSet::new(c, 8), Err(Error::InvalidMask { .. })));
        assert!(matches!(
            CidrSet::new(c, 33),
            Err(Error::InvalidMask { .. })
        ));
        assert_eq!(
            CidrSet::new(cidr("10.0.0.0/8"), 25).err(),
            Some(Error::SubnetTooBig)
        );
        assert!(CidrSet::new(cidr("10.0.0.0/8"), 24).is_ok());
    }

    #[test]
    fn whole_cluster_as_one_node_subnet() {
        let mut s = set("10.42.0.0/24", 24);
        assert_eq!(s.capacity(), 1);
        assert_eq!(
            s.allocate().map(|c| c.to_string()),
            Ok("10.42.0.0/24".into())
        );
        assert_eq!(s.allocate(), Err(Error::Full));
    }
}
