//! InterPodAffinity: required pod affinity and anti-affinity (the pod's own and existing pods'
//! anti-affinity towards it) filter nodes; preferred terms, and existing pods' terms towards the
//! pod, score them.

mod filtering;
mod scoring;

use std::collections::{BTreeMap, HashMap};

use crate::framework::{ActionType, ClusterEvent, EventResource, Plugin};
use crate::listers::Listers;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::AffinityTerm;

/// The plugin's name.
pub const NAME: &str = "InterPodAffinity";
/// Upstream's `ErrReasonExistingAntiAffinityRulesNotMatch`.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// Upstream's `ErrReasonAffinityRulesNotMatch`.
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Upstream's `ErrReasonAntiAffinityRulesNotMatch`.
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

/// Weight of an existing pod's required affinity term towards the incoming pod when scoring
/// (upstream's default `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// A (topology key, value) pair.
type Pair = (String, String);

/// Matching-term counts per topology pair; zero entries are removed.
#[derive(Debug, Clone, Default)]
struct PairCounts(HashMap<Pair, i64>);

impl PairCounts {
    fn update(&mut self, node: &NodeInfo, key: &str, delta: i64) {
        let Some(value) = node.labels().get(key) else {
            return;
        };
        let pair = (key.to_owned(), value.clone());
        let n = self.0.entry(pair.clone()).or_default();
        *n += delta;
        if *n == 0 {
            self.0.remove(&pair);
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        // Avoids allocating a pair for the lookup in the common empty case.
        if self.0.is_empty() {
            return 0;
        }
        self.0
            .get(&(key.to_owned(), value.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The InterPodAffinity plugin.
#[derive(Debug, Clone)]
pub struct InterPodAffinity {
    listers: Listers,
}

impl InterPodAffinity {
    /// The plugin, reading namespace labels from `listers`.
    pub fn new(listers: Listers) -> Self {
        Self { listers }
    }

    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.listers.namespace_labels(ns).unwrap_or_default()
    }

    /// Upstream's `mergeAffinityTermNamespacesIfNotEmpty`: the namespaces a term's namespace
    /// selector matches become part of its namespace list.
    fn merge_namespaces(&self, term: &AffinityTerm) -> AffinityTerm {
        let mut t = term.clone();
        if t.namespace_selector.is_nothing() {
            return t;
        }
        for ns in self.listers.namespaces.state() {
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            if t.namespace_selector.matches(&labels) {
                t.namespaces.extend(ns.metadata.name.clone());
            }
        }
        t.namespace_selector = k8rs_machinery::labels::Selector::nothing();
        t
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(
                EventResource::Pod,
                ActionType::ADD | ActionType::UPDATE_POD_LABEL | ActionType::DELETE,
            ),
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
            ),
            ClusterEvent::new(
                EventResource::Namespace,
                ActionType::ADD | ActionType::UPDATE,
            ),
        ]
    }
}
