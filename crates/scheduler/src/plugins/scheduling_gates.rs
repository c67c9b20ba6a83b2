//! SchedulingGates: a pod with `spec.schedulingGates` stays out of the active queue until they are
//! all removed.

use crate::framework::{Plugin, PreEnqueuePlugin, Status};
use crate::podinfo::PodInfo;

/// The plugin's name.
pub const NAME: &str = "SchedulingGates";

/// The SchedulingGates plugin.
#[derive(Debug, Default)]
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_deref())
            .unwrap_or_default();
        if gates.is_empty() {
            return Status::success();
        }
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        Status::unresolvable(format!(
            "waiting for scheduling gates: [{}]",
            names.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::PodBuilder;

    #[test]
    fn gates_hold_pods_back() {
        let cases = [
            (PodBuilder::new("p").info(), Code::Success, ""),
            (
                PodBuilder::new("p").gate("a").gate("b").info(),
                Code::UnschedulableAndUnresolvable,
                "waiting for scheduling gates: [a b]",
            ),
        ];
        for (pod, code, msg) in cases {
            let s = SchedulingGates.pre_enqueue(&pod);
            assert_eq!((s.code, s.message().as_str()), (code, msg));
        }
    }
}
