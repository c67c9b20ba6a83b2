//! PrioritySort: higher `spec.priority` first, then the pod queued earlier.

use crate::framework::{Plugin, QueueSortPlugin, QueuedPodInfo};

/// The plugin's name.
pub const NAME: &str = "PrioritySort";

/// The PrioritySort plugin.
#[derive(Debug, Default)]
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (a.pod.priority, b.pod.priority);
        pa > pb || (pa == pb && (a.timestamp, a.seq) < (b.timestamp, b.seq))
    }
}
