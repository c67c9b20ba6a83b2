//! The hard constraints: PreFilter counts matching pods per domain, Filter checks the skew.

use std::collections::HashMap;

use super::{
    Constraint, ERR_REASON_CONSTRAINTS_NOT_MATCH, ERR_REASON_NODE_LABEL_NOT_MATCH, NAME,
    PodTopologySpread, count_matching, node_has_all_keys,
};
use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreFilterResult, Status};
use crate::nodeinfo::NodeInfo;
use crate::plugins::node_affinity::RequiredNodeAffinity;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";

/// The two domains with the fewest matching pods (upstream's `criticalPaths`).
#[derive(Debug, Clone)]
struct CriticalPaths([(String, i64); 2]);

impl Default for CriticalPaths {
    fn default() -> Self {
        let max = (String::new(), i64::from(i32::MAX));
        Self([max.clone(), max])
    }
}

impl CriticalPaths {
    fn update(&mut self, value: &str, num: i64) {
        let p = &mut self.0;
        let i = if p[0].0 == value {
            Some(0)
        } else if p[1].0 == value {
            Some(1)
        } else {
            None
        };
        match i {
            Some(i) => {
                p[i].1 = num;
                if p[0].1 > p[1].1 {
                    p.swap(0, 1);
                }
            }
            None if num < p[0].1 => {
                p[1] = p[0].clone();
                p[0] = (value.to_owned(), num);
            }
            None if num < p[1].1 => p[1] = (value.to_owned(), num),
            None => {}
        }
    }

    fn min(&self) -> i64 {
        self.0[0].1
    }
}

#[derive(Debug, Clone)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per topology value of eligible nodes.
    counts: Vec<HashMap<String, i64>>,
    critical: Vec<CriticalPaths>,
    required: RequiredNodeAffinity,
}

impl PreFilterState {
    fn min_match(&self, i: usize) -> i64 {
        let c = &self.constraints[i];
        if (self.counts[i].len() as i64) < i64::from(c.min_domains) {
            return 0;
        }
        self.critical[i].min()
    }

    fn update_with_pod(&mut self, preemptor: &PodInfo, pod: &PodInfo, node: &NodeInfo, delta: i64) {
        if pod.namespace() != preemptor.namespace() || node.node().is_none() {
            return;
        }
        if !node_has_all_keys(node, &self.constraints) {
            return;
        }
        for i in 0..self.constraints.len() {
            let c = &self.constraints[i];
            if !c.selector.matches(pod.labels())
                || !c.includes_node(preemptor, node, &self.required)
            {
                continue;
            }
            let value = node
                .labels()
                .get(&c.topology_key)
                .cloned()
                .unwrap_or_default();
            let n = self.counts[i].entry(value.clone()).or_default();
            *n += delta;
            let n = *n;
            self.critical[i].update(&value, n);
        }
    }
}

