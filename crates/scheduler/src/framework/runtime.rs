//! [`Framework`]: the ordered plugins of each extension point and how they are run (upstream's
//! `frameworkImpl`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{
    BindPlugin, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeToStatus,
    NominatedPods, PermitPlugin, Plugin, PostBindPlugin, PostFilterContext, PostFilterPlugin,
    PostFilterResult, PreBindPlugin, PreEnqueuePlugin, PreFilterPlugin, PreFilterResult,
    PreScorePlugin, QueueSortPlugin, ReservePlugin, ScorePlugin, Status,
};
use crate::framework::Code;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// The plugins of every extension point, in the order they run.
pub struct Framework {
    /// PreEnqueue plugins.
    pub pre_enqueue: Vec<Arc<dyn PreEnqueuePlugin>>,
    /// The QueueSort plugin.
    pub queue_sort: Arc<dyn QueueSortPlugin>,
    /// PreFilter plugins.
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    /// Filter plugins.
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    /// PostFilter plugins.
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    /// PreScore plugins.
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    /// Score plugins with their weights.
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    /// Reserve plugins.
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    /// Permit plugins.
    pub permit: Vec<Arc<dyn PermitPlugin>>,
    /// PreBind plugins.
    pub pre_bind: Vec<Arc<dyn PreBindPlugin>>,
    /// Bind plugins.
    pub bind: Vec<Arc<dyn BindPlugin>>,
    /// PostBind plugins.
    pub post_bind: Vec<Arc<dyn PostBindPlugin>>,
}

/// What PreFilter produced.
#[derive(Debug)]
pub struct PreFilterOutcome {
    /// Narrowed node set.
    pub result: PreFilterResult,
    /// Success, a rejection or an error.
    pub status: Status,
    /// Plugins that rejected the pod.
    pub rejectors: BTreeSet<&'static str>,
    /// Plugins that narrowed the node set.
    pub narrowed_by: BTreeSet<&'static str>,
}

impl Framework {
    /// A framework with only a queue sort plugin.
    pub fn new(queue_sort: Arc<dyn QueueSortPlugin>) -> Self {
        Self {
            pre_enqueue: Vec::new(),
            queue_sort,
            pre_filter: Vec::new(),
            filter: Vec::new(),
            post_filter: Vec::new(),
            pre_score: Vec::new(),
            score: Vec::new(),
            reserve: Vec::new(),
            permit: Vec::new(),
            pre_bind: Vec::new(),
            bind: Vec::new(),
            post_bind: Vec::new(),
        }
    }

    fn all_plugins(&self) -> Vec<Arc<dyn Plugin>> {
        let mut all: Vec<Arc<dyn Plugin>> = Vec::new();
        all.extend(
            self.pre_enqueue
                .iter()
                .map(|p| p.clone() as Arc<dyn Plugin>),
        );
        all.extend(self.pre_filter.iter().map(|p| p.clone() as Arc<dyn Plugin>));
        all.extend(self.filter.iter().map(|p| p.clone() as Arc<dyn Plugin>));
        all.extend(
            self.post_filter
                .iter()
                .map(|p| p.clone() as Arc<dyn Plugin>),
        );
        all.extend(self.reserve.iter().map(|p| p.clone() as Arc<dyn Plugin>));
        all.extend(self.permit.iter().map(|p| p.clone() as Arc<dyn Plugin>));
        all.extend(self.pre_bind.iter().map(|p| p.clone() as Arc<dyn Plugin>));
        all
    }

