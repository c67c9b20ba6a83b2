//! Planned changes as command lines (`ip`, `bridge`), and the node's nft table as `nft -f`
//! text. Pure.

use crate::config::{Cidr, Commands};
use crate::plan::{Action, ROUTE_PROTO};

/// The node's own nftables table; nothing else is ever touched.
pub const TABLE: &str = "k8rs-podnet";

/// The `nft -f` text of the node's table: masquerade what leaves the cluster CIDR from it.
/// Traffic between pods (any node) keeps its addresses.
pub fn ruleset(cluster: &Cidr) -> String {
    format!(
        "table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {cluster} ip daddr != {cluster} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// Whether `listed` (`nft list table ip k8rs-podnet`) is exactly [`ruleset`] (ignoring
/// indentation and blank lines).
pub fn ruleset_matches(listed: &str, cluster: &Cidr) -> bool {
    let norm = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    norm(listed) == norm(&ruleset(cluster))
}

fn argv(prefix: &[String], rest: &[&str]) -> Vec<String> {
    prefix
        .iter()
        .cloned()
        .chain(rest.iter().map(|s| s.to_string()))
        .collect()
}

/// The command line carrying out `action`.
pub fn command(cmds: &Commands, action: &Action) -> Vec<String> {
    let ip = |rest: &[&str]| argv(&cmds.ip, rest);
    let bridge = |rest: &[&str]| argv(&cmds.bridge, rest);
    match action {
        Action::AddVxlan {
            device,
            vni,
            local,
            port,
            underlay,
            mac,
            mtu,
        } => ip(&[
            "link",
            "add",
            device,
            "address",
            mac,
            "mtu",
            &mtu.to_string(),
            "type",
            "vxlan",
            "id",
            &vni.to_string(),
            "local",
            &local.to_string(),
            "dev",
            underlay,
            "dstport",
            &port.to_string(),
            "nolearning",
        ]),
        Action::DeleteLink { device } => ip(&["link", "del", device]),
        Action::SetLink { device, mtu, mac } => ip(&[
            "link",
            "set",
            "dev",
            device,
            "mtu",
            &mtu.to_string(),
            "address",
            mac,
        ]),
        Action::LinkUp { device } => ip(&["link", "set", "dev", device, "up"]),
        Action::ReplaceAddress { device, addr } => {
            ip(&["addr", "replace", &addr.to_string(), "dev", device])
        }
        Action::DeleteAddress { device, addr } => {
            ip(&["addr", "del", &addr.to_string(), "dev", device])
        }
        Action::ReplaceRoute(r) => {
            let (dst, via) = (r.dst.to_string(), r.via.to_string());
            match &r.dev {
                None => ip(&["route", "replace", &dst, "via", &via, "proto", ROUTE_PROTO]),
                Some(dev) => ip(&[
                    "route",
                    "replace",
                    &dst,
                    "via",
                    &via,
                    "dev",
                    dev,
                    "onlink",
                    "proto",
                    ROUTE_PROTO,
                ]),
            }
        }
        Action::DeleteRoute(r) => ip(&["route", "del", &r.dst.to_string(), "proto", ROUTE_PROTO]),
        Action::ReplaceNeighbour {
            device,
            ip: addr,
            mac,
        } => ip(&[
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            mac,
            "dev",
            device,
            "nud",
            "permanent",
        ]),
        Action::DeleteNeighbour { device, ip: addr } => {
            ip(&["neigh", "del", &addr.to_string(), "dev", device])
        }
        Action::ReplaceFdb { device, mac, dst } => bridge(&[
            "fdb",
            "replace",
            mac,
            "dev",
            device,
            "dst",
            &dst.to_string(),
            "self",
            "permanent",
        ]),
        Action::DeleteFdb { device, mac, dst } => bridge(&[
            "fdb",
            "del",
            mac,
            "dev",
            device,
            "dst",
            &dst.to_string(),
            "self",
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Route;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn the_table_masquerades_only_what_leaves_the_cluster() {
        let text = ruleset(&cidr("10.42.0.0/16"));
        assert!(text.starts_with("table ip k8rs-podnet {"));
        assert!(text.contains("type nat hook postrouting priority srcnat; policy accept;"));
        assert!(text.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade"));
        assert_eq!(text.matches("masquerade").count(), 1);
        assert!(ruleset_matches(
            "table ip k8rs-podnet {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade\n\t}\n}\n",
            &cidr("10.42.0.0/16")
        ));
        assert!(!ruleset_matches(
            "table ip k8rs-podnet {\n}\n",
            &cidr("10.42.0.0/16")
        ));
    }

    #[test]
    fn actions_become_ip_and_bridge_commands_in_the_namespace() {
        let cmds = Commands::netns("ns1");
        let route = Route {
            dst: cidr("10.42.2.0/24"),
            via: "10.42.2.0".parse().expect("ip"),
            dev: Some("k8rs.1".into()),
        };
        assert_eq!(
            command(&cmds, &Action::ReplaceRoute(route)).join(" "),
            "ip -n ns1 route replace 10.42.2.0/24 via 10.42.2.0 dev k8rs.1 onlink proto 120"
        );
        let fdb = Action::ReplaceFdb {
            device: "k8rs.1".into(),
            mac: "0e:6b:c0:a8:4d:02".into(),
            dst: "192.168.77.2".parse().expect("ip"),
        };
        assert_eq!(
            command(&cmds, &fdb).join(" "),
            "ip netns exec ns1 bridge fdb replace 0e:6b:c0:a8:4d:02 dev k8rs.1 dst 192.168.77.2 self permanent"
        );
        let hostgw = Route {
            dst: cidr("10.42.2.0/24"),
            via: "192.168.77.2".parse().expect("ip"),
            dev: None,
        };
        assert_eq!(
            command(&Commands::host(), &Action::ReplaceRoute(hostgw)).join(" "),
            "ip route replace 10.42.2.0/24 via 192.168.77.2 proto 120"
        );
    }
}
