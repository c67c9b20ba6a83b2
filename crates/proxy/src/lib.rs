//! k8rs's service proxy: upstream kube-proxy's nftables mode for IPv4.
//!
//! Services and EndpointSlices (watched through the API server) become a pure model
//! ([`model`]), which the renderer ([`render`]) turns into the desired contents of the proxy's
//! own table, `table ip k8rs-proxy`: a fixed set of chains, with every Service and endpoint
//! an element of a set or map; [`state`] turns a change of the model into one atomic
//! transaction that touches only what changed (sent as `nft -f -` text; full rewrites flush
//! rather than delete the table), and [`proxier`] runs the loop
//! (coalesced syncs, periodic full resync, conntrack cleanup, health servers). It also
//! programs the hostPorts of the pods on its node ([`hostport`]), in place of the CNI
//! `portmap` plugin.
//!
//! It never touches another table, iptables, or the whole ruleset (beyond enabling
//! `route_localnet` on the interfaces leading to pods with hostPorts). It is a client of the API
//! server only: it must not depend on the apiserver or store crates.

pub mod config;
pub mod dataplane;
pub mod health;
pub mod hostport;
pub mod model;
pub mod nft;
pub mod proxier;
pub mod render;
pub mod state;

pub use config::{Cidr, ProxyConfig};
pub use proxier::{cleanup, run};

/// What went wrong in the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be started: is nftables installed? Not retryable.
    #[error("running nft failed: {0}")]
    NftSpawn(#[source] std::io::Error),
    /// `nft` refused a transaction; nothing was changed. Retried with a full resync.
    #[error("nft refused the transaction: {0}")]
    NftFailed(String),
    /// The health server could not bind its address.
    #[error("binding the health server on {addr} failed: {source}")]
    HealthBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A watch of the API server ended with an error; retried by the caller.
    #[error("watching {what} failed: {source}")]
    Watch {
        what: &'static str,
        #[source]
        source: kube::runtime::watcher::Error,
    },
}
