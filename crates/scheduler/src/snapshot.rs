//! A consistent, cheaply cloned view of all nodes for one scheduling cycle (upstream's
//! `cache.Snapshot`). Persistent collections make a clone O(1) and an update O(log n), so the
//! cache hands out a fresh snapshot every cycle without copying thousands of node infos.

use std::collections::HashMap;
use std::sync::Arc;

use crate::nodeinfo::NodeInfo;

/// How widely an image is spread (for ImageLocality).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSummary {
    /// Size in bytes.
    pub size: i64,
    /// On how many nodes it is present.
    pub num_nodes: usize,
}

/// The nodes (those whose Node object is known) in a stable order.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: imbl::Vector<Arc<NodeInfo>>,
    index: imbl::HashMap<String, usize>,
    images: Arc<HashMap<String, ImageSummary>>,
    nodes_with_affinity: usize,
    nodes_with_required_anti_affinity: usize,
}

impl Snapshot {
    /// A snapshot of `nodes` (tests and simulations), image summaries included.
    pub fn from_nodes(nodes: impl IntoIterator<Item = NodeInfo>) -> Self {
        let mut s = Self::default();
        for n in nodes {
            s.upsert(Arc::new(n));
        }
        let mut images: HashMap<String, ImageSummary> = HashMap::new();
        for n in &s.nodes {
            let sizes = n
                .node()
                .and_then(|n| n.status.as_ref())
                .and_then(|s| s.images.as_ref());
            for image in sizes.into_iter().flatten() {
                for name in image.names.iter().flatten() {
                    let e = images.entry(name.clone()).or_insert(ImageSummary {
                        size: image.size_bytes.unwrap_or(0),
                        num_nodes: 0,
                    });
                    e.num_nodes += 1;
                }
            }
        }
        s.images = Arc::new(images);
        s
    }

    /// Inserts or replaces the node info with the same name.
    pub fn upsert(&mut self, info: Arc<NodeInfo>) {
        self.count(&info, 1);
        match self.index.get(info.name()).copied() {
            Some(i) => {
                let old = self.nodes.set(i, info);
                self.count(&old, -1);
            }
            None => {
                self.index.insert(info.name().to_owned(), self.nodes.len());
                self.nodes.push_back(info);
            }
        }
    }

    /// Removes the node named `name`.
    pub fn remove(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let old = self.nodes.remove(i);
        self.count(&old, -1);
        for (j, n) in self.nodes.iter().enumerate().skip(i) {
            self.index.insert(n.name().to_owned(), j);
        }
    }

    fn count(&mut self, info: &NodeInfo, sign: isize) {
        let apply = |n: &mut usize| *n = n.saturating_add_signed(sign);
        if info.has_pods_with_affinity() {
            apply(&mut self.nodes_with_affinity);
        }
        if info.has_pods_with_required_anti_affinity() {
            apply(&mut self.nodes_with_required_anti_affinity);
        }
    }

    /// Replaces the image summaries.
    pub fn set_images(&mut self, images: Arc<HashMap<String, ImageSummary>>) {
        self.images = images;
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node info named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(*self.index.get(name)?)
    }

    /// The node info at position `i`.
    pub fn at(&self, i: usize) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(i)
    }

    /// All node infos in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<NodeInfo>> {
        self.nodes.iter()
    }

    /// The nodes from position `start`, wrapping around.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = &Arc<NodeInfo>> {
        let start = if self.nodes.is_empty() {
            0
        } else {
            start % self.nodes.len()
        };
        self.nodes
            .iter()
            .skip(start)
            .chain(self.nodes.iter().take(start))
    }

    /// The summary of an image (by exact name).
    pub fn image(&self, name: &str) -> Option<&ImageSummary> {
        self.images.get(name)
    }

    /// Whether some node has a pod with pod affinity or anti-affinity.
    pub fn has_pods_with_affinity(&self) -> bool {
        self.nodes_with_affinity > 0
    }

    /// Whether some node has a pod with required pod anti-affinity.
    pub fn has_pods_with_required_anti_affinity(&self) -> bool {
        self.nodes_with_required_anti_affinity > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::NodeBuilder;

    #[test]
    fn upsert_remove_and_wraparound() {
        let mut s = Snapshot::from_nodes(
            ["a", "b", "c"].map(|n| NodeInfo::with_node(Arc::new(NodeBuilder::new(n).build()))),
        );
        let names = |s: &Snapshot, start| {
            s.iter_from(start)
                .map(|n| n.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&s, 1), ["b", "c", "a"]);
        let old = s.clone();
        s.remove("a");
        assert_eq!(names(&s, 0), ["b", "c"]);
        assert_eq!(s.get("c").map(|n| n.name()), Some("c"));
        assert_eq!(old.len(), 3, "earlier snapshots are unaffected");
        s.upsert(Arc::new(NodeInfo::new("d")));
        assert_eq!(names(&s, 2), ["d", "b", "c"]);
    }
}
