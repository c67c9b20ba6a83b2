//! Parsing the kernel state from `ip -j` / `bridge -j` JSON output. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::config::Cidr;
use crate::plan::{Device, Route, Underlay, valid_mac};

/// Why an output could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<Vec<T>, ParseError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| ParseError(e.to_string()))
}

#[derive(Deserialize)]
struct RouteJson {
    dst: String,
    gateway: Option<String>,
    dev: Option<String>,
}

/// `ip -j route show proto 120`: the routes with a gateway (others are not this crate's).
pub fn routes(text: &str) -> Result<Vec<Route>, ParseError> {
    Ok(parse::<RouteJson>(text)?
        .into_iter()
        .filter_map(|r| {
            Some(Route {
                dst: r.dst.parse().ok()?,
                via: r.gateway?.parse().ok()?,
                dev: r.dev,
            })
        })
        .collect())
}

#[derive(Deserialize)]
struct NeighJson {
    dst: String,
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

/// `ip -j neigh show dev D`: the permanent entries, address to MAC.
pub fn neighbours(text: &str) -> Result<BTreeMap<Ipv4Addr, String>, ParseError> {
    Ok(parse::<NeighJson>(text)?
        .into_iter()
        .filter(|n| n.state.iter().any(|s| s == "PERMANENT"))
        .filter_map(|n| Some((n.dst.parse().ok()?, n.lladdr?.to_ascii_lowercase())))
        .collect())
}

#[derive(Deserialize)]
struct FdbJson {
    mac: String,
    dst: Option<String>,
}

/// `bridge -j fdb show dev D`: the entries with a remote, (MAC, remote).
pub fn fdb(text: &str) -> Result<BTreeSet<(String, Ipv4Addr)>, ParseError> {
    Ok(parse::<FdbJson>(text)?
        .into_iter()
        .filter(|f| valid_mac(&f.mac) && f.mac != "00:00:00:00:00:00")
        .filter_map(|f| Some((f.mac.to_ascii_lowercase(), f.dst?.parse().ok()?)))
        .collect())
}

#[derive(Deserialize)]
struct LinkJson {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    address: String,
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<AddrJson>,
}

#[derive(Deserialize)]
struct LinkInfo {
    info_data: Option<VxlanData>,
}

#[derive(Deserialize)]
struct VxlanData {
    id: Option<u32>,
    local: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
struct AddrJson {
    family: String,
    local: String,
    prefixlen: u8,
}

impl LinkJson {
    fn ipv4(&self) -> impl Iterator<Item = (Ipv4Addr, u8)> + '_ {
        self.addr_info
            .iter()
            .filter(|a| a.family == "inet")
            .filter_map(|a| Some((a.local.parse().ok()?, a.prefixlen)))
    }
}

/// The links of `ip -d -j addr show`, for [`device`] and [`underlay`].
pub struct Links(Vec<LinkJson>);

/// Parses `ip -d -j addr show`.
pub fn links(text: &str) -> Result<Links, ParseError> {
    Ok(Links(parse(text)?))
}

/// The device `name`, if present.
pub fn device(links: &Links, name: &str) -> Option<Device> {
    let link = links.0.iter().find(|l| l.ifname == name)?;
    let data = link.linkinfo.as_ref().and_then(|i| i.info_data.as_ref());
    Some(Device {
        vni: data.and_then(|d| d.id),
        local: data.and_then(|d| d.local.as_deref()?.parse().ok()),
        port: data.and_then(|d| d.port),
        mtu: link.mtu,
        mac: link.address.to_ascii_lowercase(),
        up: link.flags.iter().any(|f| f == "UP"),
        addresses: link.ipv4().filter_map(|(a, p)| Cidr::new(a, p)).collect(),
    })
}

/// The link carrying `node_ip` (the VXLAN underlay).
pub fn underlay(links: &Links, node_ip: Ipv4Addr) -> Option<Underlay> {
    let link = links
        .0
        .iter()
        .find(|l| l.ipv4().any(|(a, _)| a == node_ip))?;
    Some(Underlay {
        name: link.ifname.clone(),
        mtu: link.mtu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_neighbours_and_fdb_parse_from_iproute2_json() {
        let r = routes(r#"[{"dst":"10.42.2.0/24","gateway":"10.42.2.0","dev":"k8rs.1","flags":["onlink"]},{"dst":"10.42.3.0/24","gateway":"192.168.77.3","dev":"eth0","flags":[]},{"dst":"10.42.9.0/24","dev":"cni0","flags":[]}]"#).expect("routes");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].dst.to_string(), "10.42.2.0/24");
        assert_eq!(r[0].dev.as_deref(), Some("k8rs.1"));
        assert_eq!(r[1].via, Ipv4Addr::new(192, 168, 77, 3));
        assert!(routes("").expect("empty").is_empty());
        assert!(routes("not json").is_err());

        let n = neighbours(r#"[{"dst":"10.42.2.0","lladdr":"0E:6B:C0:A8:4D:02","state":["PERMANENT"]},{"dst":"10.42.5.0","lladdr":"aa:aa:aa:aa:aa:aa","state":["STALE"]}]"#).expect("neigh");
        assert_eq!(n.len(), 1);
        assert_eq!(n[&Ipv4Addr::new(10, 42, 2, 0)], "0e:6b:c0:a8:4d:02");

        let f = fdb(r#"[{"mac":"0e:6b:c0:a8:4d:02","dst":"192.168.77.2","flags":["self"],"state":"permanent"},{"mac":"00:00:00:00:00:00","dst":"239.1.1.1","flags":["self"]},{"mac":"0e:6b:c0:a8:4d:01","flags":["self"],"state":"permanent"}]"#).expect("fdb");
        assert_eq!(
            f.into_iter().collect::<Vec<_>>(),
            vec![(
                "0e:6b:c0:a8:4d:02".to_string(),
                Ipv4Addr::new(192, 168, 77, 2)
            )]
        );
    }

    #[test]
    fn the_vxlan_device_and_underlay_parse_from_ip_addr() {
        let text = r#"[{"ifname":"eth0","flags":["UP"],"mtu":1500,"address":"aa:bb:cc:dd:ee:ff","addr_info":[{"family":"inet","local":"192.168.77.1","prefixlen":24}]},
        {"ifname":"k8rs.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"address":"0e:6b:c0:a8:4d:01","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"192.168.77.1","link":"eth0","port":8472,"learning":false}},"addr_info":[{"family":"inet","local":"10.42.1.0","prefixlen":32},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let l = links(text).expect("links");
        let d = device(&l, "k8rs.1").expect("device");
        assert_eq!(d.vni, Some(1));
        assert_eq!(d.port, Some(8472));
        assert_eq!(d.local, Some(Ipv4Addr::new(192, 168, 77, 1)));
        assert_eq!(d.mtu, 1450);
        assert!(d.up);
        assert_eq!(d.addresses, vec!["10.42.1.0/32".parse().expect("cidr")]);
        assert!(device(&l, "flannel.1").is_none());
        let u = underlay(&l, Ipv4Addr::new(192, 168, 77, 1)).expect("underlay");
        assert_eq!((u.name.as_str(), u.mtu), ("eth0", 1500));
        assert!(underlay(&l, Ipv4Addr::new(1, 2, 3, 4)).is_none());
    }
}
