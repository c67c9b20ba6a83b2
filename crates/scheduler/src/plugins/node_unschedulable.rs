//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerates_taint;
use crate::framework::{
    ActionType, ClusterEvent, CycleState, EventResource, FilterPlugin, Plugin, Status,
};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// The plugin's name.
pub const NAME: &str = "NodeUnschedulable";
/// Upstream's `ErrReasonUnschedulable`.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The taint the node lifecycle puts on cordoned nodes.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The NodeUnschedulable plugin.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

/// Whether `pod` may run on `node` as far as cordoning goes.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    if !node.is_unschedulable() {
        return true;
    }
    let taint = Taint {
        key: TAINT_NODE_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        value: None,
        time_added: None,
    };
    let tolerations = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    tolerations.iter().any(|t| tolerates_taint(t, &taint))
}

impl Plugin for NodeUnschedulable {
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

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let cases = [
            (
                NodeBuilder::new("n").info(),
                PodBuilder::new("p").info(),
                Code::Success,
            ),
            (
                NodeBuilder::new("n").unschedulable().info(),
                PodBuilder::new("p").info(),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                NodeBuilder::new("n").unschedulable().info(),
                PodBuilder::new("p")
                    .toleration(TAINT_NODE_UNSCHEDULABLE, "Exists", "", "NoSchedule")
                    .info(),
                Code::Success,
            ),
        ];
        for (node, pod, code) in cases {
            let s = NodeUnschedulable.filter(&CycleState::new(), &pod, &node);
            assert_eq!(s.code, code);
            if code != Code::Success {
                assert_eq!(s.message(), ERR_REASON_UNSCHEDULABLE);
            }
        }
    }
}
