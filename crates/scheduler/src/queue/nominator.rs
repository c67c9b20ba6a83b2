//! Pods nominated to nodes by preemption (upstream's `nominator`): the space they will take is
//! respected when filtering other pods of lower or equal priority.

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::NominatedPods;
use crate::podinfo::PodInfo;

/// The nominations, with a cached shared copy for scheduling cycles.
#[derive(Debug, Default)]
pub struct Nominator {
    by_pod: HashMap<String, String>,
    by_node: NominatedPods,
    shared: Option<Arc<NominatedPods>>,
}

impl Nominator {
    /// Nominates `pod` to `node` (replacing an earlier nomination).
    pub fn add(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.delete(&pod.uid);
        if node.is_empty() {
            return;
        }
        self.by_pod.insert(pod.uid.clone(), node.to_owned());
        self.by_node.entry(node.to_owned()).or_default().push(pod);
        self.shared = None;
    }

    /// Drops the nomination of the pod with `uid`.
    pub fn delete(&mut self, uid: &str) {
        let Some(node) = self.by_pod.remove(uid) else {
            return;
        };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.retain(|p| p.uid != uid);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
        self.shared = None;
    }

    /// Replaces the pod object of a nominated pod, keeping its node.
    pub fn update_pod(&mut self, pod: Arc<PodInfo>) {
        if let Some(node) = self.by_pod.get(&pod.uid).cloned() {
            self.add(pod, &node);
        }
    }

    /// The node the pod with `uid` is nominated to.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.by_pod.get(uid).map(String::as_str)
    }

    /// A shared copy of all nominations.
    pub fn shared(&mut self) -> Arc<NominatedPods> {
        Arc::clone(
            self.shared
                .get_or_insert_with(|| Arc::new(self.by_node.clone())),
        )
    }
}
