//! NodeResourcesBalancedAllocation: prefers nodes where cpu and memory would be used in similar
//! proportions with the pod on them (1 - standard deviation of the usage fractions).

use std::sync::Arc;

use super::node_resources_fit::{SCORING_RESOURCES, allocatable_and_requested};
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// The plugin's name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// The BalancedAllocation plugin.
#[derive(Debug, Default)]
pub struct BalancedAllocation;

/// Upstream's `balancedResourceScorer`.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        f if f.len() > 2 => {
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            (f.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / f.len() as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        // Best-effort pods would otherwise all pile onto the same balanced node (upstream #129138).
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            return Status::skip();
        }
        Status::success()
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let mut requested = [0i64; SCORING_RESOURCES.len()];
        let mut allocatable = [0i64; SCORING_RESOURCES.len()];
        for (i, (name, _)) in SCORING_RESOURCES.iter().enumerate() {
            let (a, r) = allocatable_and_requested(node, name, pod.requests.get(name), true);
            allocatable[i] = a;
            requested[i] = r;
        }
        Ok(balanced_score(&requested, &allocatable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::node_resources_fit::score_all;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn prefers_balanced_nodes() {
        let pod = PodBuilder::new("p")
            .req("cpu", "1")
            .req("memory", "1Gi")
            .info();
        let existing = PodBuilder::new("e").req("cpu", "2").node("cpu-heavy").arc();
        let nodes = [
            NodeBuilder::new("idle")
                .alloc("cpu", "4")
                .alloc("memory", "4Gi")
                .info(),
            NodeBuilder::new("cpu-heavy")
                .alloc("cpu", "4")
                .alloc("memory", "4Gi")
                .info_with(&[existing]),
        ]
        .map(Arc::new);
        // idle: 0.25 and 0.25 -> 100; cpu-heavy: 0.75 and 0.25 -> 1 - 0.25 = 75.
        assert_eq!(
            score_all(&BalancedAllocation, &CycleState::new(), &pod, &nodes),
            [100, 75]
        );
    }

    #[test]
    fn skips_best_effort_pods_and_handles_three_resources() {
        let pod = PodBuilder::new("p").info();
        let s =
            BalancedAllocation.pre_score(&mut CycleState::new(), &pod, &[], &Snapshot::default());
        assert!(s.is_skip());
        assert_eq!(balanced_score(&[1, 2, 3], &[4, 4, 4]), 79);
        assert_eq!(
            balanced_score(&[5, 0], &[4, 0]),
            100,
            "a single resource is balanced"
        );
    }
}
