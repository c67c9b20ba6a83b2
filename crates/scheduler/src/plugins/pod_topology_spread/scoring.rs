//! The soft constraints: nodes in domains with fewer matching pods score higher.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{
    Constraint, LABEL_HOSTNAME, NAME, PodTopologySpread, count_matching, node_has_all_keys,
};
use crate::framework::{
    CycleState, MAX_NODE_SCORE, NormalizeScorePlugin, PreScorePlugin, ScorePlugin, Status,
};
use crate::nodeinfo::NodeInfo;
use crate::plugins::node_affinity::RequiredNodeAffinity;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

#[derive(Debug, Clone)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    ignored: HashSet<String>,
    /// Per constraint (except hostname, counted per node at Score): pods per topology value.
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

/// Upstream's `topologyNormalizingWeight`.
fn normalizing_weight(size: usize) -> f64 {
    ((size + 2) as f64).ln()
}

/// Upstream's `scoreForCount`.
fn score_for_count(count: i64, max_skew: i32, weight: f64) -> f64 {
    count as f64 * weight + f64::from(max_skew - 1)
}

fn init_state(
    constraints: Vec<Constraint>,
    nodes: &[Arc<NodeInfo>],
    require_all: bool,
) -> PreScoreState {
    let mut ignored = HashSet::new();
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    for node in nodes {
        if require_all && !node_has_all_keys(node, &constraints) {
            ignored.insert(node.name().to_owned());
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key == LABEL_HOSTNAME {
                continue;
            }
            let value = node
                .labels()
                .get(&c.topology_key)
                .cloned()
                .unwrap_or_default();
            counts[i].entry(value).or_insert(0);
        }
    }
    let weights = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let size = if c.topology_key == LABEL_HOSTNAME {
                nodes.len() - ignored.len()
            } else {
                counts[i].len()
            };
            normalizing_weight(size)
        })
        .collect();
    PreScoreState {
        constraints,
        ignored,
        counts,
        weights,
    }
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        if nodes.is_empty() || snapshot.is_empty() {
            return Status::skip();
        }
        let constraints = match self.pod_constraints(&pod.pod, "ScheduleAnyway") {
            Ok(c) => c,
            Err(e) => return Status::error(e),
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        let has_own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let require_all = has_own || !self.system_defaulted;
        let mut s = init_state(constraints, nodes, require_all);
        let required = RequiredNodeAffinity::of(&pod.pod);
        for node in snapshot.iter() {
            if require_all && !node_has_all_keys(node, &s.constraints) {
                continue;
            }
            for (i, c) in s.constraints.iter().enumerate() {
                if !c.includes_node(pod, node, &required) {
                    continue;
                }
                let value = node
                    .labels()
                    .get(&c.topology_key)
                    .map(String::as_str)
                    .unwrap_or_default();
                if let Some(n) = s.counts[i].get_mut(value) {
                    *n += count_matching(node, &c.selector, pod.namespace());
                }
            }
        }
        state.write(PRE_SCORE_KEY, s);
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Err(Status::error(format!("{NAME}: PreScore state missing")));
        };
        if s.ignored.contains(node.name()) {
            return Ok(0);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(node, &c.selector, pod.namespace())
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += score_for_count(count, c.max_skew, s.weights[i]);
        }
        Ok(score.round() as i64)
    }

    fn normalizer(&self) -> Option<&dyn NormalizeScorePlugin> {
        Some(self)
    }
}

impl NormalizeScorePlugin for PodTopologySpread {
    fn normalize_score(
        &self,
        state: &CycleState,
        _: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Status::error(format!("{NAME}: PreScore state missing"));
        };
        let counted = || {
            nodes
                .iter()
                .zip(scores.iter())
                .filter(|(n, _)| !s.ignored.contains(n.name()))
                .map(|(_, v)| *v)
        };
        let min = counted().min().unwrap_or(0);
        let max = counted().max().unwrap_or(0);
        for (n, v) in nodes.iter().zip(scores.iter_mut()) {
            *v = if s.ignored.contains(n.name()) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *v) / max
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
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::watcher;

    fn web(name: &str, node: &str) -> Arc<PodInfo> {
        PodBuilder::new(name).label("app", "web").node(node).arc()
    }

    fn scores(plugin: &PodTopologySpread, pod: &PodInfo, snapshot: &Snapshot) -> Option<Vec<i64>> {
        let nodes: Vec<Arc<NodeInfo>> = snapshot.iter().cloned().collect();
        let mut state = CycleState::new();
        if plugin
            .pre_score(&mut state, pod, &nodes, snapshot)
            .is_skip()
        {
            return None;
        }
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| plugin.score(&state, pod, n).unwrap_or(-1))
            .collect();
        plugin.normalize_score(&state, pod, &nodes, &mut s);
        Some(s)
    }

    #[test]
    fn soft_constraint_prefers_emptier_domains() {
        let plugin = PodTopologySpread::new(Listers::empty());
        let snapshot = Snapshot::from_nodes([
            NodeBuilder::new("a").info_with(&[web("p1", "a"), web("p2", "a")]),
            NodeBuilder::new("b").info_with(&[web("p3", "b")]),
            NodeBuilder::new("c").info(),
        ]);
        let pod = PodBuilder::new("new")
            .label("app", "web")
            .spread(1, LABEL_HOSTNAME, "ScheduleAnyway", &[("app", "web")])
            .info();
        // weight ln(5)=1.609: raw a=round(3.22)=3, b=2, c=0; normalized 100*(3+0-v)/3.
        assert_eq!(scores(&plugin, &pod, &snapshot), Some(vec![0, 33, 100]));
    }

    #[test]
    fn system_defaults_apply_to_pods_selected_by_a_service() {
        let (listers, mut w) = Listers::new();
        let plugin = PodTopologySpread::new(listers);
        let snapshot = Snapshot::from_nodes([
            NodeBuilder::new("a")
                .zone("z1")
                .info_with(&[web("p1", "a")]),
            NodeBuilder::new("b").zone("z2").info(),
        ]);
        let pod = PodBuilder::new("new").label("app", "web").info();
        assert_eq!(
            scores(&plugin, &pod, &snapshot),
            None,
            "no service selects the pod yet"
        );
        w.services
            .apply_watcher_event(&watcher::Event::Apply(Service {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    selector: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..Default::default()
                }),
                status: None,
            }));
        let s = scores(&plugin, &pod, &snapshot).unwrap_or_default();
        assert!(s[1] > s[0], "the node without a matching pod wins: {s:?}");
    }
}
