//! Node IPAM, as upstream's range allocator: every node gets a `spec.podCIDR` cut from the
//! cluster CIDR (`--cluster-cidr`, `/--node-cidr-mask-size` each), freed when the node goes.
//!
//! One watch of all nodes feeds [`state::IpamState`], which owns the allocator; the patches it
//! asks for run with bounded concurrency. When the range is exhausted the node gets a
//! `CIDRNotAvailable` event and is retried every few seconds and whenever a node is deleted.

pub mod cidrset;
pub mod state;

use std::net::Ipv4Addr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use cidrset::{Cidr, CidrSet};
use state::{Action, IpamState};

/// The name events are reported under, as upstream.
pub const CONTROLLER_NAME: &str = "node-ipam-controller";
/// Patches and events in flight at once.
const WRITE_CONCURRENCY: usize = 16;
/// How often nodes waiting for a subnet are tried again.
const RETRY_PERIOD: Duration = Duration::from_secs(5);

/// Errors of node IPAM: only a configuration that cannot work stops the controller; API errors
/// are logged and retried.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The node mask is shorter than the cluster's or longer than 32 bits: fix the flags.
    #[error("node CIDR mask size /{node_prefix} does not fit in cluster CIDR {cluster}")]
    InvalidMask { cluster: String, node_prefix: u8 },
    /// More than 2^16 node subnets: use a longer cluster prefix or a shorter node mask.
    #[error("New CIDR set failed; the node CIDR size is too big")]
    SubnetTooBig,
    /// Every node subnet is in use (the caller waits for a node to go).
    #[error(
        "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
    )]
    Full,
    /// A CIDR lies outside the cluster CIDR; it is ignored.
    #[error("cidr {cidr} is out the range of cluster cidr {cluster}")]
    OutOfRange { cidr: String, cluster: String },
}

/// Node IPAM settings, upstream's `--cluster-cidr` and `--node-cidr-mask-size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIpamConfig {
    /// The range node subnets are cut from (k3s's default is 10.42.0.0/16).
    pub cluster_cidr: (Ipv4Addr, u8),
    /// The prefix length of each node's subnet (default 24).
    pub node_cidr_mask_size: u8,
}

impl Default for NodeIpamConfig {
    fn default() -> Self {
        NodeIpamConfig {
            cluster_cidr: (Ipv4Addr::new(10, 42, 0, 0), 16),
            node_cidr_mask_size: 24,
        }
    }
}

/// How a patch ended, reported back to the loop that owns the state.
#[derive(Debug)]
struct PatchFailed {
    node: String,
    uid: String,
    cidr: Cidr,
    node_gone: bool,
}

/// Runs node IPAM until `shutdown`. Fails at once on a configuration that cannot work.
pub async fn run(
    client: kube::Client,
    config: NodeIpamConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (addr, prefix) = config.cluster_cidr;
    if prefix > 32 {
        return Err(Error::InvalidMask {
            cluster: format!("{addr}/{prefix}"),
            node_prefix: config.node_cidr_mask_size,
        });
    }
    let set = CidrSet::new(Cidr::new(addr, prefix), config.node_cidr_mask_size)?;
    tracing::info!(
        cluster_cidr = %Cidr::new(addr, prefix),
        node_cidr_mask_size = config.node_cidr_mask_size,
        nodes = set.capacity(),
        "node IPAM started"
    );
    let mut ctl = Controller::new(client, IpamState::new(set));
    ctl.run(shutdown).await;
    Ok(())
}

/// The loop: node events and patch outcomes in, actions out.
struct Controller {
    nodes: Api<Node>,
    recorder: Recorder,
    state: IpamState,
    writes: JoinSet<()>,
    permits: Arc<Semaphore>,
    failed_tx: mpsc::UnboundedSender<PatchFailed>,
    failed_rx: mpsc::UnboundedReceiver<PatchFailed>,
}

