//! k8rs's NetworkPolicy enforcement (networking.k8s.io/v1) on each node, in nftables, as k3s
//! ships it with kube-router's network policy controller.
//!
//! NetworkPolicies, Pods and Namespaces (watched through the API server) become a pure model
//! ([`model`]): for every pod on this node that some policy selects, the peers and ports it
//! may talk to, per direction. The renderer ([`render`]) turns that into the desired contents
//! of this crate's own table, `table inet k8rs-netpol` (a forward-hook chain, verdict maps
//! from pod IP to per-pod chains, interval sets of peer addresses), and into `nft -f` text
//! transactions: incremental ones touching only the changed pods' chains and set elements,
//! and a full in-place repair on start and every `resync_period`. [`controller`] runs the
//! loop.
//!
//! Pods sit behind the node's CNI bridge, so their traffic crosses the forward hook; traffic
//! between two pods on the same bridge is seen there only with `bridge-nf-call-iptables=1`
//! (set by the agent; this crate does not touch sysctls). Traffic from the node itself to its
//! pods (probes) never crosses the forward hook and is always allowed, as upstream requires.
//!
//! It never touches another table, iptables, or the whole ruleset. It is a client of the API
//! server only: it must not depend on the apiserver or store crates.

pub mod controller;
pub mod dataplane;
pub mod model;
pub mod ranges;
pub mod render;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod render_tests;

use std::time::Duration;

pub use controller::run;

/// What the policy controller of one node needs.
#[derive(Clone, Debug)]
pub struct NetpolConfig {
    /// This node's name: only pods with this `spec.nodeName` are enforced here.
    pub node_name: String,
    /// How to run `nft`, e.g. `["nft"]` or `["ip", "netns", "exec", "NS", "nft"]`.
    pub nft_command: Vec<String>,
    /// How often the whole table is repaired from the model (kube-router: 5 minutes).
    pub resync_period: Duration,
}

impl NetpolConfig {
    /// `nft` on this host, resync every 5 minutes.
    pub fn new(node_name: impl Into<String>) -> NetpolConfig {
        NetpolConfig {
            node_name: node_name.into(),
            nft_command: vec!["nft".to_string()],
            resync_period: Duration::from_secs(300),
        }
    }
}

/// Removes this crate's table (for `k8rs killall` and uninstall, or when the policy
/// controller is turned off).
pub fn cleanup(config: &NetpolConfig) -> Result<(), Error> {
    dataplane::Dataplane::new(&config.nft_command).delete_table()
}

/// What went wrong in the policy controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be started: is nftables installed? Not retryable.
    #[error("running nft failed: {0}")]
    NftSpawn(#[source] std::io::Error),
    /// `nft` refused a transaction; nothing was changed. `run` retries with a full resync.
    #[error("nft refused the transaction: {0}")]
    NftFailed(String),
}
