//! The node's pod network, as flannel does it in k3s: each node's pods live in its
//! `spec.podCIDR`; pods on different nodes reach each other directly, without NAT, through a
//! route per peer podCIDR (host-gw: via the peer's node IP; VXLAN: through a VXLAN device with
//! an FDB entry and a neighbour per peer, MTU lowered by 50); only traffic leaving the cluster
//! CIDR is masqueraded, in the node's own nft table `ip k8rs-podnet` (never any other table,
//! never iptables). It also sets the sysctls the node's pod traffic needs.
//!
//! Shape: [`plan`] is pure (Nodes and observed kernel state in, [`plan::Action`]s out),
//! [`observe`] parses `ip -j` output, [`render`] turns actions into command lines,
//! [`dataplane`] is the thin I/O shell over an [`exec::Exec`], and [`run`] watches Nodes.
//!
//! Depends on k8s-openapi and kube (as a client) only; it must not depend on the API server,
//! the store, or any other k8rs component crate. The CNI configuration (bridge, IPAM) belongs
//! to the runtime crate, which must write it with `ipMasq: false` and [`pod_mtu`]'s MTU.

pub mod config;
pub mod dataplane;
pub mod exec;
pub mod observe;
pub mod plan;
pub mod render;

use std::net::Ipv4Addr;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

pub use config::{Backend, Cidr, Commands, PodNetConfig, VXLAN_OVERHEAD};
pub use dataplane::Dataplane;
pub use exec::{Exec, ProcessExec};
pub use render::TABLE;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work; fix it (not retryable).
    #[error("invalid pod network config: {0}")]
    InvalidConfig(String),
    /// A tool could not be started (is iproute2/nftables installed?); retryable.
    #[error("running `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool refused a change or a query; retried at the next sync.
    #[error("`{command}` failed: {stderr}")]
    CommandFailed { command: String, stderr: String },
    /// A tool did not finish in time (it was killed); retried at the next sync.
    #[error("`{command}` timed out")]
    CommandTimedOut { command: String },
    /// A tool printed something this crate cannot read.
    #[error("unexpected output of `{command}`: {reason}")]
    UnexpectedOutput { command: String, reason: String },
    /// A sysctl could not be written (not root?).
    #[error("setting sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// No interface holds the node IP, so there is no underlay for VXLAN; retried.
    #[error("no interface has the node IP {0}")]
    NoUnderlay(Ipv4Addr),
    /// Some changes of a sync failed (the others were applied); retried with backoff.
    #[error("{failed} of {total} pod network changes failed; first: {first}")]
    ChangesFailed {
        failed: usize,
        total: usize,
        first: Box<Error>,
    },
    /// Publishing this node's annotations failed; retried.
    #[error("annotating node {node}: {source}")]
    AnnotateFailed {
        node: String,
        #[source]
        source: kube::Error,
    },
    /// The Node watch ended (the API client is gone); the caller may restart `run`.
    #[error("the node watch ended")]
    WatchEnded,
}

/// How soon after a Node change the network is synced (changes in a burst are batched).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// The first retry delay after a failed sync (doubling up to the resync period).
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Runs the node's pod network until `shutdown`: watches Nodes, and on every change (and every
/// `resync_period`) syncs sysctls, the nft table, the VXLAN device and the routes to peers,
/// publishing this node's `k8rs.io/public-ip` (and `k8rs.io/vxlan-mac`) annotations. Leaves the
/// network in place on shutdown (pods keep working across agent restarts); see [`cleanup`].
pub async fn run(
    client: kube::Client,
    config: PodNetConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with(client, Dataplane::new(config, ProcessExec), shutdown).await
}

/// [`run`] over any [`Exec`].
pub async fn run_with<E: Exec>(
    client: kube::Client,
    dataplane: Dataplane<E>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client);
    let (store, writer) = reflector::store();
    let events = reflector(
        writer,
        watcher(nodes.clone(), watcher::Config::default()).default_backoff(),
    );
    let mut events = pin!(events);
    let resync = dataplane.config().resync_period;
    let mut ready = false;
    let mut deadline = Instant::now() + resync;
    let mut retry = FIRST_RETRY;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => {
                    ready = true;
                    deadline = Instant::now();
                }
                Some(Ok(_)) => deadline = deadline.min(Instant::now() + DEBOUNCE),
                Some(Err(e)) => tracing::warn!(error = %e, "node watch failed; retrying"),
                None => return Err(Error::WatchEnded),
            },
            _ = sleep_until(deadline) => {
                if !ready {
                    deadline = Instant::now() + DEBOUNCE;
                    continue;
                }
                match sync_once(&nodes, &store, &dataplane).await {
                    Ok(()) => {
                        retry = FIRST_RETRY;
                        deadline = Instant::now() + resync;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?retry, "pod network sync failed");
                        deadline = Instant::now() + retry;
                        retry = (retry * 2).min(resync);
                    }
                }
            }
        }
    }
}

/// One sync over the reflector's snapshot, then this node's annotations.
async fn sync_once<E: Exec>(
    api: &Api<Node>,
    store: &Store<Node>,
    dataplane: &Dataplane<E>,
) -> Result<(), Error> {
    let snapshot = store.state();
    let nodes = snapshot.iter().map(|n| n.as_ref());
    let synced = dataplane.sync(nodes.clone()).await;
    let config = dataplane.config();
    let wanted = plan::own_node(config, nodes).and_then(|own| plan::own_annotations(config, &own));
    if let Some(annotations) = wanted {
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        api.patch(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| Error::AnnotateFailed {
            node: config.node_name.clone(),
            source,
        })?;
    }
    synced
}

/// Removes the node's pod network (nft table, routes, VXLAN device): for `k8rs killall` and
/// clean uninstall. Pods on the node lose their cross-node and outside connectivity.
pub async fn cleanup(config: &PodNetConfig) -> Result<(), Error> {
    Dataplane::new(config.clone(), ProcessExec).cleanup().await
}

/// The MTU the CNI bridge and pods of this node must use (VXLAN: underlay minus 50, or the
/// configured override; host-gw: the underlay's).
pub async fn pod_mtu(config: &PodNetConfig) -> Result<u32, Error> {
    Dataplane::new(config.clone(), ProcessExec).pod_mtu().await
}

#[cfg(test)]
mod dataplane_tests;
#[cfg(test)]
mod plan_tests;
