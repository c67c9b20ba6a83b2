//! Required terms: PreFilter counts matching pods per topology pair; Filter checks them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    ERR_REASON_AFFINITY, ERR_REASON_ANTI_AFFINITY, ERR_REASON_EXISTING_ANTI_AFFINITY,
    InterPodAffinity, NAME, PairCounts,
};
use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreFilterResult, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{AffinityTerm, PodInfo};
use crate::snapshot::Snapshot;

const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";

#[derive(Debug, Clone)]
struct PreFilterState {
    /// Existing pods' anti-affinity terms that select the incoming pod.
    existing_anti: PairCounts,
    /// Pods matching all of the incoming pod's affinity terms.
    affinity: PairCounts,
    /// Pods matching the incoming pod's anti-affinity terms.
    anti: PairCounts,
    affinity_terms: Vec<AffinityTerm>,
    anti_terms: Vec<AffinityTerm>,
    namespace_labels: BTreeMap<String, String>,
    pod: Arc<k8s_openapi::api::core::v1::Pod>,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(&pod.pod, None))
}

impl PreFilterState {
    fn update_with_pod(&mut self, other: &PodInfo, node: &NodeInfo, delta: i64) {
        for t in &other.required_anti_affinity {
            if t.matches(&self.pod, Some(&self.namespace_labels)) {
                self.existing_anti.update(node, &t.topology_key, delta);
            }
        }
        if matches_all(&self.affinity_terms, other) {
            for t in &self.affinity_terms {
                self.affinity.update(node, &t.topology_key, delta);
            }
        }
        for t in &self.anti_terms {
            if t.matches(&other.pod, None) {
                self.anti.update(node, &t.topology_key, delta);
            }
        }
    }

