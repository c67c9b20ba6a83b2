//! Node IPAM, as upstream's range allocator: every node gets a `spec.podCIDR` cut from the
//! cluster CIDR (`--cluster-cidr`, `/--node-cidr-mask-size` each), freed when the node goes.
//!
//! The shared node informer feeds [`state::IpamState`], which owns the allocator: the whole
//! store once listed, then each changed node by name, looked up in the store (so a burst of
//! changes to one node is one lookup of its latest version). The patches it asks for run with
//! bounded concurrency. When the range is exhausted the node gets a
//! `CIDRNotAvailable` event and is retried every few seconds and whenever a node is deleted.

pub mod cidrset;
pub mod state;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
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

/// A node change the informer reported.
#[derive(Debug)]
enum Changed {
    /// Added or updated: look it up.
    Node(String),
    /// Deleted (name, UID).
    Deleted(String, String),
}

/// Runs node IPAM until `shutdown`. Fails at once on a configuration that cannot work.
pub async fn run(
    informers: SharedInformers,
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
    let (changed_tx, changed) = mpsc::unbounded_channel();
    let nodes = informers.subscribe::<Node, _>(move |(old, new)| {
        let change = match (old, new) {
            (_, Some(n)) => Changed::Node(n.metadata.name.clone().unwrap_or_default()),
            (Some(o), None) => Changed::Deleted(
                o.metadata.name.clone().unwrap_or_default(),
                o.metadata.uid.clone().unwrap_or_default(),
            ),
            (None, None) => return,
        };
        let _ = changed_tx.send(change);
    });
    let mut ctl = Controller::new(informers.client().clone(), nodes, IpamState::new(set));
    ctl.run(changed, shutdown).await;
    Ok(())
}

/// The loop: node events and patch outcomes in, actions out.
struct Controller {
    nodes: Api<Node>,
    store: Store<Node>,
    recorder: Recorder,
    state: IpamState,
    writes: JoinSet<()>,
    permits: Arc<Semaphore>,
    failed_tx: mpsc::UnboundedSender<PatchFailed>,
    failed_rx: mpsc::UnboundedReceiver<PatchFailed>,
}

impl Controller {
    fn new(client: kube::Client, store: Store<Node>, state: IpamState) -> Controller {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: None,
        };
        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        Controller {
            nodes: Api::all(client.clone()),
            store,
            recorder: Recorder::new(client, reporter),
            state,
            writes: JoinSet::new(),
            permits: Arc::new(Semaphore::new(WRITE_CONCURRENCY)),
            failed_tx,
            failed_rx,
        }
    }

    async fn run(
        &mut self,
        mut changed: mpsc::UnboundedReceiver<Changed>,
        shutdown: CancellationToken,
    ) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = k8rs_controller_runtime::ready(&self.store) => {}
        }
        let actions = self.listed();
        for action in actions {
            self.perform(action);
        }
        let mut retry = tokio::time::interval(RETRY_PERIOD);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let actions = tokio::select! {
                _ = shutdown.cancelled() => break,
                change = changed.recv() => match change {
                    Some(change) => self.on_change(change),
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

    /// Every node of the listed store: subnets already held are known before any is handed out.
    fn listed(&mut self) -> Vec<Action> {
        self.state.restart();
        for node in self.store.state() {
            let (name, uid, cidr) = node_fields(&node);
            let _ = self.state.observe(&name, &uid, cidr.as_deref());
        }
        self.state.listed()
    }

    /// A change, judged against the node's latest version in the store.
    fn on_change(&mut self, change: Changed) -> Vec<Action> {
        match change {
            Changed::Node(name) => match self.store.get(&ObjectRef::new(&name)) {
                Some(node) => {
                    let (name, uid, cidr) = node_fields(&node);
                    self.state.observe(&name, &uid, cidr.as_deref())
                }
                // Deleted since: its deletion follows.
                None => Vec::new(),
            },
            Changed::Deleted(name, uid) => match self.store.get(&ObjectRef::new(&name)) {
                // Deleted and created again: the new node is judged on its own.
                Some(node) if node.metadata.uid.as_deref() != Some(uid.as_str()) => {
                    let (name, uid, cidr) = node_fields(&node);
                    let mut actions = Vec::new();
                    if cidr.is_none() {
                        actions.extend(self.state.deleted(&name));
                    }
                    actions.extend(self.state.observe(&name, &uid, cidr.as_deref()));
                    actions
                }
                Some(_) => Vec::new(),
                None => self.state.deleted(&name),
            },
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
