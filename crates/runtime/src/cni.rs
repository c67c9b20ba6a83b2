//! The pod network's CNI configuration: a bridge with host-local IPAM over the node's podCIDR
//! (pure rendering, and an atomic write). No `portmap`: hostPorts are programmed by the node's
//! service proxy in k8rs's own nftables table (`k8rs-proxy`), so no CNI plugin writes iptables
//! rules. The port mappings containerd may still pass are ignored (no plugin consumes them).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::Error;
use crate::containerd::{create_dir, write_if_changed};

/// The conflist's file name in the CNI conf dir.
pub const CONFLIST_NAME: &str = "10-k8rs.conflist";

/// The node's pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniNetwork {
    /// The CNI network name (`k8rs`).
    pub name: String,
    /// The Linux bridge pods attach to (`cni0`); agents sharing a network namespace need
    /// different ones.
    pub bridge: String,
    /// The node's `spec.podCIDR`, an IPv4 network such as `10.42.1.0/24`.
    pub pod_cidr: String,
    /// The pods' interface MTU.
    pub mtu: u32,
    /// Where host-local keeps its allocations (per agent, so two agents never share them).
    pub ipam_data_dir: PathBuf,
}

impl CniNetwork {
    /// The defaults for the agent whose data dir is `data_dir`.
    pub fn new(data_dir: &Path, pod_cidr: impl Into<String>) -> Self {
        Self {
            name: "k8rs".to_string(),
            bridge: "cni0".to_string(),
            pod_cidr: pod_cidr.into(),
            mtu: 1500,
            ipam_data_dir: data_dir.join("agent/cni/networks"),
        }
    }
}

/// The conflist (JSON) for `net`. `ipMasq` is off: traffic between nodes' pods keeps its
/// source address; only traffic leaving the cluster CIDR is masqueraded, by k8rs's own nft table.
pub fn render_conflist(net: &CniNetwork) -> Result<String, Error> {
    let (addr, prefix) = parse_cidr(&net.pod_cidr)?;
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": net.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "mtu": net.mtu,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": format!("{addr}/{prefix}") }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": net.ipam_data_dir.to_string_lossy(),
                },
            },
        ],
    });
    let mut text = serde_json::to_string_pretty(&conf).map_err(|e| Error::Command {
        program: "conflist rendering".into(),
        message: e.to_string(),
    })?;
    text.push('\n');
    Ok(text)
}

/// Writes `net`'s conflist into `conf_dir` atomically, only when it changed; true when written.
/// containerd's CRI notices the file and reports the network ready.
pub fn write_cni_config(conf_dir: &Path, net: &CniNetwork) -> Result<bool, Error> {
    let text = render_conflist(net)?;
    create_dir(conf_dir)?;
    create_dir(&net.ipam_data_dir)?;
    write_if_changed(&conf_dir.join(CONFLIST_NAME), text.as_bytes())
}

/// The bridge named by the conflist in `conf_dir`, if there is one.
pub fn read_bridge_name(conf_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(conf_dir.join(CONFLIST_NAME)).ok()?;
    let conf: serde_json::Value = serde_json::from_str(&text).ok()?;
    conf["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["type"] == "bridge")?["bridge"]
        .as_str()
        .map(str::to_string)
}

/// An IPv4 network address and prefix (at most /30, host bits zero).
fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8), Error> {
    let invalid = || Error::InvalidCidr(cidr.to_string());
    let (addr, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    if prefix > 30 {
        return Err(invalid());
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    if u32::from(addr) & !mask != 0 {
        return Err(invalid());
    }
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidr: &str) -> CniNetwork {
        CniNetwork::new(Path::new("/var/lib/k8rs"), cidr)
    }

    #[test]
    fn renders_bridge_host_local_and_no_portmap() {
        let text = render_conflist(&net("10.42.1.0/24")).expect("valid");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["name"], "k8rs");
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["mtu"], 1500);
        let ipam = &bridge["ipam"];
        assert_eq!(ipam["type"], "host-local");
        assert_eq!(ipam["ranges"][0][0]["subnet"], "10.42.1.0/24");
        assert_eq!(ipam["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(ipam["dataDir"], "/var/lib/k8rs/agent/cni/networks");
        // hostPorts are the proxy's: no plugin that writes iptables rules.
        let plugins = v["plugins"].as_array().expect("plugins");
        assert_eq!(plugins.len(), 1, "{plugins:?}");
    }

    #[test]
    fn rejects_bad_cidrs() {
        for bad in [
            "",
            "10.42.1.0",
            "10.42.1.1/24",
            "10.42.1.0/31",
            "::1/64",
            "10.42.0.0/x",
        ] {
            assert!(
                matches!(render_conflist(&net(bad)), Err(Error::InvalidCidr(_))),
                "{bad}"
            );
        }
        assert!(render_conflist(&net("0.0.0.0/0")).is_ok());
    }

    #[test]
    fn writes_atomically_and_only_on_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("net.d");
        let mut n = CniNetwork::new(dir.path(), "10.42.3.0/24");
        n.bridge = "k8rs-t0".into();
        assert!(write_cni_config(&conf_dir, &n).expect("write"));
        assert!(!write_cni_config(&conf_dir, &n).expect("write"));
        assert_eq!(read_bridge_name(&conf_dir).as_deref(), Some("k8rs-t0"));
        n.pod_cidr = "10.42.4.0/24".into();
        assert!(write_cni_config(&conf_dir, &n).expect("write"));
        let names: Vec<_> = std::fs::read_dir(&conf_dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![CONFLIST_NAME]);
        assert!(n.ipam_data_dir.is_dir());
    }
}
