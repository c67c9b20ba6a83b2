//! A node with the pods on it and what they use (upstream's `framework.NodeInfo`).
//!
//! Node infos are shared as `Arc<NodeInfo>` between the cache and the snapshots a scheduling cycle
//! reads; the cache changes them copy-on-write.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::podinfo::{HostPort, PodInfo};
use crate::resources::{self, Resource};

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Host ports in use on a node, with how many pods use each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPortInfo {
    used: Vec<(HostPort, u32)>,
}

impl HostPortInfo {
    /// Records one more user of `port`.
    pub fn add(&mut self, port: &HostPort) {
        match self.used.iter_mut().find(|(p, _)| p == port) {
            Some((_, n)) => *n += 1,
            None => self.used.push((port.clone(), 1)),
        }
    }

    /// Records one user of `port` less.
    pub fn remove(&mut self, port: &HostPort) {
        if let Some(i) = self.used.iter().position(|(p, _)| p == port) {
            self.used[i].1 -= 1;
            if self.used[i].1 == 0 {
                self.used.swap_remove(i);
            }
        }
    }

    /// Upstream's `CheckConflict`: `0.0.0.0` conflicts with every IP using the same protocol and
    /// port; a specific IP conflicts with itself and `0.0.0.0`.
    pub fn conflicts(&self, want: &HostPort) -> bool {
        self.used.iter().any(|(p, _)| {
            p.port == want.port
                && p.protocol == want.protocol
                && (want.ip == "0.0.0.0" || p.ip == "0.0.0.0" || p.ip == want.ip)
        })
    }

    /// Whether no port is in use.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

/// A node, its pods and their resource use.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    name: String,
    node: Option<Arc<Node>>,
    /// Pods bound or assumed to be bound to the node.
    pub pods: Vec<Arc<PodInfo>>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
    /// Host ports in use.
    pub used_ports: HostPortInfo,
    /// Sum of the pods' requests.
    pub requested: Resource,
    /// Sum of the pods' cpu and memory requests with scoring defaults.
    pub non_zero_requested: Resource,
    /// `status.allocatable` of the node.
    pub allocatable: Resource,
    /// Image names present on the node (`status.images[].names`).
    pub images: Arc<Vec<String>>,
    /// `spec.unschedulable` (cordoned), kept here because Filter reads it for every node and
    /// the Node object is a cold cache line away.
    unschedulable: bool,
    /// Whether the node has any taint: lets TaintToleration pass an untainted node without
    /// following the pointer to the Node object (a cache miss per node at 5,000 nodes).
    tainted: bool,
}

impl NodeInfo {
    /// A node info for a node not seen yet (pods may reference it).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            node: None,
            pods: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            used_ports: HostPortInfo::default(),
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            allocatable: Resource::default(),
            images: Arc::default(),
            unschedulable: false,
            tainted: false,
        }
    }

    /// A node info for `node` with no pods.
    pub fn with_node(node: Arc<Node>) -> Self {
        let mut info = Self::new(node.metadata.name.as_deref().unwrap_or_default());
        info.set_node(node);
        info
    }

    /// Replaces the node object.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = resources::node_allocatable(&node);
        self.unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        self.tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| !t.is_empty());
        let images: Vec<String> = node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| i.names.iter().flatten().cloned())
            .collect();
        if *self.images != images {
            self.images = Arc::new(images);
        }
        self.node = Some(node);
    }

    /// Forgets the node object (the node was deleted but pods still reference it).
    pub fn clear_node(&mut self) {
        self.node = None;
        self.unschedulable = false;
        self.tainted = false;
    }

    /// Whether the node is cordoned (`spec.unschedulable`).
    pub fn is_unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node object, when seen.
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&NO_LABELS)
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        if !self.tainted {
            return &[];
        }
        self.node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    /// Whether any pod on the node has pod affinity or anti-affinity.
    pub fn has_pods_with_affinity(&self) -> bool {
        self.pods_with_affinity > 0
    }

    /// Whether any pod on the node has required pod anti-affinity.
    pub fn has_pods_with_required_anti_affinity(&self) -> bool {
        self.pods_with_required_anti_affinity > 0
    }

    /// Adds a pod and its resource use.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.account(&pod, 1);
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`; returns it when it was there.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.account(&pod, -1);
        Some(pod)
    }

    fn account(&mut self, pod: &PodInfo, sign: i64) {
        if sign > 0 {
            self.requested.add(&pod.requests);
        } else {
            self.requested.sub(&pod.requests);
        }
        self.non_zero_requested.milli_cpu += sign * pod.non_zero_cpu;
        self.non_zero_requested.memory += sign * pod.non_zero_memory;
        let delta = |n: &mut usize| {
            *n = if sign > 0 {
                *n + 1
            } else {
                n.saturating_sub(1)
            };
        };
        if pod.has_affinity() {
            delta(&mut self.pods_with_affinity);
        }
        if !pod.required_anti_affinity.is_empty() {
            delta(&mut self.pods_with_required_anti_affinity);
        }
        for port in &pod.host_ports {
            if sign > 0 {
                self.used_ports.add(port);
            } else {
                self.used_ports.remove(port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn add_and_remove_keep_accounting() {
        let mut info = NodeInfo::with_node(Arc::new(NodeBuilder::new("n").build()));
        let p = Arc::new(PodInfo::new(Arc::new(
            PodBuilder::new("p")
                .req("cpu", "500m")
                .host_port(80)
                .build(),
        )));
        info.add_pod(p.clone());
        assert_eq!(info.requested.milli_cpu, 500);
        assert_eq!(
            info.non_zero_requested.memory,
            crate::resources::DEFAULT_MEMORY_REQUEST
        );
        assert!(info.used_ports.conflicts(&p.host_ports[0]));
        assert!(info.remove_pod(&p.uid).is_some());
        assert_eq!(info.requested, Resource::default());
        assert!(info.used_ports.is_empty());
        assert!(info.remove_pod(&p.uid).is_none());
    }

    #[test]
    fn host_port_conflicts_follow_upstream() {
        let port = |ip: &str, proto: &str, port| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port,
        };
        let mut used = HostPortInfo::default();
        used.add(&port("127.0.0.1", "TCP", 80));
        assert!(used.conflicts(&port("0.0.0.0", "TCP", 80)));
        assert!(used.conflicts(&port("127.0.0.1", "TCP", 80)));
        assert!(!used.conflicts(&port("127.0.0.2", "TCP", 80)));
        assert!(!used.conflicts(&port("127.0.0.1", "UDP", 80)));
        used.add(&port("0.0.0.0", "UDP", 53));
        assert!(used.conflicts(&port("10.0.0.1", "UDP", 53)));
    }
}
