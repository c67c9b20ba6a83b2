//! IPv4 address ranges: parsing CIDRs, subtracting `ipBlock.except`, merging overlaps, and
//! writing the result as nftables interval-set elements. Pure.

use std::fmt;
use std::net::Ipv4Addr;

/// An inclusive range of IPv4 addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Range {
    pub start: u32,
    pub end: u32,
}

impl Range {
    /// One address.
    pub fn ip(ip: Ipv4Addr) -> Range {
        let v = u32::from(ip);
        Range { start: v, end: v }
    }

    /// Parses `a.b.c.d/len` (host bits are ignored) or a bare address; None if malformed.
    pub fn parse_cidr(text: &str) -> Option<Range> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok()?),
            None => (text, 32),
        };
        if len > 32 {
            return None;
        }
        let addr = u32::from(addr.parse::<Ipv4Addr>().ok()?);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Some(Range {
            start: addr & mask,
            end: (addr & mask) | !mask,
        })
    }
}

impl fmt::Display for Range {
    /// `a.b.c.d` for one address, `a.b.c.d/len` for an aligned block, else `a-b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end) = (Ipv4Addr::from(self.start), Ipv4Addr::from(self.end));
        if self.start == self.end {
            return write!(f, "{start}");
        }
        let size = u64::from(self.end - self.start) + 1;
        if size.is_power_of_two() && u64::from(self.start) % size == 0 {
            let len = 32 - size.trailing_zeros();
            return write!(f, "{start}/{len}");
        }
        write!(f, "{start}-{end}")
    }
}

/// `ranges` sorted, with overlapping ranges merged. Adjacent ranges stay apart, so that a set
/// of pod addresses stays a set of single addresses and changes element by element.
pub fn normalize(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Whether `a` and `b` share an address.
pub fn overlaps(a: Range, b: Range) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// `block` without every range in `except`, as disjoint sorted ranges.
pub fn subtract(block: Range, except: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    let mut next = u64::from(block.start);
    let end = u64::from(block.end);
    for hole in normalize(except.to_vec()) {
        let (hs, he) = (u64::from(hole.start), u64::from(hole.end));
        if he < next || hs > end {
            continue;
        }
        if hs > next {
            out.push(span(next, hs - 1));
        }
        next = he + 1;
    }
    if next <= end {
        out.push(span(next, end));
    }
    out
}

fn span(start: u64, end: u64) -> Range {
    // Both bounds come from u32 values clamped to the block, so they fit.
    Range {
        start: u32::try_from(start).unwrap_or(u32::MAX),
        end: u32::try_from(end).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> Range {
        Range::parse_cidr(text).expect("cidr")
    }

    #[test]
    fn parses_cidrs_and_ignores_host_bits() {
        assert_eq!(r("10.0.0.7/24").to_string(), "10.0.0.0/24");
        assert_eq!(r("10.0.0.7").to_string(), "10.0.0.7");
        assert_eq!(r("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!(Range::parse_cidr("10.0.0.0/33").is_none());
        assert!(Range::parse_cidr("fd00::/8").is_none());
    }

    #[test]
    fn except_cuts_holes() {
        let got = subtract(r("10.0.0.0/24"), &[r("10.0.0.128/25"), r("10.0.0.0/30")]);
        let text: Vec<String> = got.iter().map(|x| x.to_string()).collect();
        assert_eq!(text, ["10.0.0.4-10.0.0.127"]);
        let all = subtract(r("0.0.0.0/0"), &[r("10.0.0.0/8")]);
        let text: Vec<String> = all.iter().map(|x| x.to_string()).collect();
        assert_eq!(text, ["0.0.0.0-9.255.255.255", "11.0.0.0-255.255.255.255"]);
    }

    #[test]
    fn normalize_merges_overlaps_but_not_neighbours() {
        let got = normalize(vec![r("10.0.0.1"), r("10.0.0.0/31"), r("10.0.0.2/31")]);
        assert_eq!(got, vec![r("10.0.0.0/31"), r("10.0.0.2/31")]);
        let got = normalize(vec![r("10.0.0.1"), r("10.0.0.0/30")]);
        assert_eq!(got, vec![r("10.0.0.0/30")]);
    }

    /// Whether two ranges share an address.
    #[test]
    fn overlap() {
        assert!(overlaps(r("10.0.0.0/30"), r("10.0.0.3")));
        assert!(!overlaps(r("10.0.0.0/30"), r("10.0.0.4")));
    }
}