impl Controller {
    fn new(client: kube::Client, state: IpamState) -> Controller {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: None,
        };
        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        Controller {
            nodes: Api::all(client.clone()),
            recorder: Recorder::new(client, reporter),
            state,
            writes: JoinSet::new(),
            permits: Arc::new(Semaphore::new(WRITE_CONCURRENCY)),
            failed_tx,
            failed_rx,
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        let watch = watcher(self.nodes.clone(), watcher::Config::default()).default_backoff();
        let mut watch = pin!(watch);
        let mut retry = tokio::time::interval(RETRY_PERIOD);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let actions = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = watch.next() => match event {
                    Some(Ok(event)) => self.on_event(event),
                    Some(Err(err)) => {
                        tracing::warn!(%err, "node IPAM: watching nodes failed; retrying");
                        Vec::new()
                    }
                    None => break,
                },
                Some(f) = self.failed_rx.recv() => {
                    self.state.patch_failed(&f.node, &f.uid, f.cidr, f.node_gone);
                    Vec::new()
                }
                _ = retry.tick() => self.state.retry(),
                Some(_) = self.writes.join_next(), if !self.writes.is_empty() => Vec::new(),
            };
            for action in actions {
                self.perform(action);
            }
        }
        self.writes.shutdown().await;
    }

    fn on_event(&mut self, event: watcher::Event<Node>) -> Vec<Action> {
        match event {
            watcher::Event::Init => {
                self.state.restart();
                Vec::new()
            }
            watcher::Event::InitApply(node) | watcher::Event::Apply(node) => {
                let (name, uid, cidr) = node_fields(&node);
                self.state.observe(&name, &uid, cidr.as_deref())
            }
            watcher::Event::InitDone => self.state.listed(),
            watcher::Event::Delete(node) => {
                let (name, _, _) = node_fields(&node);
                self.state.deleted(&name)
            }
        }
    }

    fn perform(&mut self, action: Action) {
        let permits = self.permits.clone();
        match action {
            Action::Assign { node, uid, cidr } => {
                let nodes = self.nodes.clone();
                let failed = self.failed_tx.clone();
                self.writes.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return;
                    };
                    if let Err(f) = patch_cidr(&nodes, &node, &uid, cidr).await {
                        let _ = failed.send(f);
                    }
                });
            }
            Action::NotAvailable { node, uid } => {
                let recorder = self.recorder.clone();
                self.writes.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return;
                    };
                    record_not_available(&recorder, &node, &uid).await;
                });
            }
        }
    }
}

fn node_fields(node: &Node) -> (String, String, Option<String>) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let uid = node.metadata.uid.clone().unwrap_or_default();
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    (name, uid, cidr)
}

/// Sets the node's `spec.podCIDR` and `spec.podCIDRs` with a JSON merge patch.
async fn patch_cidr(
    nodes: &Api<Node>,
    node: &str,
    uid: &str,
    cidr: Cidr,
) -> Result<(), PatchFailed> {
    let body =
        serde_json::json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    match nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => {
            tracing::debug!(node, %cidr, "node IPAM: podCIDR set");
            Ok(())
        }
        Err(err) => {
            let node_gone = matches!(&err, kube::Error::Api(s) if s.code == 404);
            if !node_gone {
                tracing::warn!(node, %cidr, %err, "node IPAM: setting podCIDR failed; retrying");
            }
            Err(PatchFailed {
                node: node.to_string(),
                uid: uid.to_string(),
                cidr,
                node_gone,
            })
        }
    }
}

/// Upstream's `RecordNodeStatusChange(node, "CIDRNotAvailable")`.
async fn record_not_available(recorder: &Recorder, node: &str, uid: &str) {
    tracing::warn!(node, "node IPAM: no CIDR left for the node");
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.to_string()),
        uid: (!uid.is_empty()).then(|| uid.to_string()),
        ..Default::default()
    };
    let event = KubeEvent {
        type_: EventType::Normal,
        reason: "CIDRNotAvailable".into(),
        note: Some(format!("Node {node} status is now: CIDRNotAvailable")),
        action: "AllocateCIDR".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &reference).await {
        tracing::warn!(node, %err, "node IPAM: recording the CIDRNotAvailable event failed");
    }
}
