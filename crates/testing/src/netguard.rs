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

/// The guard's ruleset for `uplinks` and `ranges`: one plain prefix-match rule per interface
/// and range, with no sets. The table is never deleted and re-created in one transaction:
/// this kernel (6.18) has been seen to lock up in `__nft_set_trans_bind` when a table with
/// anonymous sets is deleted and re-created in the same transaction.
pub fn ruleset(uplinks: &[String], ranges: &[&str]) -> String {
    let mut rules = String::new();
    for iface in uplinks {
        for range in ranges {
            rules.push_str(&format!(
                "\t\toifname \"{iface}\" ip daddr {range} counter drop\n"
            ));
        }
    }
    format!(
        "table inet {TABLE} {{\n\
         \tchain output {{\n\t\ttype filter hook output priority -300; policy accept;\n{rules}\t}}\n\
         \tchain forward {{\n\t\ttype filter hook forward priority -300; policy accept;\n{rules}\t}}\n}}\n"
    )
}

/// The loaded guard table, if any.
fn listed() -> Result<Option<String>, GuardError> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .output()
        .map_err(GuardError::Spawn)?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Whether `table` (as `nft list` prints it) drops every range on every uplink in both hooks.
fn covers(table: &str, uplinks: &[String]) -> bool {
    uplinks.iter().all(|iface| {
        CLUSTER_RANGES.iter().all(|range| {
            table
                .lines()
                .filter(|l| {
                    l.contains(&format!("oifname \"{iface}\" ip daddr {range} "))
                        && l.trim_end().ends_with("drop")
                })
                .count()
                == 2
        })
    })
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), GuardError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(GuardError::Spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(GuardError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(GuardError::Spawn)?;
    if !out.status.success() {
        return Err(GuardError::Rejected(
            String::from_utf8_lossy(&out.stderr).into(),
        ));
    }
    Ok(())
}

/// Loads the guard for [`CLUSTER_RANGES`] unless it is already in place, and checks it.
/// Concurrent callers (tests in several processes) are serialised by a lock file.
pub fn ensure() -> Result<(), GuardError> {
    let uplinks = uplinks();
    if uplinks.is_empty() {
        return Ok(()); // no default route: nothing can leave
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/k8rs-netguard.lock")
        .map_err(GuardError::Spawn)?;
    lock.lock().map_err(GuardError::Spawn)?;
    match listed()? {
        Some(table) if covers(&table, &uplinks) => return Ok(()),
        // Another layout (an older guard): remove it in its own transaction first.
        Some(_) => nft(&["delete", "table", "inet", TABLE], None)?,
        None => {}
    }
    nft(&["-f", "-"], Some(&ruleset(&uplinks, CLUSTER_RANGES)))?;
    match listed()? {
        Some(table) if covers(&table, &uplinks) => Ok(()),
        _ => Err(GuardError::NotLoaded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_exactly_the_cluster_ranges_on_each_uplink() {
        let text = ruleset(&["eth0".into()], CLUSTER_RANGES);
        assert!(text.contains("oifname \"eth0\" ip daddr 10.42.0.0/16 counter drop"));
        assert!(text.contains("oifname \"eth0\" ip daddr 10.43.0.0/16 counter drop"));
        assert_eq!(
            text.matches("counter drop").count(),
            4,
            "two ranges, two hooks"
        );
        assert!(!text.contains("daddr {"), "no sets");
        assert!(!text.contains("10.0.0.0/8"));
        assert!(covers(&text, &["eth0".to_string()]));
        assert!(!covers(&text, &["eth1".to_string()]));
    }

    #[test]
    fn the_guard_loads_and_stays_single() {
        ensure().expect("the guard loads");
        ensure().expect("and loads again as a no-op");
        let table = listed().expect("nft").expect("table present");
        assert!(covers(&table, &uplinks()));
        assert_eq!(
            table.matches("drop").count(),
            uplinks().len() * 4,
            "{table}"
        );
    }
}