    /// Every (plugin, event) registration of the plugins that can reject a pod.
    pub fn registered_events(&self) -> Vec<(&'static str, ClusterEvent)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for p in self.all_plugins() {
            if seen.insert(p.name()) {
                out.extend(p.events_to_register().into_iter().map(|e| (p.name(), e)));
            }
        }
        out
    }

    /// Runs PreEnqueue; the first failure gates the pod.
    pub fn run_pre_enqueue(&self, pod: &PodInfo) -> Status {
        for p in &self.pre_enqueue {
            let s = p.pre_enqueue(pod);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs PreFilter; a rejection stops it, Skip marks the plugin's Filter as skipped.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> PreFilterOutcome {
        let mut result = PreFilterResult::default();
        let mut narrowed_by = Vec::new();
        for p in &self.pre_filter {
            let (r, s) = p.pre_filter(state, pod, snapshot);
            if s.is_skip() {
                state.skip_filter.insert(p.name());
                continue;
            }
            if !s.is_success() {
                let rejectors = if s.is_rejected() {
                    BTreeSet::from([p.name()])
                } else {
                    BTreeSet::new()
                };
                return PreFilterOutcome {
                    result,
                    status: s.with_plugin(p.name()),
                    rejectors,
                    narrowed_by: BTreeSet::new(),
                };
            }
            if let Some(r) = r.filter(|r| r.node_names.is_some()) {
                narrowed_by.push(p.name());
                result = result.merge(r);
                if result.node_names.as_ref().is_some_and(|n| n.is_empty()) {
                    let msg = match narrowed_by.as_slice() {
                        [one] => format!("node(s) didn't satisfy plugin {one}"),
                        many => format!(
                            "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                            many.join(" ")
                        ),
                    };
                    let narrowed_by: BTreeSet<&'static str> = narrowed_by.into_iter().collect();
                    return PreFilterOutcome {
                        result,
                        status: Status::unresolvable(msg),
                        rejectors: narrowed_by.clone(),
                        narrowed_by,
                    };
                }
            }
        }
        state.filter_enabled = self
            .filter
            .iter()
            .map(|p| !state.skip_filter.contains(p.name()))
            .collect();
        PreFilterOutcome {
            result,
            status: Status::success(),
            rejectors: BTreeSet::new(),
            narrowed_by: narrowed_by.into_iter().collect(),
        }
    }

    /// Runs PreFilter's AddPod extension of every non-skipped plugin.
    pub fn run_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        for p in &self.pre_filter {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let s = p.add_pod(state, pod, added, node);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs PreFilter's RemovePod extension of every non-skipped plugin.
    pub fn run_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        for p in &self.pre_filter {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let s = p.remove_pod(state, pod, removed, node);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs Filter; the first plugin that does not succeed decides.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for (i, p) in self.filter.iter().enumerate() {
            let enabled = match state.filter_enabled.get(i) {
                Some(e) => *e,
                None => !state.skip_filter.contains(p.name()),
            };
            if !enabled {
                continue;
            }
            let s = p.filter(state, pod, node);
            if !s.is_success() {
                let s = if s.is_rejected() {
                    s
                } else {
                    Status::error(s.message())
                };
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Upstream's `RunFilterPluginsWithNominatedPods`: when pods of equal or higher priority are
    /// nominated to the node, the pod must fit with them added, and also without them (some
    /// filters, like affinity, could pass only because of them).
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &NominatedPods,
    ) -> Status {
        if nominated.is_empty() {
            return self.run_filter(state, pod, node);
        }
        let others: Vec<&Arc<PodInfo>> = nominated
            .get(node.name())
            .into_iter()
            .flatten()
            .filter(|n| n.uid != pod.uid && n.priority >= pod.priority)
            .collect();
        if others.is_empty() {
            return self.run_filter(state, pod, node);
        }
        let mut state_with = state.clone_state();
        let mut node_with = node.clone();
        for n in others {
            node_with.add_pod(Arc::clone(n));
            let s = self.run_add_pod(&mut state_with, pod, n, &node_with);
            if !s.is_success() {
                return s;
            }
        }
        let s = self.run_filter(&state_with, pod, &node_with);
        if !s.is_success() {
            return s;
        }
        self.run_filter(state, pod, node)
    }

    /// Runs PostFilter until one succeeds; otherwise an Unschedulable status with every reason.
    pub fn run_post_filter(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        let mut result = None;
        let mut reasons = Vec::new();
        let mut rejector = "";
        for p in &self.post_filter {
            let (r, s) = p.post_filter(ctx, state, pod, statuses);
            match s.code {
                Code::Success => return (r, s.with_plugin(p.name())),
                Code::UnschedulableAndUnresolvable => return (r, s.with_plugin(p.name())),
                Code::Unschedulable => {}
                _ => return (None, Status::error(s.message()).with_plugin(p.name())),
            }
            if r.is_some() {
                result = r;
            }
            reasons.extend(s.reasons);
            if rejector.is_empty() {
                rejector = p.name();
            }
        }
        let status = Status {
            code: Code::Unschedulable,
            reasons,
            plugin: rejector,
        };
        (result, status)
    }

    /// Runs PreScore; Skip marks the plugin's Score as skipped.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        for p in &self.pre_score {
            let s = p.pre_score(state, pod, nodes, snapshot);
            if s.is_skip() {
                state.skip_score.insert(p.name());
            } else if !s.is_success() {
                return Status::error(s.message()).with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs Score and NormalizeScore and sums the weighted scores per node.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for (p, weight) in &self.score {
            if state.skip_score.contains(p.name()) {
                continue;
            }
            for (i, n) in nodes.iter().enumerate() {
                scores[i] = p
                    .score(state, pod, n)
                    .map_err(|s| s.with_plugin(p.name()))?;
            }
            if let Some(norm) = p.normalizer() {
                let s = norm.normalize_score(state, pod, nodes, &mut scores);
                if !s.is_success() {
                    return Err(Status::error(s.message()).with_plugin(p.name()));
                }
            }
            for (i, s) in scores.iter().enumerate() {
                if !(0..=MAX_NODE_SCORE).contains(s) {
                    let msg = format!(
                        "plugin {:?} returns an invalid score {s}, it should in the range of [0, {MAX_NODE_SCORE}] after normalizing",
                        p.name()
                    );
                    return Err(Status::error(msg).with_plugin(p.name()));
                }
                totals[i] += s * weight;
            }
        }
        Ok(totals)
    }

    /// Runs Reserve; on failure every plugin is unreserved.
    pub fn run_reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.reserve {
            let s = p.reserve(state, pod, node);
            if !s.is_success() {
                self.run_unreserve(state, pod, node);
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs Unreserve in reverse order.
    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            p.unreserve(state, pod, node);
        }
    }

    /// Runs Permit; returns Wait with the shortest timeout when a plugin waits.
    pub fn run_permit(&self, state: &CycleState, pod: &PodInfo, node: &str) -> (Status, Duration) {
        let mut wait: Option<(Status, Duration)> = None;
        for p in &self.permit {
            let (s, timeout) = p.permit(state, pod, node);
            match s.code {
                Code::Success | Code::Skip => {}
                Code::Wait => {
                    let shorter = wait.as_ref().is_none_or(|(_, t)| timeout < *t);
                    if shorter {
                        wait = Some((s.with_plugin(p.name()), timeout));
                    }
                }
                _ => return (s.with_plugin(p.name()), Duration::ZERO),
            }
        }
        wait.unwrap_or((Status::success(), Duration::ZERO))
    }

    /// Runs PreBind; the first failure aborts.
    pub async fn run_pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.pre_bind {
            let s = p.pre_bind(state, pod, node).await;
            if !s.is_success() && !s.is_skip() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs Bind until a plugin does not skip.
    pub async fn run_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.bind {
            let s = p.bind(state, pod, node).await;
            if !s.is_skip() {
                return s.with_plugin(p.name());
            }
        }
        Status::error("no bind plugin bound the pod")
    }

    /// Runs PostBind.
    pub fn run_post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        for p in &self.post_bind {
            p.post_bind(state, pod, node);
        }
    }
}
