//! The scheduler's cache (upstream's `internal/cache`): node infos built from the node and pod
//! informers, plus pods the scheduler assumed bound before the API server confirms it. One writer
//! lock; each scheduling cycle takes an O(1) [`Snapshot`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::nodeinfo::NodeInfo;
use crate::podinfo::{PodInfo, pod_node_name, pod_uid};
use crate::snapshot::{ImageSummary, Snapshot};

/// A cache operation that does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The pod is already in the cache (assumed twice, or already bound).
    #[error("pod {0} is in the cache, so can't be assumed")]
    AlreadyPresent(String),
    /// The pod has no node to be assumed on.
    #[error("pod {0} has no node name")]
    NoNode(String),
}

#[derive(Debug, Clone)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

#[derive(Debug, Default)]
struct ImageEntry {
    size: i64,
    nodes: HashSet<String>,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<String, Arc<NodeInfo>>,
    snapshot: Snapshot,
    pods: HashMap<String, PodState>,
    images: HashMap<String, ImageEntry>,
    images_dirty: bool,
}

impl Inner {
    /// Changes the node info `name` copy-on-write and keeps the snapshot in step.
    fn with_node(&mut self, name: &str, f: impl FnOnce(&mut NodeInfo)) {
        let entry = self
            .nodes
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(NodeInfo::new(name)));
        f(Arc::make_mut(entry));
        if entry.node().is_some() {
            self.snapshot.upsert(Arc::clone(entry));
        } else if entry.pods.is_empty() {
            self.nodes.remove(name);
        }
    }

    fn add_pod_to_node(&mut self, info: Arc<PodInfo>, node: &str) {
        self.with_node(node, |n| n.add_pod(info));
    }

    fn remove_pod_from_node(&mut self, uid: &str, node: &str) {
        if self.nodes.contains_key(node) {
            self.with_node(node, |n| {
                n.remove_pod(uid);
            });
        }
    }

    fn set_images(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        for entry in self.images.values_mut() {
            entry.nodes.remove(&name);
        }
        let images = node.status.as_ref().and_then(|s| s.images.as_ref());
        for image in images.into_iter().flatten() {
            for n in image.names.iter().flatten() {
                let e = self.images.entry(n.clone()).or_default();
                e.size = image.size_bytes.unwrap_or(0);
                e.nodes.insert(name.clone());
            }
        }
        self.images.retain(|_, e| !e.nodes.is_empty());
        self.images_dirty = true;
    }
}

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

