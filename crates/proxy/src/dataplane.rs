//! The proxy's side effects on the node: `nft -f -` transactions, deleting its table,
//! reading the node's addresses and flushing conntrack entries, each through the configured
//! command prefix (e.g. `ip netns exec NS`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::Error;
use crate::nft::{Op, TABLE, transaction_text};
use crate::state::Existing;

/// Runs the node's `nft`, `conntrack` and `ip` commands.
#[derive(Clone, Debug)]
pub struct Dataplane {
    nft: Vec<String>,
    prefix: Vec<String>,
}

impl Dataplane {
    /// Uses `nft_command` (e.g. `["nft"]`); the words before its last prefix the other tools.
    pub fn new(nft_command: &[String]) -> Dataplane {
        let nft = if nft_command.is_empty() {
            vec!["nft".to_string()]
        } else {
            nft_command.to_vec()
        };
        let prefix = nft[..nft.len() - 1].to_vec();
        Dataplane { nft, prefix }
    }

    fn command(&self, words: &[String]) -> Command {
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]);
        cmd
    }

    fn nft(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(&self.nft);
        cmd.args(args);
        cmd
    }

    fn tool(&self, tool: &str) -> Command {
        let mut words = self.prefix.clone();
        words.push(tool.to_string());
        self.command(&words)
    }

    /// Runs `ops` as one atomic transaction (`nft -f -` text). Nothing changes if it fails.
    pub fn apply(&self, ops: &[Op]) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let input = transaction_text(ops);
        let mut child = self
            .nft(&["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::NftSpawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means nft exited early; its status and stderr say why.
            let _ = stdin.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(Error::NftSpawn)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(Error::NftFailed(truncate(&stderr, 2000)));
        }
        Ok(())
    }

    /// Deletes the proxy's table; a missing table is fine.
    pub fn delete_table(&self) -> Result<(), Error> {
        self.apply(&[Op::AddTable, Op::DeleteTable])
    }

    /// The chains and sets of the proxy's table (`nft -t -j list table`: no elements); empty
    /// when the table does not exist.
    pub fn existing(&self) -> Result<Existing, Error> {
        let out = self
            .nft(&["-t", "-j", "list", "table", "ip", TABLE])
            .output()
            .map_err(Error::NftSpawn)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No such file or directory") {
                return Ok(Existing::default());
            }
            return Err(Error::NftFailed(truncate(&stderr, 2000)));
        }
        Ok(parse_existing(&out.stdout))
    }

    /// The table as `nft list table` prints it (for tests and debugging).
    pub fn list_table(&self) -> Result<String, Error> {
        let out = self
            .nft(&["list", "table", "ip", TABLE])
            .output()
            .map_err(Error::NftSpawn)?;
        if !out.status.success() {
            return Err(Error::NftFailed(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The node's IPv4 addresses (`ip -4 -o addr show`); empty if `ip` fails.
    pub fn local_ips(&self) -> Vec<Ipv4Addr> {
        let Ok(out) = self.tool("ip").args(["-4", "-o", "addr", "show"]).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace().skip_while(|w| *w != "inet");
                let addr = words.nth(1)?;
                addr.split('/').next()?.parse().ok()
            })
            .collect()
    }

    /// Turns `route_localnet` on for the interface that routes to `pod_ip` (as the CNI portmap
    /// plugin does on the bridge), so that traffic from 127.0.0.1 may be DNATed to the pod.
    pub fn enable_route_localnet(&self, pod_ip: Ipv4Addr) {
        let Ok(out) = self
            .tool("ip")
            .args(["-4", "-o", "route", "get", &pod_ip.to_string()])
            .output()
        else {
            return;
        };
        let Some(dev) = route_dev(&String::from_utf8_lossy(&out.stdout)) else {
            tracing::debug!(%pod_ip, "no route to the pod; route_localnet not set");
            return;
        };
        // The slash form keeps a dot in the name (a VLAN such as `eth0.100`) literal.
        let setting = format!("net/ipv4/conf/{dev}/route_localnet=1");
        let result = self
            .tool("sysctl")
            .args(["-qw", &setting])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !result.is_ok_and(|s| s.success()) {
            tracing::warn!(%dev, "enabling route_localnet failed; 127.0.0.1:hostPort will not work");
        }
    }

    /// Deletes UDP conntrack entries matching `filter` (arguments after `conntrack -D -p udp`).
    /// Finding none is not an error.
    pub fn conntrack_delete(&self, filter: &[String]) {
        let result = self
            .tool("conntrack")
            .args(["-D", "-p", "udp"])
            .args(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(err) = result {
            tracing::debug!(%err, ?filter, "conntrack did not run");
        }
    }
}

/// The device of `ip -o route get` output (`10.42.0.7 dev cni0 src 10.42.0.1 ...`); none for
/// a name that is not a plain interface name or a loopback route.
fn route_dev(text: &str) -> Option<String> {
    let mut words = text.split_whitespace().skip_while(|w| *w != "dev");
    let dev = words.nth(1)?;
    let plain = dev
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    (plain && dev != "lo" && !dev.is_empty() && dev.len() < 16).then(|| dev.to_string())
}

/// The chain and set names in `nft -j list table` output.
fn parse_existing(json: &[u8]) -> Existing {
    let mut existing = Existing::default();
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(json) else {
        return existing;
    };
    let objects = doc.get("nftables").and_then(|v| v.as_array());
    for object in objects.into_iter().flatten() {
        let name = |kind: &str| object.get(kind)?.get("name")?.as_str().map(String::from);
        if let Some(chain) = name("chain") {
            existing.chains.insert(chain);
        } else if let Some(set) = name("set") {
            existing.sets.insert(set, false);
        } else if let Some(map) = name("map") {
            existing.sets.insert(map, true);
        }
    }
    existing
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_dev_is_the_word_after_dev() {
        let line = "10.42.0.7 dev cni0 src 10.42.0.1 uid 0 \\    cache ";
        assert_eq!(route_dev(line).as_deref(), Some("cni0"));
        assert_eq!(route_dev("local 10.42.255.1 dev lo table local"), None);
        assert_eq!(route_dev("RTNETLINK answers: Network is unreachable"), None);
    }

    #[test]
    fn lists_chains_sets_and_maps() {
        let json = br#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "ip", "name": "k8rs-proxy", "handle": 1}},
            {"chain": {"family": "ip", "table": "k8rs-proxy", "name": "services"}},
            {"set": {"family": "ip", "table": "k8rs-proxy", "name": "cluster-ips"}},
            {"map": {"family": "ip", "table": "k8rs-proxy", "name": "service-ips"}}]}"#;
        let got = parse_existing(json);
        assert_eq!(got.chains.iter().collect::<Vec<_>>(), ["services"]);
        assert_eq!(got.sets.get("cluster-ips"), Some(&false));
        assert_eq!(got.sets.get("service-ips"), Some(&true));
    }
}
