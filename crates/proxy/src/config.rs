//! The proxy's configuration and the IPv4 CIDR type it uses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// How the proxy is set up on one node (upstream's KubeProxyConfiguration, nftables mode, IPv4).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This node's name: endpoints on it are local, its Node object is watched.
    pub node_name: String,
    /// The node's addresses; the first is its primary address (NodePort default, firewall).
    pub node_ips: Vec<Ipv4Addr>,
    /// The pods' range: traffic from outside it to a ClusterIP is masqueraded. `None`: no
    /// masquerade for off-cluster sources (upstream without a local-traffic detector).
    pub cluster_cidr: Option<Cidr>,
    /// The Service range: an unallocated address inside it is dropped.
    pub service_cidr: Option<Cidr>,
    /// CIDRs selecting the node addresses that accept NodePorts (`--nodeport-addresses`);
    /// empty: the node's primary address. Loopback addresses never do.
    pub nodeport_addresses: Vec<Cidr>,
    /// The least time between two syncs (upstream's minSyncPeriod, default 1 s).
    pub min_sync_period: Duration,
    /// The time between full resyncs that repair drift (upstream's syncPeriod, default 1 h).
    pub sync_period: Duration,
    /// Where `/healthz` and `/livez` are served (default 0.0.0.0:10256); `None`: not served.
    pub healthz_bind_address: Option<SocketAddr>,
    /// The address per-service healthCheckNodePort servers bind to (default 0.0.0.0).
    pub health_check_bind_ip: IpAddr,
    /// The `nft` command, e.g. `["nft"]` or `["ip", "netns", "exec", "NS", "nft"]`. The words
    /// before the last are also put in front of `conntrack` and `ip`.
    pub nft_command: Vec<String>,
}

impl ProxyConfig {
    /// A config with upstream's defaults for `node_name` at `node_ip`.
    pub fn new(node_name: impl Into<String>, node_ip: Ipv4Addr) -> ProxyConfig {
        ProxyConfig {
            node_name: node_name.into(),
            node_ips: vec![node_ip],
            cluster_cidr: Some(Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16)),
            service_cidr: Some(Cidr::new(Ipv4Addr::new(10, 43, 0, 0), 16)),
            nodeport_addresses: Vec::new(),
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(3600),
            healthz_bind_address: Some(SocketAddr::from(([0, 0, 0, 0], 10256))),
            health_check_bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            nft_command: vec!["nft".into()],
        }
    }

    /// The words put in front of helper tools (`conntrack`, `ip`): `nft_command` minus its last.
    pub fn exec_prefix(&self) -> &[String] {
        match self.nft_command.split_last() {
            Some((_, prefix)) => prefix,
            None => &[],
        }
    }

    /// The addresses NodePorts are served on, from `nodeport_addresses` over `local_ips`
    /// (the node's addresses); never loopback.
    pub fn nodeport_ips(&self, local_ips: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = if self.nodeport_addresses.is_empty() {
            self.node_ips.iter().take(1).copied().collect()
        } else {
            local_ips
                .iter()
                .chain(self.node_ips.iter())
                .copied()
                .filter(|ip| self.nodeport_addresses.iter().any(|c| c.contains(*ip)))
                .collect()
        };
        ips.retain(|ip| !ip.is_loopback() && !ip.is_unspecified());
        ips.sort();
        ips.dedup();
        ips
    }
}

/// An IPv4 network, `addr/len`, with the host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Cidr {
    /// The network of `addr` with prefix length `len` (at most 32).
    pub fn new(addr: Ipv4Addr, len: u8) -> Cidr {
        let len = len.min(32);
        let mask = mask(len);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.addr)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid IPv4 CIDR {0:?}")]
pub struct CidrParseError(pub String);

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Cidr, CidrParseError> {
        let err = || CidrParseError(s.to_string());
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, len.parse::<u8>().map_err(|_| err())?),
            None => (s, 32),
        };
        if len > 32 {
            return Err(err());
        }
        let addr = addr.parse::<Ipv4Addr>().map_err(|_| err())?;
        Ok(Cidr::new(addr, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_contains() {
        let c: Cidr = "10.43.1.7/16".parse().expect("cidr");
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert!(c.contains(Ipv4Addr::new(10, 43, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!("1.2.3.4".parse::<Cidr>().expect("host").prefix_len(), 32);
    }

    #[test]
    fn nodeport_ips_default_to_the_primary_address_and_never_loopback() {
        let mut config = ProxyConfig::new("n1", Ipv4Addr::new(10, 42, 9, 1));
        config.node_ips.push(Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(config.nodeport_ips(&[]), vec![Ipv4Addr::new(10, 42, 9, 1)]);
        config.nodeport_addresses = vec!["0.0.0.0/0".parse().expect("cidr")];
        let local = [Ipv4Addr::LOCALHOST, Ipv4Addr::new(172, 16, 0, 1)];
        assert_eq!(
            config.nodeport_ips(&local),
            vec![
                Ipv4Addr::new(10, 42, 9, 1),
                Ipv4Addr::new(172, 16, 0, 1),
                Ipv4Addr::new(192, 168, 1, 2)
            ]
        );
    }
}