fn build_state(constraints: Vec<Constraint>, pod: &PodInfo, snapshot: &Snapshot) -> PreFilterState {
    let required = RequiredNodeAffinity::of(&pod.pod);
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    for node in snapshot.iter() {
        if !node_has_all_keys(node, &constraints) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if !c.includes_node(pod, node, &required) {
                continue;
            }
            let value = node
                .labels()
                .get(&c.topology_key)
                .cloned()
                .unwrap_or_default();
            *counts[i].entry(value).or_default() +=
                count_matching(node, &c.selector, pod.namespace());
        }
    }
    let critical = counts
        .iter()
        .map(|m| {
            let mut p = CriticalPaths::default();
            for (v, n) in m {
                p.update(v, *n);
            }
            p
        })
        .collect();
    PreFilterState {
        constraints,
        counts,
        critical,
        required,
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let constraints = match self.pod_constraints(&pod.pod, "DoNotSchedule") {
            Ok(c) => c,
            Err(e) => return (None, Status::error(e)),
        };
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, build_state(constraints, pod, snapshot));
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.update_with_pod(pod, added, node, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.update_with_pod(pod, removed, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::error(format!("{NAME}: PreFilter state missing"));
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.selector.matches(pod.labels()));
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
            let skew = matching + self_match - s.min_match(i);
            if skew > i64::from(c.max_skew) {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::framework::Code;
    use crate::listers::Listers;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn pod_on(name: &str, node: &str) -> Arc<PodInfo> {
        PodBuilder::new(name).label("app", "web").node(node).arc()
    }

    fn zones() -> Snapshot {
        Snapshot::from_nodes([
            NodeBuilder::new("a1")
                .zone("a")
                .info_with(&[pod_on("p1", "a1"), pod_on("p2", "a1")]),
            NodeBuilder::new("a2")
                .zone("a")
                .info_with(&[pod_on("p3", "a2")]),
            NodeBuilder::new("b1")
                .zone("b")
                .info_with(&[pod_on("p4", "b1")]),
            NodeBuilder::new("c1").zone("c").info(),
            NodeBuilder::new("nolabel").info(),
        ])
    }

    fn filter_all(
        plugin: &PodTopologySpread,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Vec<(String, Code)> {
        let mut state = CycleState::new();
        let (_, s) = plugin.pre_filter(&mut state, pod, snapshot);
        assert!(s.is_success(), "{s:?}");
        snapshot
            .iter()
            .map(|n| (n.name().to_owned(), plugin.filter(&state, pod, n).code))
            .collect()
    }

    #[test]
    fn zone_skew_is_enforced() {
        let plugin = PodTopologySpread::new(Listers::empty());
        let pod = PodBuilder::new("new")
            .label("app", "web")
            .spread(
                1,
                "topology.kubernetes.io/zone",
                "DoNotSchedule",
                &[("app", "web")],
            )
            .info();
        let got = filter_all(&plugin, &pod, &zones());
        // counts a=3 b=1 c=0; min 0; self match 1: a -> 4 > 1, b -> 2 > 1, c -> 1 ok.
        let want = [
            ("a1", Code::Unschedulable),
            ("a2", Code::Unschedulable),
            ("b1", Code::Unschedulable),
            ("c1", Code::Success),
            ("nolabel", Code::UnschedulableAndUnresolvable),
        ];
        assert_eq!(got, want.map(|(n, c)| (n.to_owned(), c)));
    }

    #[test]
    fn hostname_skew_with_larger_max_skew() {
        let plugin = PodTopologySpread::new(Listers::empty());
        let pod = PodBuilder::new("new")
            .label("app", "web")
            .spread(
                2,
                "kubernetes.io/hostname",
                "DoNotSchedule",
                &[("app", "web")],
            )
            .info();
        let got = filter_all(&plugin, &pod, &zones());
        // per host: a1=2 a2=1 b1=1 c1=0 nolabel=0 (has hostname) -> min 0; a1: 3 > 2.
        let codes: Vec<Code> = got.into_iter().map(|(_, c)| c).collect();
        assert_eq!(
            codes,
            [
                Code::Unschedulable,
                Code::Success,
                Code::Success,
                Code::Success,
                Code::Success
            ]
        );
    }

    #[test]
    fn pods_without_hard_constraints_skip() {
        let plugin = PodTopologySpread::new(Listers::empty());
        let pod = PodBuilder::new("new")
            .spread(
                1,
                "kubernetes.io/hostname",
                "ScheduleAnyway",
                &[("app", "web")],
            )
            .info();
        let (_, s) = plugin.pre_filter(&mut CycleState::new(), &pod, &zones());
        assert!(s.is_skip());
    }

    #[test]
    fn node_affinity_limits_counted_domains_and_remove_pod_updates_counts() {
        let plugin = PodTopologySpread::new(Listers::empty());
        let pod = PodBuilder::new("new")
            .label("app", "web")
            .node_affinity_in("topology.kubernetes.io/zone", "In", &["a", "b"])
            .spread(
                1,
                "topology.kubernetes.io/zone",
                "DoNotSchedule",
                &[("app", "web")],
            )
            .info();
        let snapshot = zones();
        let mut state = CycleState::new();
        plugin.pre_filter(&mut state, &pod, &snapshot);
        let b1 = snapshot
            .get("b1")
            .cloned()
            .unwrap_or_else(|| Arc::new(NodeInfo::new("x")));
        // Only zones a (3) and b (1) count: min 1, b -> 1 + 1 - 1 = 1 ok.
        assert_eq!(plugin.filter(&state, &pod, &b1).code, Code::Success);
        let a1 = snapshot
            .get("a1")
            .cloned()
            .unwrap_or_else(|| Arc::new(NodeInfo::new("x")));
        assert_eq!(plugin.filter(&state, &pod, &a1).code, Code::Unschedulable);
        for p in a1.pods.clone() {
            plugin.remove_pod(&mut state, &pod, &p, &a1);
        }
        // a drops to 1.
        assert_eq!(plugin.filter(&state, &pod, &a1).code, Code::Success);
    }
}
