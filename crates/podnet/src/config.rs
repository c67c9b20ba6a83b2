//! The pod network's typed configuration: the node, the cluster CIDR, the backend, and the
//! command lines used to reach the node's network stack (the host's, or a network namespace's).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// The VXLAN header overhead flannel subtracts from the underlay MTU.
pub const VXLAN_OVERHEAD: u32 = 50;

/// An IPv4 network such as `10.42.0.0/16` (the address is kept with its host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// The network `addr/prefix`, host bits cleared; `None` when `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        (prefix <= 32).then(|| Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// The network address (`10.42.1.0` of `10.42.1.0/24`).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether all of `other` is inside this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl FromStr for Cidr {
    type Err = Error;

    /// Parses `a.b.c.d/len`, or a bare address as a `/32` (as `ip -j route` prints host routes).
    fn from_str(s: &str) -> Result<Cidr, Error> {
        let bad = || Error::InvalidConfig(format!("not an IPv4 CIDR: {s:?}"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| bad())?),
            None => (s, 32),
        };
        let addr = addr.parse::<Ipv4Addr>().map_err(|_| bad())?;
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// How packets reach other nodes' pods (k3s's `--flannel-backend`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A route per peer podCIDR via the peer's node IP: the nodes must share an L2 segment.
    HostGw,
    /// A VXLAN device (flannel's `flannel.1`) tunnelling to the peers' node IPs; works across
    /// L3 networks, MTU lowered by [`VXLAN_OVERHEAD`].
    Vxlan {
        /// The VXLAN network identifier (flannel: 1).
        vni: u32,
        /// The UDP port (flannel: 8472, the Linux kernel's historical default).
        port: u16,
        /// The device name (flannel: `flannel.1`).
        device: String,
    },
}

impl Backend {
    /// The VXLAN backend with flannel's defaults: VNI 1, port 8472, device `k8rs.1`.
    pub fn vxlan() -> Backend {
        Backend::Vxlan {
            vni: 1,
            port: 8472,
            device: "k8rs.1".to_string(),
        }
    }

    /// The VXLAN device name, if this backend has one.
    pub fn device(&self) -> Option<&str> {
        match self {
            Backend::HostGw => None,
            Backend::Vxlan { device, .. } => Some(device),
        }
    }
}

impl FromStr for Backend {
    type Err = Error;

    /// `vxlan` or `host-gw`, as k3s's `--flannel-backend` spells them.
    fn from_str(s: &str) -> Result<Backend, Error> {
        match s {
            "vxlan" => Ok(Backend::vxlan()),
            "host-gw" => Ok(Backend::HostGw),
            other => Err(Error::InvalidConfig(format!(
                "unknown pod network backend {other:?} (want vxlan or host-gw)"
            ))),
        }
    }
}

/// The argv prefixes of the tools the pod network runs. On the host these are the plain
/// commands; for a node that lives in a network namespace (tests) they enter it first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commands {
    /// `ip` (iproute2), e.g. `["ip"]` or `["ip", "-n", "NS"]`.
    pub ip: Vec<String>,
    /// `bridge` (iproute2; FDB entries), e.g. `["bridge"]`.
    pub bridge: Vec<String>,
    /// `nft`, e.g. `["nft"]`.
    pub nft: Vec<String>,
    /// `sysctl`; `None` writes `/proc/sys` directly (the host).
    pub sysctl: Option<Vec<String>>,
}

impl Commands {
    /// The host's own network stack.
    pub fn host() -> Commands {
        Commands {
            ip: vec!["ip".into()],
            bridge: vec!["bridge".into()],
            nft: vec!["nft".into()],
            sysctl: None,
        }
    }

    /// The network namespace `ns` (as `ip netns` names it).
    pub fn netns(ns: &str) -> Commands {
        let exec = |tool: &str| -> Vec<String> {
            ["ip", "netns", "exec", ns, tool]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        Commands {
            ip: vec!["ip".into(), "-n".into(), ns.into()],
            bridge: exec("bridge"),
            nft: exec("nft"),
            sysctl: Some(exec("sysctl")),
        }
    }
}

/// Everything the pod network of one node needs.
#[derive(Clone, Debug)]
pub struct PodNetConfig {
    /// This node's name (its own Node object; every other Node is a peer).
    pub node_name: String,
    /// This node's address other nodes reach it by (the VXLAN local address, host-gw next hop).
    pub node_ip: Ipv4Addr,
    /// The cluster's pod CIDR (k3s: `10.42.0.0/16`); traffic leaving it is masqueraded.
    pub cluster_cidr: Cidr,
    /// How peers are reached.
    pub backend: Backend,
    /// How to run `ip`, `bridge`, `nft`, `sysctl`.
    pub commands: Commands,
    /// The VXLAN device's MTU; `None` is the underlay's MTU minus [`VXLAN_OVERHEAD`].
    pub mtu: Option<u32>,
    /// How often the whole state is re-read and repaired (drift).
    pub resync_period: Duration,
}

impl PodNetConfig {
    /// k3s's defaults on the host: VXLAN, resync every 30 s.
    pub fn new(node_name: impl Into<String>, node_ip: Ipv4Addr, cluster_cidr: Cidr) -> Self {
        PodNetConfig {
            node_name: node_name.into(),
            node_ip,
            cluster_cidr,
            backend: Backend::vxlan(),
            commands: Commands::host(),
            mtu: None,
            resync_period: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_contain_and_print() {
        let c: Cidr = "10.42.7.9/16".parse().expect("cidr");
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert!(c.contains(Ipv4Addr::new(10, 42, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 43, 0, 1)));
        let sub: Cidr = "10.42.1.0/24".parse().expect("cidr");
        assert!(c.covers(&sub));
        assert!(!sub.covers(&c));
        assert_eq!("10.1.2.3".parse::<Cidr>().expect("host").prefix(), 32);
        assert!("10.1.2.3/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().expect("all").to_string(),
            "0.0.0.0/0"
        );
    }

    #[test]
    fn backends_parse_as_k3s_flags() {
        assert_eq!(
            "host-gw".parse::<Backend>().expect("hostgw"),
            Backend::HostGw
        );
        assert_eq!(
            "vxlan".parse::<Backend>().expect("vxlan").device(),
            Some("k8rs.1")
        );
        assert!("wireguard".parse::<Backend>().is_err());
    }
}
