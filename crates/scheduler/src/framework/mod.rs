//! The scheduling framework: one small trait per extension point, in upstream's order
//! (PreEnqueue, QueueSort, PreFilter, Filter, PostFilter, PreScore, Score, NormalizeScore, Reserve,
//! Permit, PreBind, Bind, PostBind), and [`Framework`], the ordered plugin lists that run them.
//!
//! Plugins are pure over the snapshot and the cycle state; only PreBind and Bind touch the API
//! (through the [`crate::api::ClusterApi`] they hold). PostFilter returns what preemption needs
//! done (nomination, victims) and the scheduler performs it.

mod cycle_state;
mod events;
mod fit_error;
mod runtime;
mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

pub use cycle_state::{CycleState, StateData};
pub use events::{ActionType, ClusterEvent, EventResource};
pub use fit_error::{Diagnosis, FitError, NodeToStatus};
pub use runtime::Framework;
pub use status::{Code, Status};

use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// The highest score a plugin may give after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// Pods nominated to nodes by preemption, by node name.
pub type NominatedPods = HashMap<String, Vec<Arc<PodInfo>>>;

/// A pod waiting in the scheduling queue.
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// When it was last added to the queue (orders equal priorities; starts its backoff).
    pub timestamp: Instant,
    /// When it was first added.
    pub initial_attempt: Instant,
    /// How many times it was popped for scheduling.
    pub attempts: u32,
    /// Plugins that rejected it last time (events for them retry it).
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// The PreEnqueue plugin holding it back, when gated.
    pub gated_by: Option<&'static str>,
    /// Arrival order, for stable ties.
    pub seq: u64,
}

/// Something every plugin has.
pub trait Plugin: Send + Sync {
    /// The plugin's name (`NodeResourcesFit`, ...).
    fn name(&self) -> &'static str;
    /// The cluster events that may make a pod this plugin rejected schedulable.
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }
}

/// Decides whether a pod may enter the active queue at all.
pub trait PreEnqueuePlugin: Plugin {
    /// Success lets the pod in; anything else keeps it gated.
    fn pre_enqueue(&self, pod: &PodInfo) -> Status;
}

/// Orders the active queue.
pub trait QueueSortPlugin: Plugin {
    /// Whether `a` should be scheduled before `b`.
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// Narrowing of the nodes to evaluate, from PreFilter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// Only these nodes can fit (`None`: all).
    pub node_names: Option<BTreeSet<String>>,
}

impl PreFilterResult {
    /// The intersection of two narrowings.
    pub fn merge(self, other: PreFilterResult) -> PreFilterResult {
        match (self.node_names, other.node_names) {
            (None, b) => PreFilterResult { node_names: b },
            (a, None) => PreFilterResult { node_names: a },
            (Some(a), Some(b)) => PreFilterResult {
                node_names: Some(a.intersection(&b).cloned().collect()),
            },
        }
    }
}

/// Computes per-pod state once per cycle before filtering.
pub trait PreFilterPlugin: Plugin {
    /// Skip means the plugin's Filter has nothing to check for this pod.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status);

    /// Updates the state as if `added` ran on `node` (preemption and nominated pods).
    fn add_pod(
        &self,
        _: &mut CycleState,
        _pod: &PodInfo,
        _added: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }

    /// Updates the state as if `removed` no longer ran on `node`.
    fn remove_pod(
        &self,
        _: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
}

/// Decides whether the pod can run on one node.
pub trait FilterPlugin: Plugin {
    /// Success when the node fits.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What the scheduler has at hand for PostFilter.
pub struct PostFilterContext<'a> {
    /// The framework, to re-run filters in simulations.
    pub framework: &'a Framework,
    /// The cycle's snapshot.
    pub snapshot: &'a Snapshot,
    /// Nominated pods at the start of the cycle.
    pub nominated: &'a NominatedPods,
}

/// What a PostFilter plugin wants done.
#[derive(Debug, Clone, Default)]
pub struct PostFilterResult {
    /// The node to nominate the pod to (`Some("")` clears a nomination).
    pub nominated_node: Option<String>,
    /// Pods to evict for the nomination to hold.
    pub victims: Vec<Arc<PodInfo>>,
    /// Lower-priority pods nominated to the same node, whose nomination must be cleared.
    pub clear_nominations: Vec<Arc<PodInfo>>,
}

/// Runs when no node fits (preemption).
pub trait PostFilterPlugin: Plugin {
    /// Success with a nominated node when the pod can fit after the result is carried out.
    fn post_filter(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status);
}

/// Computes per-pod state once per cycle before scoring.
pub trait PreScorePlugin: Plugin {
    /// Skip means the plugin's Score has nothing to add for this pod.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

/// Ranks feasible nodes.
pub trait ScorePlugin: Plugin {
    /// The raw score of `node`.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;
    /// The normalizer of raw scores, when they are not already 0–100.
    fn normalizer(&self) -> Option<&dyn NormalizeScorePlugin> {
        None
    }
}

/// Brings a score plugin's raw scores to 0–[`MAX_NODE_SCORE`].
pub trait NormalizeScorePlugin {
    /// `scores[i]` is the score of `nodes[i]`.
    fn normalize_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status;
}

/// Reserves resources for the pod on the chosen node before binding.
pub trait ReservePlugin: Plugin {
    /// Reserve; failure unreserves every plugin.
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    /// Undo [`Self::reserve`].
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// Approves, rejects or delays binding.
pub trait PermitPlugin: Plugin {
    /// `Wait` holds the pod for at most the duration.
    fn permit(&self, state: &CycleState, pod: &PodInfo, node: &str) -> (Status, Duration);
}

/// Prepares binding (e.g. binds volumes).
pub trait PreBindPlugin: Plugin {
    /// Failure aborts the binding.
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Binds the pod to the node.
pub trait BindPlugin: Plugin {
    /// Skip passes to the next bind plugin.
    fn bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Informational, after a successful binding.
pub trait PostBindPlugin: Plugin {
    /// Called once the pod is bound.
    fn post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str);
}

/// Upstream's `DefaultNormalizeScore`: scales scores so the highest becomes `max` (and, with
/// `reverse`, inverts them so the lowest raw score ranks best).
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = max * *s / highest;
        *s = if reverse { max - scaled } else { scaled };
    }
}
