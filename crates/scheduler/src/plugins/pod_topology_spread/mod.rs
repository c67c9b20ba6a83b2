//! PodTopologySpread: `topologySpreadConstraints` with `DoNotSchedule` filter nodes whose domain
//! would exceed `maxSkew`; `ScheduleAnyway` constraints (or upstream's system defaults across
//! hostnames and zones, for pods selected by a service or controller) score nodes by how many
//! matching pods their domains hold.

mod filtering;
mod scoring;

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::node_affinity::RequiredNodeAffinity;
use super::taint_toleration::untolerated_taint;
use crate::framework::{ActionType, ClusterEvent, EventResource, Plugin};
use crate::listers::Listers;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{PodInfo, pod_labels};

/// The plugin's name.
pub const NAME: &str = "PodTopologySpread";
/// Upstream's `ErrReasonConstraintsNotMatch`.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// Upstream's `ErrReasonNodeLabelNotMatch`.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// `kubernetes.io/hostname`.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// `topology.kubernetes.io/zone`.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// A constraint with its selector parsed.
#[derive(Debug, Clone)]
pub(crate) struct Constraint {
    max_skew: i32,
    topology_key: String,
    selector: Selector,
    min_domains: i32,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    /// Upstream's `matchNodeInclusionPolicies`.
    fn includes_node(
        &self,
        pod: &PodInfo,
        node: &NodeInfo,
        required: &RequiredNodeAffinity,
    ) -> bool {
        if self.honor_node_affinity && !required.matches(node) {
            return false;
        }
        !(self.honor_node_taints && untolerated_taint(pod, node).is_some())
    }
}

/// Whether the node carries every constraint's topology key.
fn node_has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    let labels = node.labels();
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// Upstream's `countPodsMatchSelector`: pods of `ns` on the node matching `selector`, not
/// counting terminating pods.
fn count_matching(node: &NodeInfo, selector: &Selector, ns: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    node.pods
        .iter()
        .filter(|p| !p.is_terminating() && p.namespace() == ns && selector.matches(p.labels()))
        .count() as i64
}

/// The PodTopologySpread plugin.
#[derive(Debug, Clone)]
pub struct PodTopologySpread {
    listers: Listers,
    default_constraints: Vec<TopologySpreadConstraint>,
    system_defaulted: bool,
}

impl PodTopologySpread {
    /// The plugin with upstream's system default constraints: hostname (maxSkew 3) and zone
    /// (maxSkew 5), both `ScheduleAnyway`.
    pub fn new(listers: Listers) -> Self {
        let soft = |key: &str, max_skew| TopologySpreadConstraint {
            max_skew,
            topology_key: key.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..Default::default()
        };
        Self {
            listers,
            default_constraints: vec![soft(LABEL_HOSTNAME, 3), soft(LABEL_ZONE, 5)],
            system_defaulted: true,
        }
    }

    /// Upstream's `filterTopologySpreadConstraints`: the constraints with `action`, with
    /// `matchLabelKeys` merged into their selectors.
    fn constraints_of(
        pod: &Pod,
        constraints: &[TopologySpreadConstraint],
        action: &str,
    ) -> Result<Vec<Constraint>, String> {
        let labels = pod_labels(pod);
        constraints
            .iter()
            .filter(|c| c.when_unsatisfiable == action)
            .map(|c| {
                let selector = match c.label_selector.as_ref() {
                    None => Selector::nothing(),
                    Some(sel) => {
                        let mut merged: LabelSelector = sel.clone();
                        for key in c.match_label_keys.iter().flatten() {
                            if let Some(v) = labels.get(key) {
                                merged
                                    .match_labels
                                    .get_or_insert_with(Default::default)
                                    .insert(key.clone(), v.clone());
                            }
                        }
                        Selector::from_label_selector(&merged).map_err(|e| e.to_string())?
                    }
                };
                Ok(Constraint {
                    max_skew: c.max_skew,
                    topology_key: c.topology_key.clone(),
                    selector,
                    min_domains: c.min_domains.unwrap_or(1),
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                })
            })
            .collect()
    }

    /// The pod's own constraints with `action`, or, when it has none at all, the defaults with
    /// the selector of the services and controllers selecting it.
    fn pod_constraints(&self, pod: &Pod, action: &str) -> Result<Vec<Constraint>, String> {
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        if !own.is_empty() {
            return Self::constraints_of(pod, own, action);
        }
        let mut defaults = Self::constraints_of(pod, &self.default_constraints, action)?;
        if defaults.is_empty() {
            return Ok(defaults);
        }
        let selector = self.listers.default_selector(pod);
        if selector.is_empty() {
            return Ok(Vec::new());
        }
        for c in &mut defaults {
            c.selector = selector.clone();
        }
        Ok(defaults)
    }
}

impl Plugin for PodTopologySpread {
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
                ActionType::ADD
                    | ActionType::DELETE
                    | ActionType::UPDATE_NODE_LABEL
                    | ActionType::UPDATE_NODE_TAINT,
            ),
        ]
    }
}
