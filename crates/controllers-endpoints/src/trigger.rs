//! Upstream's `TriggerTimeTracker`: the `endpoints.kubernetes.io/last-change-trigger-time` of a
//! sync is the earliest change (pod readiness transition or creation, Service creation) not yet
//! published, remembered per Service between syncs.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;

use crate::podutil;

/// The annotation, as upstream's `v1.EndpointsLastChangeTriggerTime`.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// What one sync saw, remembered by [`TriggerTracker::commit`] once its write succeeded.
#[derive(Default)]
pub struct Seen {
    key: String,
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

/// Per-Service memory of the trigger times already seen.
#[derive(Default)]
pub struct TriggerTracker {
    seen: Mutex<HashMap<String, Seen>>,
}

impl TriggerTracker {
    /// The earliest change among `svc` and `pods` not yet committed, and what was seen.
    pub fn compute(&self, key: &str, svc: &Service, pods: &[&Pod]) -> (Option<Timestamp>, Seen) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let empty = Seen::default();
        let state = seen.get(key).unwrap_or(&empty);
        let mut earliest: Option<Timestamp> = None;
        let mut note = |t: Timestamp| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        let svc_time = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if svc_time != state.service
            && let Some(t) = svc_time
        {
            note(t);
        }
        let mut pods_now = HashMap::new();
        for pod in pods {
            let (Some(name), Some(t)) = (&pod.metadata.name, podutil::trigger_time(pod)) else {
                continue;
            };
            if state.pods.get(name) != Some(&t) {
                note(t);
            }
            pods_now.insert(name.clone(), t);
        }
        let now = Seen {
            key: key.to_string(),
            service: svc_time,
            pods: pods_now,
        };
        (earliest, now)
    }

    /// Remembers what a successful sync saw.
    pub fn commit(&self, seen: Seen) {
        let mut all = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(seen.key.clone(), seen);
    }

    /// Forgets a deleted Service.
    pub fn forget(&self, key: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{PodBuilder, ServiceBuilder};

    #[test]
    fn earliest_uncommitted_change() {
        let tracker = TriggerTracker::default();
        let svc = ServiceBuilder::new("web").build();
        let a = PodBuilder::new("a").build();
        let (first, seen) = tracker.compute("default/web", &svc, &[&a]);
        assert_eq!(
            first,
            Some("2024-01-01T00:00:00Z".parse().unwrap()),
            "service creation"
        );
        // Not committed (the write failed): the same change is reported again.
        let (again, _) = tracker.compute("default/web", &svc, &[&a]);
        assert_eq!(again, first);
        tracker.commit(seen);
        assert_eq!(tracker.compute("default/web", &svc, &[&a]).0, None);
    }
}
