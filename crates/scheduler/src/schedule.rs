//! Finding a node for one pod (upstream's `schedulePod`): PreFilter, Filter over a sample of
//! nodes starting where the last cycle stopped, PreScore, Score, then the best node with random
//! tie-breaking. Pure over the snapshot: no IO.

use std::sync::Arc;

use crate::framework::{CycleState, Diagnosis, FitError, Framework, NominatedPods, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// Fewer nodes than this are all evaluated (upstream's `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Where the pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node.
    pub node: String,
    /// How many nodes Filter evaluated.
    pub evaluated: usize,
    /// How many of them fit.
    pub feasible: usize,
}

/// Why no node was chosen.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// The cluster has no node (upstream's `ErrNoNodesAvailable`).
    NoNodes,
    /// No node fits.
    Fit(Box<FitError>),
    /// A plugin failed.
    Internal(Status),
}

/// Upstream's `numFeasibleNodesToFind`: all nodes below 100; otherwise `percentage`% of them
/// (adaptive by default: 50% minus 1% per 125 nodes, at least 5%), but at least 100.
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let percentage = match percentage {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => 50usize
            .saturating_sub(all / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The scheduling algorithm and the rotating start index it keeps between cycles.
#[derive(Debug, Default)]
pub struct Algorithm {
    /// `percentageOfNodesToScore` (`None` or 0: adaptive).
    pub percentage: Option<u32>,
    next_start: usize,
}

impl Algorithm {
    /// An algorithm sampling `percentage` of the nodes.
    pub fn new(percentage: Option<u32>) -> Self {
        Self {
            percentage,
            next_start: 0,
        }
    }

    /// Finds the node for `pod`.
    pub fn schedule(
        &mut self,
        fw: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nominated: &NominatedPods,
    ) -> Result<ScheduleResult, ScheduleError> {
        if snapshot.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        let (feasible, diagnosis, evaluated) =
            self.find_feasible(fw, state, pod, snapshot, nominated)?;
        if feasible.is_empty() {
            let num_all_nodes = snapshot.len();
            return Err(ScheduleError::Fit(Box::new(FitError {
                num_all_nodes,
                diagnosis,
            })));
        }
        if let [only] = feasible.as_slice() {
            return Ok(ScheduleResult {
                node: only.name().to_owned(),
                evaluated,
                feasible: 1,
            });
        }
        let status = fw.run_pre_score(state, pod, &feasible, snapshot);
        if !status.is_success() {
            return Err(ScheduleError::Internal(status));
        }
        let scores = fw
            .run_score(state, pod, &feasible)
            .map_err(ScheduleError::Internal)?;
        let best = select_host(&scores);
        Ok(ScheduleResult {
            node: feasible[best].name().to_owned(),
            evaluated,
            feasible: feasible.len(),
        })
    }

    fn find_feasible(
        &mut self,
        fw: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nominated: &NominatedPods,
    ) -> Result<(Vec<Arc<NodeInfo>>, Diagnosis, usize), ScheduleError> {
        let mut diagnosis = Diagnosis::default();
        let pre = fw.run_pre_filter(state, pod, snapshot);
        if !pre.status.is_success() {
            if !pre.status.is_rejected() {
                return Err(ScheduleError::Internal(pre.status));
            }
            diagnosis.pre_filter_msg = pre.status.message();
            diagnosis.node_to_status.set_absent(pre.status);
            diagnosis.unschedulable_plugins = pre.rejectors;
            return Ok((Vec::new(), diagnosis, 0));
        }
        if let Some(node) =
            self.nominated_node_fits(fw, state, pod, snapshot, nominated, &pre.result.node_names)
        {
            return Ok((vec![node], diagnosis, 1));
        }
        let narrowed: Option<Vec<Arc<NodeInfo>>> = pre.result.node_names.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|n| snapshot.get(n).cloned())
                .collect()
        });
        if narrowed.is_some() {
            let plugins: Vec<&str> = pre.narrowed_by.iter().copied().collect();
            let msg = format!("node(s) didn't satisfy plugin(s) [{}]", plugins.join(" "));
            diagnosis
                .node_to_status
                .set_absent(Status::unresolvable(msg));
            diagnosis
                .unschedulable_plugins
                .extend(pre.narrowed_by.iter().copied());
        }
        let total = narrowed.as_ref().map_or(snapshot.len(), Vec::len);
        let wanted = num_feasible_nodes_to_find(self.percentage, total);
        let nodes: Box<dyn Iterator<Item = &Arc<NodeInfo>>> = match &narrowed {
            Some(list) => Box::new(list.iter()),
            None => Box::new(snapshot.iter_from(self.next_start)),
        };
        let mut feasible = Vec::with_capacity(wanted.min(total));
        let mut processed = 0;
        for node in nodes {
            processed += 1;
            let s = fw.run_filter_with_nominated(state, pod, node, nominated);
            if s.is_success() {
                feasible.push(Arc::clone(node));
                if feasible.len() >= wanted {
                    break;
                }
            } else if s.is_rejected() {
                diagnosis.unschedulable_plugins.insert(s.plugin);
                diagnosis.node_to_status.set(node.name(), s);
            } else {
                return Err(ScheduleError::Internal(s));
            }
        }
        if narrowed.is_none() {
            self.next_start = (self.next_start + processed) % snapshot.len();
        }
        Ok((feasible, diagnosis, processed))
    }

    /// Upstream's `evaluateNominatedNode`: a pod nominated by an earlier preemption tries that
    /// node first.
    fn nominated_node_fits(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nominated: &NominatedPods,
        allowed: &Option<std::collections::BTreeSet<String>>,
    ) -> Option<Arc<NodeInfo>> {
        let name = pod
            .pod
            .status
            .as_ref()?
            .nominated_node_name
            .as_deref()
            .filter(|n| !n.is_empty())?;
        if allowed.as_ref().is_some_and(|a| !a.contains(name)) {
            return None;
        }
        let node = snapshot.get(name)?;
        fw.run_filter_with_nominated(state, pod, node, nominated)
            .is_success()
            .then(|| Arc::clone(node))
    }
}

/// The index of the highest score; ties are broken uniformly at random (reservoir sampling).
pub fn select_host(scores: &[i64]) -> usize {
    let mut best = 0;
    let mut ties = 0u32;
    let mut max = i64::MIN;
    for (i, s) in scores.iter().enumerate() {
        if *s > max {
            max = *s;
            best = i;
            ties = 1;
        } else if *s == max {
            ties += 1;
            if rand::random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
