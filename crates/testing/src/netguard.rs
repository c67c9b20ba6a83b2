//! The network-safety guard for tests that may send packets to pod or Service addresses: an
//! nftables table that drops traffic to exactly the cluster's ranges on every interface that
//! carries a default route, so that a packet for a private cluster address can never leave the
//! machine, whatever the code under test does. Loading it is idempotent; it is left in place
//! (dropping only the cluster ranges on the uplink is always safe).

use std::io::Write;
use std::process::{Command, Stdio};

/// The table the guard lives in.
pub const TABLE: &str = "k8rs_test_guard";

/// The ranges the guard covers: k3s-style pod and Service CIDRs, as k8rs defaults.
pub const CLUSTER_RANGES: &[&str] = &["10.42.0.0/16", "10.43.0.0/16"];

/// Why the guard could not be put in place; a test must not go on without it.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("running nft failed (is nftables installed?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft refused the guard table: {0}")]
    Rejected(String),
    #[error("the guard table did not load: `nft list table inet {TABLE}` shows no drop rule")]
    NotLoaded,
}

/// Interfaces with a default route, from `/proc/net/route`.
pub fn uplinks() -> Vec<String> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut out: Vec<String> = routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let iface = cols.next()?;
            let dest = cols.next()?;
            (dest == "00000000").then(|| iface.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The guard's ruleset for `uplinks` and `ranges`.
pub fn ruleset(uplinks: &[String], ranges: &[&str]) -> String {
    let ranges = ranges.join(", ");
    let mut rules = String::new();
    for iface in uplinks {
        rules.push_str(&format!(
            "\t\toifname \"{iface}\" ip daddr {{ {ranges} }} counter drop\n"
        ));
    }
    // Create-then-delete makes the load idempotent; the whole file is one transaction.
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n\
         \tchain output {{\n\t\ttype filter hook output priority -300; policy accept;\n{rules}\t}}\n\
         \tchain forward {{\n\t\ttype filter hook forward priority -300; policy accept;\n{rules}\t}}\n}}\n"
    )
}

/// Loads the guard for [`CLUSTER_RANGES`] and checks that it is in place.
pub fn ensure() -> Result<(), GuardError> {
    let uplinks = uplinks();
    if uplinks.is_empty() {
        return Ok(()); // no default route: nothing can leave
    }
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(GuardError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset(&uplinks, CLUSTER_RANGES).as_bytes())
            .map_err(GuardError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(GuardError::Spawn)?;
    if !out.status.success() {
        return Err(GuardError::Rejected(
            String::from_utf8_lossy(&out.stderr).into(),
        ));
    }
    let listed = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .output()
        .map_err(GuardError::Spawn)?;
    let text = String::from_utf8_lossy(&listed.stdout);
    if !listed.status.success() || !uplinks.iter().all(|i| text.contains(i.as_str())) {
        return Err(GuardError::NotLoaded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_exactly_the_cluster_ranges_on_each_uplink() {
        let text = ruleset(&["eth0".into()], CLUSTER_RANGES);
        assert!(
            text.contains("oifname \"eth0\" ip daddr { 10.42.0.0/16, 10.43.0.0/16 } counter drop")
        );
        assert_eq!(
            text.matches("counter drop").count(),
            2,
            "output and forward"
        );
        assert!(!text.contains("10.0.0.0/8"));
    }
}
