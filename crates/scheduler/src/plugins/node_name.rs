//! NodeName: a pod that names a node in `spec.nodeName` fits only that node.

use crate::framework::{
    ActionType, ClusterEvent, CycleState, EventResource, FilterPlugin, Plugin, Status,
};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{PodInfo, pod_node_name};

/// The plugin's name.
pub const NAME: &str = "NodeName";
/// Upstream's `ErrReason`.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// The NodeName plugin.
#[derive(Debug, Default)]
pub struct NodeName;

/// Whether `pod` may run on `node` as far as `spec.nodeName` goes.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod_node_name(&pod.pod).is_none_or(|n| n == node.name())
}

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(EventResource::Node, ActionType::ADD)]
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn only_the_named_node_fits() {
        let node = NodeBuilder::new("n1").info();
        let cases = [
            (PodBuilder::new("p").info(), Code::Success),
            (PodBuilder::new("p").node("n1").info(), Code::Success),
            (
                PodBuilder::new("p").node("n2").info(),
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (pod, code) in cases {
            assert_eq!(NodeName.filter(&CycleState::new(), &pod, &node).code, code);
        }
    }
}
