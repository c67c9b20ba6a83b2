//! Preferred terms: each existing pod adds or subtracts term weights to its node's topology
//! domains; a node scores the sum over its labels, normalized to 0–100 between min and max.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{HARD_POD_AFFINITY_WEIGHT, InterPodAffinity, NAME};
use crate::framework::{
    CycleState, MAX_NODE_SCORE, NormalizeScorePlugin, PreScorePlugin, ScorePlugin, Status,
};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{AffinityTerm, PodInfo, WeightedAffinityTerm};
use crate::snapshot::Snapshot;

const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

/// Scores per topology key and value.
#[derive(Debug, Clone, Default)]
struct TopologyScore(HashMap<String, HashMap<String, i64>>);

impl TopologyScore {
    fn add_term(
        &mut self,
        term: &AffinityTerm,
        weight: i64,
        pod: &PodInfo,
        ns_labels: Option<&BTreeMap<String, String>>,
        node: &NodeInfo,
    ) {
        if !term.matches(&pod.pod, ns_labels) {
            return;
        }
        if let Some(value) = node.labels().get(&term.topology_key) {
            *self
                .0
                .entry(term.topology_key.clone())
                .or_default()
                .entry(value.clone())
                .or_default() += weight;
        }
    }

    fn add_weighted(
        &mut self,
        terms: &[WeightedAffinityTerm],
        sign: i64,
        pod: &PodInfo,
        ns_labels: Option<&BTreeMap<String, String>>,
        node: &NodeInfo,
    ) {
        for t in terms {
            self.add_term(&t.term, sign * i64::from(t.weight), pod, ns_labels, node);
        }
    }
}

#[derive(Debug, Clone)]
struct PreScoreState {
    scores: TopologyScore,
}

struct Incoming<'a> {
    pod: &'a PodInfo,
    preferred: Vec<WeightedAffinityTerm>,
    preferred_anti: Vec<WeightedAffinityTerm>,
    ns_labels: BTreeMap<String, String>,
}

/// Upstream's `processExistingPod`.
fn process_existing(
    scores: &mut TopologyScore,
    incoming: &Incoming<'_>,
    existing: &PodInfo,
    node: &NodeInfo,
) {
    if node.labels().is_empty() {
        return;
    }
    scores.add_weighted(&incoming.preferred, 1, existing, None, node);
    scores.add_weighted(&incoming.preferred_anti, -1, existing, None, node);
    for t in &existing.required_affinity {
        scores.add_term(
            t,
            HARD_POD_AFFINITY_WEIGHT,
            incoming.pod,
            Some(&incoming.ns_labels),
            node,
        );
    }
    scores.add_weighted(
        &existing.preferred_affinity,
        1,
        incoming.pod,
        Some(&incoming.ns_labels),
        node,
    );
    scores.add_weighted(
        &existing.preferred_anti_affinity,
        -1,
        incoming.pod,
        Some(&incoming.ns_labels),
        node,
    );
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        if nodes.is_empty() {
            return Status::skip();
        }
        let has_constraints =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !has_constraints && !snapshot.has_pods_with_affinity() {
            return Status::skip();
        }
        let merge = |terms: &[WeightedAffinityTerm]| -> Vec<WeightedAffinityTerm> {
            terms
                .iter()
                .map(|t| WeightedAffinityTerm {
                    term: self.merge_namespaces(&t.term),
                    weight: t.weight,
                })
                .collect()
        };
        let incoming = Incoming {
            pod,
            preferred: merge(&pod.preferred_affinity),
            preferred_anti: merge(&pod.preferred_anti_affinity),
            ns_labels: self.namespace_labels(pod.namespace()),
        };
        let mut scores = TopologyScore::default();
        for node in snapshot.iter() {
            if !has_constraints && !node.has_pods_with_affinity() {
                continue;
            }
            for existing in &node.pods {
                if has_constraints || existing.has_affinity() {
                    process_existing(&mut scores, &incoming, existing, node);
                }
            }
        }
        if scores.0.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState { scores });
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Err(Status::error(format!("{NAME}: PreScore state missing")));
        };
        let labels = node.labels();
        Ok(s.scores
            .0
            .iter()
            .filter_map(|(key, values)| values.get(labels.get(key)?))
            .sum())
    }

    fn normalizer(&self) -> Option<&dyn NormalizeScorePlugin> {
        Some(self)
    }
}

impl NormalizeScorePlugin for InterPodAffinity {
    fn normalize_score(
        &self,
        state: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        if state.read::<PreScoreState>(PRE_SCORE_KEY).is_none() {
            return Status::success();
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listers::Listers;
    use crate::testing::{NodeBuilder, PodBuilder};

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn run(pod: PodBuilder, snapshot: &Snapshot) -> Option<Vec<i64>> {
        let plugin = InterPodAffinity::new(Listers::empty());
        let pod = pod.info();
        let nodes: Vec<Arc<NodeInfo>> = snapshot.iter().cloned().collect();
        let mut state = CycleState::new();
        if plugin
            .pre_score(&mut state, &pod, &nodes, snapshot)
            .is_skip()
        {
            return None;
        }
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| plugin.score(&state, &pod, n).unwrap_or(-1))
            .collect();
        plugin.normalize_score(&state, &pod, &nodes, &mut s);
        Some(s)
    }

    fn cluster() -> Snapshot {
        let db = PodBuilder::new("db").label("app", "db").node("a1").arc();
        let web = PodBuilder::new("web").label("app", "web").node("b1").arc();
        Snapshot::from_nodes([
            NodeBuilder::new("a1").zone("a").info_with(&[db]),
            NodeBuilder::new("a2").zone("a").info(),
            NodeBuilder::new("b1").zone("b").info_with(&[web]),
        ])
    }

    #[test]
    fn preferred_affinity_and_anti_affinity() {
        let pod = PodBuilder::new("p")
            .pod_affinity_preferred(10, ZONE, &[("app", "db")])
            .pod_anti_affinity_preferred(5, ZONE, &[("app", "web")]);
        // raw: zone a +10, zone b -5 -> normalized a: 100, b: 0.
        assert_eq!(run(pod, &cluster()), Some(vec![100, 100, 0]));
    }

    #[test]
    fn existing_pods_preferences_attract_the_pod() {
        let fan = PodBuilder::new("fan")
            .pod_affinity_preferred(7, ZONE, &[("app", "new")])
            .node("b1")
            .arc();
        let snapshot = Snapshot::from_nodes([
            NodeBuilder::new("a1").zone("a").info(),
            NodeBuilder::new("b1").zone("b").info_with(&[fan]),
        ]);
        assert_eq!(
            run(PodBuilder::new("p").label("app", "new"), &snapshot),
            Some(vec![0, 100])
        );
        assert_eq!(
            run(PodBuilder::new("p").label("app", "old"), &snapshot),
            None
        );
    }

    #[test]
    fn no_affinity_anywhere_skips() {
        assert_eq!(run(PodBuilder::new("p"), &cluster()), None);
    }
}
