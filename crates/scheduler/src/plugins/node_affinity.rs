//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes; preferred node
//! affinity scores them. [`RequiredNodeAffinity`] is also what PodTopologySpread uses to decide
//! which nodes count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::framework::{
    ActionType, ClusterEvent, CycleState, EventResource, FilterPlugin, MAX_NODE_SCORE,
    NormalizeScorePlugin, Plugin, PreFilterPlugin, PreFilterResult, PreScorePlugin, ScorePlugin,
    Status, default_normalize_score,
};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";
/// Upstream's `ErrReasonPod`.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";
const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn parse(r: &NodeSelectorRequirement) -> Option<Self> {
        let op = match r.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt,
            "Lt" => Op::Lt,
            _ => return None,
        };
        let values = r.values.clone().unwrap_or_default();
        let ok = match op {
            Op::In | Op::NotIn => !values.is_empty(),
            Op::Exists | Op::DoesNotExist => values.is_empty(),
            Op::Gt | Op::Lt => values.len() == 1 && values[0].parse::<i64>().is_ok(),
        };
        ok.then(|| Self {
            key: r.key.clone(),
            op,
            values,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Op::In => value.is_some_and(has),
            Op::NotIn => !value.is_some_and(has),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(actual), Some(wanted)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::Gt {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

/// One node selector term: expressions on labels and fields, all of which must hold. An empty
/// or invalid term matches nothing.
#[derive(Debug, Clone)]
struct Term {
    exprs: Vec<Requirement>,
    fields: Vec<Requirement>,
    valid: bool,
}

impl Term {
    fn parse(t: &NodeSelectorTerm) -> Self {
        let mut valid = true;
        let mut parse_all = |reqs: Option<&Vec<NodeSelectorRequirement>>| -> Vec<Requirement> {
            reqs.into_iter()
                .flatten()
                .filter_map(|r| {
                    let parsed = Requirement::parse(r);
                    valid &= parsed.is_some();
                    parsed
                })
                .collect()
        };
        let exprs = parse_all(t.match_expressions.as_ref());
        let fields = parse_all(t.match_fields.as_ref());
        let fields_ok = fields
            .iter()
            .all(|f| f.key == "metadata.name" && matches!(f.op, Op::In | Op::NotIn));
        Self {
            valid: valid && fields_ok,
            exprs,
            fields,
        }
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        if !self.valid || (self.exprs.is_empty() && self.fields.is_empty()) {
            return false;
        }
        let labels = node.labels();
        self.exprs
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(node.name())))
    }
}

/// `spec.nodeSelector` plus required node affinity (upstream's `RequiredNodeAffinity`).
#[derive(Debug, Clone, Default)]
pub struct RequiredNodeAffinity {
    selector: BTreeMap<String, String>,
    terms: Option<Vec<Term>>,
}

impl RequiredNodeAffinity {
    /// The requirement `pod` places on nodes.
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let selector = spec
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|r| r.node_selector_terms.iter().map(Term::parse).collect());
        Self { selector, terms }
    }

    /// The requirement of a bare node selector (a PersistentVolume's node affinity).
    pub fn from_node_selector(selector: &k8s_openapi::api::core::v1::NodeSelector) -> Self {
        Self {
            selector: BTreeMap::new(),
            terms: Some(
                selector
                    .node_selector_terms
                    .iter()
                    .map(Term::parse)
                    .collect(),
            ),
        }
    }

    /// Whether the pod places no requirement.
    pub fn is_empty(&self) -> bool {
        self.selector.is_empty() && self.terms.is_none()
    }

    /// Whether `node` satisfies the requirement (terms are ORed).
    pub fn matches(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        let selector_ok = self.selector.iter().all(|(k, v)| labels.get(k) == Some(v));
        selector_ok
            && self
                .terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
    }
}

/// The NodeAffinity plugin.
#[derive(Debug, Default)]
pub struct NodeAffinity;

fn required_terms(pod: &Pod) -> Option<&Vec<NodeSelectorTerm>> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .map(|r| &r.node_selector_terms)
}