    fn satisfies_affinity(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        let labels = node.labels();
        let mut pods_exist = true;
        for t in &self.affinity_terms {
            let Some(value) = labels.get(&t.topology_key) else {
                return false;
            };
            if self.affinity.get(&t.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere with the topology.
        pods_exist || (self.affinity.is_empty() && matches_all(&self.affinity_terms, pod))
    }

    fn satisfies_anti_affinity(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.anti_terms.iter().all(|t| {
            labels
                .get(&t.topology_key)
                .is_none_or(|v| self.anti.get(&t.topology_key, v) <= 0)
        })
    }

    fn satisfies_existing_anti_affinity(&self, node: &NodeInfo) -> bool {
        self.existing_anti.is_empty()
            || node
                .labels()
                .iter()
                .all(|(k, v)| self.existing_anti.get(k, v) <= 0)
    }
}

impl InterPodAffinity {
    fn build_state(&self, pod: &PodInfo, snapshot: &Snapshot) -> PreFilterState {
        let mut s = PreFilterState {
            existing_anti: PairCounts::default(),
            affinity: PairCounts::default(),
            anti: PairCounts::default(),
            affinity_terms: pod
                .required_affinity
                .iter()
                .map(|t| self.merge_namespaces(t))
                .collect(),
            anti_terms: pod
                .required_anti_affinity
                .iter()
                .map(|t| self.merge_namespaces(t))
                .collect(),
            namespace_labels: self.namespace_labels(pod.namespace()),
            pod: Arc::clone(&pod.pod),
        };
        let own_terms = !s.affinity_terms.is_empty() || !s.anti_terms.is_empty();
        if !own_terms && !snapshot.has_pods_with_required_anti_affinity() {
            return s;
        }
        for node in snapshot.iter() {
            if !own_terms && !node.has_pods_with_required_anti_affinity() {
                continue;
            }
            for other in &node.pods {
                if own_terms {
                    s.update_with_pod(other, node, 1);
                } else {
                    for t in &other.required_anti_affinity {
                        if t.matches(&s.pod, Some(&s.namespace_labels)) {
                            s.existing_anti.update(node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
        s
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if let Some(e) = &pod.parse_error {
            return (None, Status::error(format!("parsing pod: {e}")));
        }
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !own_terms && !snapshot.has_pods_with_required_anti_affinity() {
            return (None, Status::skip());
        }
        let s = self.build_state(pod, snapshot);
        if s.affinity_terms.is_empty() && s.anti_terms.is_empty() && s.existing_anti.is_empty() {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, s);
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.update_with_pod(added, node, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.update_with_pod(removed, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::error(format!("{NAME}: PreFilter state missing"));
        };
        if !s.satisfies_affinity(pod, node) {
            return Status::unresolvable(ERR_REASON_AFFINITY);
        }
        if !s.satisfies_anti_affinity(node) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY);
        }
        if !s.satisfies_existing_anti_affinity(node) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::listers::Listers;
    use crate::testing::{NodeBuilder, PodBuilder};

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn snapshot() -> Snapshot {
        let db = PodBuilder::new("db").label("app", "db").node("a1").arc();
        let guard = PodBuilder::new("guard")
            .label("app", "guard")
            .pod_anti_affinity_required(ZONE, &[("app", "web")])
            .node("b1")
            .arc();
        Snapshot::from_nodes([
            NodeBuilder::new("a1").zone("a").info_with(&[db]),
            NodeBuilder::new("a2").zone("a").info(),
            NodeBuilder::new("b1").zone("b").info_with(&[guard]),
            NodeBuilder::new("c1").zone("c").info(),
            NodeBuilder::new("bare").info(),
        ])
    }

    fn filter_all(pod: PodBuilder) -> Vec<Code> {
        let plugin = InterPodAffinity::new(Listers::empty());
        let snapshot = snapshot();
        let pod = pod.info();
        let mut state = CycleState::new();
        let (_, s) = plugin.pre_filter(&mut state, &pod, &snapshot);
        if s.is_skip() {
            return vec![Code::Success; snapshot.len()];
        }
        snapshot
            .iter()
            .map(|n| plugin.filter(&state, &pod, n).code)
            .collect()
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let codes = filter_all(PodBuilder::new("p").pod_affinity_required(ZONE, &[("app", "db")]));
        use Code::*;
        assert_eq!(
            codes,
            [
                Success,
                Success,
                UnschedulableAndUnresolvable,
                UnschedulableAndUnresolvable,
                UnschedulableAndUnresolvable
            ]
        );
    }

    #[test]
    fn first_pod_of_a_self_affine_group_goes_anywhere_with_the_topology() {
        let codes = filter_all(
            PodBuilder::new("p")
                .label("app", "cache")
                .pod_affinity_required(ZONE, &[("app", "cache")]),
        );
        use Code::*;
        assert_eq!(
            codes,
            [
                Success,
                Success,
                Success,
                Success,
                UnschedulableAndUnresolvable
            ]
        );
    }

    #[test]
    fn required_anti_affinity_avoids_domains_with_matching_pods() {
        let codes =
            filter_all(PodBuilder::new("p").pod_anti_affinity_required(ZONE, &[("app", "db")]));
        use Code::*;
        assert_eq!(
            codes,
            [Unschedulable, Unschedulable, Success, Success, Success]
        );
    }

    #[test]
    fn existing_pods_anti_affinity_is_respected() {
        let codes = filter_all(PodBuilder::new("p").label("app", "web"));
        use Code::*;
        assert_eq!(codes, [Success, Success, Unschedulable, Success, Success]);
        let codes = filter_all(PodBuilder::new("p").label("app", "web").namespace("other"));
        assert_eq!(codes, [Success; 5], "terms select their own namespace only");
    }

    #[test]
    fn remove_pod_lifts_anti_affinity() {
        let plugin = InterPodAffinity::new(Listers::empty());
        let snapshot = snapshot();
        let pod = PodBuilder::new("p")
            .pod_anti_affinity_required(ZONE, &[("app", "db")])
            .info();
        let mut state = CycleState::new();
        plugin.pre_filter(&mut state, &pod, &snapshot);
        let a1 = snapshot
            .get("a1")
            .cloned()
            .unwrap_or_else(|| Arc::new(NodeInfo::new("x")));
        assert_eq!(plugin.filter(&state, &pod, &a1).code, Code::Unschedulable);
        plugin.remove_pod(&mut state, &pod, &a1.pods[0], &a1);
        assert_eq!(plugin.filter(&state, &pod, &a1).code, Code::Success);
    }
}
