//! NodePorts: a pod's host ports must be free on the node.

use crate::framework::{
    ActionType, ClusterEvent, CycleState, EventResource, FilterPlugin, Plugin, PreFilterPlugin,
    PreFilterResult, Status,
};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// The plugin's name.
pub const NAME: &str = "NodePorts";
/// Upstream's `ErrReason`.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The NodePorts plugin.
#[derive(Debug, Default)]
pub struct NodePorts;

/// Whether every host port of `pod` is free on `node`.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.host_ports.iter().all(|p| !node.used_ports.conflicts(p))
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::Pod, ActionType::DELETE),
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD | ActionType::UPDATE_NODE,
            ),
        ]
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.host_ports.is_empty() {
            return (None, Status::skip());
        }
        (None, Status::success())
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unschedulable(ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn host_ports_must_be_free() {
        let existing = PodBuilder::new("e").host_port(8080).node("n").arc();
        let node = NodeBuilder::new("n").info_with(&[existing]);
        let cases = [
            (PodBuilder::new("p"), Code::Success),
            (PodBuilder::new("p").host_port(9090), Code::Success),
            (PodBuilder::new("p").host_port(8080), Code::Unschedulable),
        ];
        for (pod, code) in cases {
            let pod = pod.info();
            let (_, pre) = NodePorts.pre_filter(&mut CycleState::new(), &pod, &Snapshot::default());
            let s = if pre.is_skip() {
                Status::success()
            } else {
                NodePorts.filter(&CycleState::new(), &pod, &node)
            };
            assert_eq!(s.code, code);
        }
    }
}