fn images_changed(old: Option<&Node>, new: &Node) -> bool {
    let images = |n: &Node| n.status.as_ref().and_then(|s| s.images.clone());
    old.is_none_or(|o| images(o) != images(new))
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a node.
    pub fn upsert_node(&self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut inner = self.lock();
        let old = inner.nodes.get(&name).and_then(|n| n.node().cloned());
        if images_changed(old.as_deref(), &node) {
            inner.set_images(&node);
        }
        inner.with_node(&name, |n| n.set_node(node));
    }

    /// Removes a node; its pods stay accounted until they are removed.
    pub fn remove_node(&self, name: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.nodes.get(name).and_then(|n| n.node().cloned()) {
            let mut bare = (*old).clone();
            if let Some(s) = bare.status.as_mut() {
                s.images = None;
            }
            inner.set_images(&bare);
        }
        inner.snapshot.remove(name);
        if inner.nodes.contains_key(name) {
            inner.with_node(name, NodeInfo::clear_node);
        }
    }

    /// Adds or updates a pod bound to a node (from the informer). Confirms an assumed pod.
    pub fn upsert_pod(&self, pod: Arc<Pod>) {
        let Some(node) = pod_node_name(&pod).map(str::to_owned) else {
            return;
        };
        let info = Arc::new(PodInfo::new(pod));
        let mut inner = self.lock();
        if let Some(old) = inner.pods.remove(&info.uid) {
            inner.remove_pod_from_node(&info.uid, &old.node);
        }
        inner.add_pod_to_node(Arc::clone(&info), &node);
        inner.pods.insert(
            info.uid.clone(),
            PodState {
                info,
                node,
                assumed: false,
            },
        );
    }

    /// Removes a pod (deleted or terminated).
    pub fn remove_pod(&self, pod: &Pod) {
        let uid = pod_uid(pod);
        let mut inner = self.lock();
        if let Some(old) = inner.pods.remove(&uid) {
            inner.remove_pod_from_node(&uid, &old.node);
        }
    }

    /// Accounts `pod` on `node` before the binding is confirmed (upstream's `AssumePod`).
    pub fn assume_pod(&self, pod: &PodInfo, node: &str) -> Result<Arc<PodInfo>, CacheError> {
        let mut inner = self.lock();
        if inner.pods.contains_key(&pod.uid) {
            return Err(CacheError::AlreadyPresent(pod.uid.clone()));
        }
        if node.is_empty() {
            return Err(CacheError::NoNode(pod.uid.clone()));
        }
        let info = Arc::new(pod.assumed_on(node));
        inner.add_pod_to_node(Arc::clone(&info), node);
        let state = PodState {
            info: Arc::clone(&info),
            node: node.to_owned(),
            assumed: true,
        };
        inner.pods.insert(pod.uid.clone(), state);
        Ok(info)
    }

    /// Drops an assumed pod whose binding failed (upstream's `ForgetPod`).
    pub fn forget_pod(&self, uid: &str) {
        let mut inner = self.lock();
        if inner.pods.get(uid).is_some_and(|p| p.assumed)
            && let Some(old) = inner.pods.remove(uid)
        {
            inner.remove_pod_from_node(uid, &old.node);
        }
    }

    /// Whether the pod is assumed and not yet confirmed.
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.lock().pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Whether the pod is in the cache at all (assumed or bound).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.lock().pods.contains_key(uid)
    }

    /// The pod's info as cached.
    pub fn pod(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.lock().pods.get(uid).map(|p| Arc::clone(&p.info))
    }

    /// A consistent view of all nodes with a Node object.
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        if inner.images_dirty {
            let summaries: HashMap<String, ImageSummary> = inner
                .images
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        ImageSummary {
                            size: e.size,
                            num_nodes: e.nodes.len(),
                        },
                    )
                })
                .collect();
            inner.snapshot.set_images(Arc::new(summaries));
            inner.images_dirty = false;
        }
        inner.snapshot.clone()
    }

    /// How many nodes and pods are cached.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.snapshot.len(), inner.pods.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn requested_cpu(cache: &Cache, node: &str) -> i64 {
        cache
            .snapshot()
            .get(node)
            .map(|n| n.requested.milli_cpu)
            .unwrap_or(-1)
    }

    #[test]
    fn assume_confirm_and_forget() {
        let cache = Cache::new();
        cache.upsert_node(Arc::new(NodeBuilder::new("n").build()));
        let pod = PodBuilder::new("p").req("cpu", "1").info();
        let before = cache.snapshot();
        cache
            .assume_pod(&pod, "n")
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(requested_cpu(&cache, "n"), 1000);
        assert_eq!(
            before.get("n").map(|n| n.requested.milli_cpu),
            Some(0),
            "old snapshots unchanged"
        );
        assert!(cache.is_assumed(&pod.uid));
        assert_eq!(
            cache.assume_pod(&pod, "n").err(),
            Some(CacheError::AlreadyPresent(pod.uid.clone()))
        );
        // The informer confirms the binding: still counted once.
        cache.upsert_pod(Arc::new(
            PodBuilder::new("p").req("cpu", "1").node("n").build(),
        ));
        assert!(!cache.is_assumed(&pod.uid));
        assert_eq!(requested_cpu(&cache, "n"), 1000);
        // Forgetting only applies to assumed pods.
        cache.forget_pod(&pod.uid);
        assert_eq!(requested_cpu(&cache, "n"), 1000);
        let q = PodBuilder::new("q").req("cpu", "1").info();
        let _ = cache.assume_pod(&q, "n");
        cache.forget_pod(&q.uid);
        assert_eq!(requested_cpu(&cache, "n"), 1000);
    }

    #[test]
    fn pods_before_their_node_and_node_removal() {
        let cache = Cache::new();
        let pod = PodBuilder::new("p").req("cpu", "1").node("late").build();
        cache.upsert_pod(Arc::new(pod.clone()));
        assert_eq!(
            cache.snapshot().len(),
            0,
            "nodes without a Node object are not schedulable"
        );
        cache.upsert_node(Arc::new(NodeBuilder::new("late").build()));
        assert_eq!(requested_cpu(&cache, "late"), 1000);
        cache.remove_node("late");
        assert_eq!(cache.snapshot().len(), 0);
        cache.remove_pod(&pod);
        assert_eq!(cache.counts(), (0, 0));
    }

    #[test]
    fn image_summaries_follow_nodes() {
        let cache = Cache::new();
        cache.upsert_node(Arc::new(
            NodeBuilder::new("a").image(&["app:v1"], 100).build(),
        ));
        cache.upsert_node(Arc::new(
            NodeBuilder::new("b").image(&["app:v1"], 100).build(),
        ));
        assert_eq!(
            cache.snapshot().image("app:v1").map(|s| s.num_nodes),
            Some(2)
        );
        cache.upsert_node(Arc::new(NodeBuilder::new("b").build()));
        assert_eq!(
            cache.snapshot().image("app:v1").map(|s| s.num_nodes),
            Some(1)
        );
        cache.remove_node("a");
        assert_eq!(cache.snapshot().image("app:v1"), None);
    }
}