/// Upstream's shortcut for `matchFields: metadata.name In [...]` (DaemonSet pods): the node
/// names every term allows, or `None` when some term allows any node.
fn named_nodes(terms: &[NodeSelectorTerm]) -> Option<BTreeSet<String>> {
    let mut all: Option<BTreeSet<String>> = None;
    for t in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in t.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let s: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => s,
                    Some(prev) => prev.intersection(&s).cloned().collect(),
                });
            }
        }
        let names = term_names?;
        all.get_or_insert_with(BTreeSet::new).extend(names);
    }
    all
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(
            EventResource::Node,
            ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
        )]
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let required = RequiredNodeAffinity::of(&pod.pod);
        if required.is_empty() {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, required);
        let Some(terms) = required_terms(&pod.pod).filter(|t| !t.is_empty()) else {
            return (None, Status::success());
        };
        match named_nodes(terms) {
            Some(names) if names.is_empty() => (None, Status::unresolvable(ERR_REASON_CONFLICT)),
            Some(names) => (
                Some(PreFilterResult {
                    node_names: Some(names),
                }),
                Status::success(),
            ),
            None => (None, Status::success()),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let fits = match state.read::<RequiredNodeAffinity>(PRE_FILTER_KEY) {
            Some(r) => r.matches(node),
            None => RequiredNodeAffinity::of(&pod.pod).matches(node),
        };
        if fits {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

#[derive(Clone)]
struct Preferred {
    terms: Vec<(i64, Term)>,
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let terms: Vec<(i64, Term)> = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), Term::parse(&t.preference)))
            .collect();
        if terms.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, Preferred { terms });
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(p) = state.read::<Preferred>(PRE_SCORE_KEY) else {
            return Err(Status::error("NodeAffinity: PreScore state missing"));
        };
        Ok(p.terms
            .iter()
            .filter(|(_, t)| t.matches(node))
            .map(|(w, _)| w)
            .sum())
    }
    fn normalizer(&self) -> Option<&dyn NormalizeScorePlugin> {
        Some(self)
    }
}

impl NormalizeScorePlugin for NodeAffinity {
    fn normalize_score(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn run_filter(pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut state = CycleState::new();
        let (_, s) = NodeAffinity.pre_filter(&mut state, pod, &Snapshot::default());
        if s.is_skip() {
            return Status::success();
        }
        if !s.is_success() {
            return s;
        }
        NodeAffinity.filter(&state, pod, node)
    }

    #[test]
    fn filter_table() {
        let node = || {
            NodeBuilder::new("n1")
                .label("disk", "ssd")
                .label("gen", "5")
        };
        let cases = [
            ("no requirement", PodBuilder::new("p"), Code::Success),
            (
                "selector matches",
                PodBuilder::new("p").node_selector("disk", "ssd"),
                Code::Success,
            ),
            (
                "selector mismatch",
                PodBuilder::new("p").node_selector("disk", "hdd"),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "In matches",
                PodBuilder::new("p").node_affinity_in("disk", "In", &["hdd", "ssd"]),
                Code::Success,
            ),
            (
                "NotIn excludes",
                PodBuilder::new("p").node_affinity_in("disk", "NotIn", &["ssd"]),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "DoesNotExist",
                PodBuilder::new("p").node_affinity_in("gpu", "DoesNotExist", &[]),
                Code::Success,
            ),
            (
                "Gt",
                PodBuilder::new("p").node_affinity_in("gen", "Gt", &["4"]),
                Code::Success,
            ),
            (
                "Lt",
                PodBuilder::new("p").node_affinity_in("gen", "Lt", &["4"]),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "terms are ORed",
                PodBuilder::new("p")
                    .node_affinity_in("disk", "In", &["hdd"])
                    .node_affinity_in("gen", "Exists", &[]),
                Code::Success,
            ),
            (
                "selector and affinity are ANDed",
                PodBuilder::new("p")
                    .node_selector("disk", "hdd")
                    .node_affinity_in("gen", "Exists", &[]),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "metadata.name field",
                PodBuilder::new("p").node_affinity_names(&["n1"]),
                Code::Success,
            ),
            (
                "invalid operator",
                PodBuilder::new("p").node_affinity_in("disk", "Like", &["ssd"]),
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, pod, code) in cases {
            let s = run_filter(&pod.info(), &node().info());
            assert_eq!(s.code, code, "{name}");
            if code != Code::Success {
                assert_eq!(s.message(), ERR_REASON_POD, "{name}");
            }
        }
    }

    #[test]
    fn pre_filter_narrows_to_named_nodes() {
        let pod = PodBuilder::new("p").node_affinity_names(&["a", "b"]).info();
        let (r, s) = NodeAffinity.pre_filter(&mut CycleState::new(), &pod, &Snapshot::default());
        assert!(s.is_success());
        let names = r.and_then(|r| r.node_names).unwrap_or_default();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        let pod = PodBuilder::new("p").info();
        let (_, s) = NodeAffinity.pre_filter(&mut CycleState::new(), &pod, &Snapshot::default());
        assert!(s.is_skip());
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let pod = PodBuilder::new("p")
            .node_affinity_preferred(2, "disk", "In", &["ssd"])
            .node_affinity_preferred(8, "zone", "In", &["a"])
            .info();
        let nodes = [
            NodeBuilder::new("none").info(),
            NodeBuilder::new("ssd").label("disk", "ssd").info(),
            NodeBuilder::new("both")
                .label("disk", "ssd")
                .label("zone", "a")
                .info(),
        ]
        .map(Arc::new);
        let mut state = CycleState::new();
        assert!(
            NodeAffinity
                .pre_score(&mut state, &pod, &nodes, &Snapshot::default())
                .is_success()
        );
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| NodeAffinity.score(&state, &pod, n).unwrap_or(-1))
            .collect();
        assert_eq!(scores, [0, 2, 10]);
        NodeAffinity.normalize_score(&state, &pod, &nodes, &mut scores);
        assert_eq!(scores, [0, 20, 100]);
    }
}
