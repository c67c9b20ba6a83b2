//! TaintToleration: a pod must tolerate a node's `NoSchedule` and `NoExecute` taints; untolerated
//! `PreferNoSchedule` taints lower the node's score.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    ActionType, ClusterEvent, CycleState, EventResource, FilterPlugin, MAX_NODE_SCORE,
    NormalizeScorePlugin, Plugin, PreScorePlugin, ScorePlugin, Status, default_normalize_score,
};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// The plugin's name.
pub const NAME: &str = "TaintToleration";
const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// The TaintToleration plugin.
#[derive(Debug, Default)]
pub struct TaintToleration;

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates_taint(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// The pod's tolerations.
pub fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// The first `NoSchedule`/`NoExecute` taint of `node` the pod does not tolerate.
pub fn untolerated_taint<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    let tolerations = pod_tolerations(pod);
    node.taints()
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates_taint(t, taint)))
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(
            EventResource::Node,
            ActionType::ADD | ActionType::UPDATE_NODE_TAINT,
        )]
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match untolerated_taint(pod, node) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

#[derive(Clone)]
struct PreScoreState {
    tolerations: Vec<Toleration>,
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let tolerations = pod_tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref().unwrap_or_default(),
                    "" | "PreferNoSchedule"
                )
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState { tolerations });
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Err(Status::error("TaintToleration: PreScore state missing"));
        };
        let count = node
            .taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|taint| !s.tolerations.iter().any(|t| tolerates_taint(t, taint)))
            .count();
        Ok(count as i64)
    }
    fn normalizer(&self) -> Option<&dyn NormalizeScorePlugin> {
        Some(self)
    }
}

impl NormalizeScorePlugin for TaintToleration {
    fn normalize_score(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn filter_table() {
        struct Case {
            name: &'static str,
            pod: PodBuilder,
            node: NodeBuilder,
            code: Code,
            msg: &'static str,
        }
        let cases = [
            Case {
                name: "no taints",
                pod: PodBuilder::new("p"),
                node: NodeBuilder::new("n"),
                code: Code::Success,
                msg: "",
            },
            Case {
                name: "untolerated NoSchedule with empty value",
                pod: PodBuilder::new("p"),
                node: NodeBuilder::new("n").taint(
                    "node-role.kubernetes.io/control-plane",
                    "",
                    "NoSchedule",
                ),
                code: Code::UnschedulableAndUnresolvable,
                msg: "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
            },
            Case {
                name: "tolerated by Equal",
                pod: PodBuilder::new("p").toleration("dedicated", "Equal", "gpu", "NoSchedule"),
                node: NodeBuilder::new("n").taint("dedicated", "gpu", "NoSchedule"),
                code: Code::Success,
                msg: "",
            },
            Case {
                name: "Equal with another value does not tolerate",
                pod: PodBuilder::new("p").toleration("dedicated", "Equal", "cpu", "NoSchedule"),
                node: NodeBuilder::new("n").taint("dedicated", "gpu", "NoExecute"),
                code: Code::UnschedulableAndUnresolvable,
                msg: "node(s) had untolerated taint {dedicated: gpu}",
            },
            Case {
                name: "Exists without key tolerates everything",
                pod: PodBuilder::new("p").toleration("", "Exists", "", ""),
                node: NodeBuilder::new("n").taint("a", "b", "NoExecute"),
                code: Code::Success,
                msg: "",
            },
            Case {
                name: "PreferNoSchedule does not filter",
                pod: PodBuilder::new("p"),
                node: NodeBuilder::new("n").taint("a", "b", "PreferNoSchedule"),
                code: Code::Success,
                msg: "",
            },
        ];
        for c in cases {
            let s = TaintToleration.filter(&CycleState::new(), &c.pod.info(), &c.node.info());
            assert_eq!(
                (s.code, s.message().as_str()),
                (c.code, c.msg),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn score_prefers_fewer_untolerated_prefer_no_schedule_taints() {
        let pod = PodBuilder::new("p")
            .toleration("a", "Exists", "", "PreferNoSchedule")
            .info();
        let nodes = [
            NodeBuilder::new("clean").info(),
            NodeBuilder::new("tolerated")
                .taint("a", "", "PreferNoSchedule")
                .info(),
            NodeBuilder::new("one")
                .taint("b", "", "PreferNoSchedule")
                .info(),
            NodeBuilder::new("two")
                .taint("b", "", "PreferNoSchedule")
                .taint("c", "", "PreferNoSchedule")
                .info(),
        ]
        .map(Arc::new);
        let mut state = CycleState::new();
        TaintToleration.pre_score(&mut state, &pod, &nodes, &Snapshot::default());
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| TaintToleration.score(&state, &pod, n).unwrap_or(-1))
            .collect();
        assert_eq!(scores, [0, 0, 1, 2]);
        TaintToleration.normalize_score(&state, &pod, &nodes, &mut scores);
        assert_eq!(scores, [100, 100, 50, 0]);
    }
}
