//! NodeResourcesFit: the pod's requests must fit in what the node's pods leave of its allocatable
//! (cpu, memory, ephemeral storage, extended resources, pod count). Scores with upstream's default
//! strategy, LeastAllocated over cpu and memory.

use crate::framework::{
    ActionType, ClusterEvent, CycleState, EventResource, FilterPlugin, MAX_NODE_SCORE, Plugin,
    ScorePlugin, Status,
};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::resources::{self, Resource};

/// The plugin's name.
pub const NAME: &str = "NodeResourcesFit";

/// The resources and weights scoring looks at (upstream's default `cpu: 1, memory: 1`).
pub const SCORING_RESOURCES: [(&str, i64); 2] = [(resources::CPU, 1), (resources::MEMORY, 1)];

/// One resource the node lacks for the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    /// The resource name.
    pub resource: String,
    /// `Insufficient <name>` or `Too many pods`.
    pub reason: String,
    /// What the pod asks for.
    pub requested: i64,
    /// What the node's pods already use.
    pub used: i64,
    /// The node's allocatable.
    pub capacity: i64,
    /// The pod asks for more than the node has at all: preemption cannot help.
    pub unresolvable: bool,
}

fn insufficient(
    resource: &str,
    reason: String,
    requested: i64,
    used: i64,
    capacity: i64,
) -> InsufficientResource {
    InsufficientResource {
        resource: resource.to_owned(),
        reason,
        requested,
        used,
        capacity,
        unresolvable: requested > capacity,
    }
}

/// Upstream's `fitsRequest`: every resource `request` does not fit on `node`.
pub fn fits_request(request: &Resource, node: &NodeInfo) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    let (alloc, used) = (&node.allocatable, &node.requested);
    let pods = node.pods.len() as i64;
    if pods + 1 > alloc.allowed_pod_number {
        let mut r = insufficient(
            resources::PODS,
            "Too many pods".into(),
            1,
            pods,
            alloc.allowed_pod_number,
        );
        r.unresolvable = false;
        out.push(r);
    }
    if request.is_zero() {
        return out;
    }
    let named = [
        (
            resources::CPU,
            request.milli_cpu,
            used.milli_cpu,
            alloc.milli_cpu,
        ),
        (resources::MEMORY, request.memory, used.memory, alloc.memory),
        (
            resources::EPHEMERAL_STORAGE,
            request.ephemeral_storage,
            used.ephemeral_storage,
            alloc.ephemeral_storage,
        ),
    ];
    for (name, want, used, cap) in named {
        if want > 0 && want > cap - used {
            out.push(insufficient(
                name,
                format!("Insufficient {name}"),
                want,
                used,
                cap,
            ));
        }
    }
    for (name, want) in &request.scalar {
        let cap = alloc.scalar.get(name).copied().unwrap_or(0);
        let used = used.scalar.get(name).copied().unwrap_or(0);
        if *want > 0 && *want > cap - used {
            out.push(insufficient(
                name,
                format!("Insufficient {name}"),
                *want,
                used,
                cap,
            ));
        }
    }
    out
}

/// Whether `pod` fits `node` by resources (the pure check beside the plugin).
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    fits_request(&pod.requests, node).is_empty()
}

/// Upstream's `calculateResourceAllocatableRequest`: the node's allocatable of `resource` and
/// what would be requested with the pod on it. `use_requested` counts actual requests instead of
/// the non-zero scoring defaults. `(0, 0)` means the resource is not scored.
pub fn allocatable_and_requested(
    node: &NodeInfo,
    resource: &str,
    pod_request: i64,
    use_requested: bool,
) -> (i64, i64) {
    let requested = if use_requested {
        &node.requested
    } else {
        &node.non_zero_requested
    };
    match resource {
        resources::CPU => (
            node.allocatable.milli_cpu,
            requested.milli_cpu + pod_request,
        ),
        resources::MEMORY => (node.allocatable.memory, requested.memory + pod_request),
        resources::EPHEMERAL_STORAGE => (
            node.allocatable.ephemeral_storage,
            node.requested.ephemeral_storage + pod_request,
        ),
        _ if pod_request == 0 => (0, 0),
        other => match node.allocatable.scalar.get(other) {
            Some(cap) => (
                *cap,
                node.requested.scalar.get(other).copied().unwrap_or(0) + pod_request,
            ),
            None => (0, 0),
        },
    }
}

/// Upstream's `leastRequestedScore`.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// The NodeResourcesFit plugin.
#[derive(Debug, Default)]
pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(
                EventResource::Pod,
                ActionType::DELETE | ActionType::UPDATE_POD_SCALE_DOWN,
            ),
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD
                    | ActionType::UPDATE_NODE_ALLOCATABLE
                    | ActionType::UPDATE_NODE_TAINT
                    | ActionType::UPDATE_NODE_LABEL,
            ),
        ]
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        // The request upstream's PreFilter computes is already in the pod info.
        let missing = fits_request(&pod.requests, node);
        if missing.is_empty() {
            return Status::success();
        }
        let mut status = Status::unschedulable("");
        status.reasons = missing.iter().map(|m| m.reason.clone()).collect();
        if missing.iter().any(|m| m.unresolvable) {
            status.code = crate::framework::Code::UnschedulableAndUnresolvable;
        }
        status
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let mut total = 0;
        let mut weights = 0;
        for (name, weight) in SCORING_RESOURCES {
            let request = match name {
                resources::CPU => pod.non_zero_cpu,
                _ => pod.non_zero_memory,
            };
            let (alloc, req) = allocatable_and_requested(node, name, request, false);
            if alloc == 0 {
                continue;
            }
            total += least_requested_score(req, alloc) * weight;
            weights += weight;
        }
        Ok(if weights == 0 { 0 } else { total / weights })
    }
}

/// Shared helper for tests of scoring plugins.
#[cfg(test)]
pub(crate) fn score_all(
    p: &dyn ScorePlugin,
    state: &CycleState,
    pod: &PodInfo,
    nodes: &[std::sync::Arc<NodeInfo>],
) -> Vec<i64> {
    nodes
        .iter()
        .map(|n| p.score(state, pod, n).unwrap_or(-1))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::framework::Code;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
        NodeResourcesFit.filter(&CycleState::new(), pod, node)
    }

    #[test]
    fn filter_table() {
        let existing = PodBuilder::new("e")
            .req("cpu", "3")
            .req("memory", "8Gi")
            .node("n")
            .arc();
        let node = || {
            NodeBuilder::new("n")
                .alloc("example.com/gpu", "1")
                .info_with(std::slice::from_ref(&existing))
        };
        struct Case {
            name: &'static str,
            pod: PodBuilder,
            code: Code,
            reasons: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "fits",
                pod: PodBuilder::new("p").req("cpu", "1"),
                code: Code::Success,
                reasons: &[],
            },
            Case {
                name: "cpu short",
                pod: PodBuilder::new("p").req("cpu", "1001m"),
                code: Code::Unschedulable,
                reasons: &["Insufficient cpu"],
            },
            Case {
                name: "cpu and memory short",
                pod: PodBuilder::new("p").req("cpu", "2").req("memory", "9Gi"),
                code: Code::Unschedulable,
                reasons: &["Insufficient cpu", "Insufficient memory"],
            },
            Case {
                name: "more than the node has is unresolvable",
                pod: PodBuilder::new("p").req("cpu", "5"),
                code: Code::UnschedulableAndUnresolvable,
                reasons: &["Insufficient cpu"],
            },
            Case {
                name: "extended resource",
                pod: PodBuilder::new("p").req("example.com/gpu", "2"),
                code: Code::UnschedulableAndUnresolvable,
                reasons: &["Insufficient example.com/gpu"],
            },
            Case {
                name: "extended resource fits",
                pod: PodBuilder::new("p").req("example.com/gpu", "1"),
                code: Code::Success,
                reasons: &[],
            },
            Case {
                name: "overhead counts",
                pod: PodBuilder::new("p")
                    .req("cpu", "900m")
                    .overhead(&[("cpu", "200m")]),
                code: Code::Unschedulable,
                reasons: &["Insufficient cpu"],
            },
            Case {
                name: "sidecar counts",
                pod: PodBuilder::new("p").req("cpu", "600m").init_container(
                    "s",
                    &[("cpu", "600m")],
                    true,
                ),
                code: Code::Unschedulable,
                reasons: &["Insufficient cpu"],
            },
            Case {
                name: "ephemeral storage",
                pod: PodBuilder::new("p").req("ephemeral-storage", "1Gi"),
                code: Code::UnschedulableAndUnresolvable,
                reasons: &["Insufficient ephemeral-storage"],
            },
        ];
        for c in cases {
            let s = filter(&c.pod.info(), &node());
            assert_eq!(s.code, c.code, "{}", c.name);
            assert_eq!(s.reasons, c.reasons, "{}", c.name);
        }
    }

    #[test]
    fn pod_count_is_checked_even_for_best_effort_pods() {
        let existing = PodBuilder::new("e").node("n").arc();
        let node = NodeBuilder::new("n")
            .alloc("pods", "1")
            .info_with(&[existing]);
        let s = filter(&PodBuilder::new("p").info(), &node);
        assert_eq!(
            (s.code, s.message().as_str()),
            (Code::Unschedulable, "Too many pods")
        );
    }

    #[test]
    fn least_allocated_scores() {
        // Upstream's example: node 4000m/10000 with nothing, pod 3000m/5000 -> (25 + 50) / 2.
        let pod = PodBuilder::new("p")
            .req("cpu", "3")
            .req("memory", "5000")
            .info();
        let empty = NodeBuilder::new("a")
            .alloc("cpu", "4")
            .alloc("memory", "10000")
            .info();
        let busy_pod = PodBuilder::new("b")
            .req("cpu", "1")
            .req("memory", "5000")
            .node("b")
            .arc();
        let busy = NodeBuilder::new("b")
            .alloc("cpu", "4")
            .alloc("memory", "10000")
            .info_with(&[busy_pod]);
        let nodes = [Arc::new(empty), Arc::new(busy)];
        assert_eq!(
            score_all(&NodeResourcesFit, &CycleState::new(), &pod, &nodes),
            [37, 0]
        );
    }

    #[test]
    fn best_effort_pods_count_defaults_when_scoring() {
        let pod = PodBuilder::new("p").container("c", &[]).info();
        let node = NodeBuilder::new("a")
            .alloc("cpu", "1")
            .alloc(
                "memory",
                &format!("{}", 4 * resources::DEFAULT_MEMORY_REQUEST),
            )
            .info();
        // cpu: (1000-100)*100/1000 = 90, memory: 75 -> 82.
        assert_eq!(
            score_all(
                &NodeResourcesFit,
                &CycleState::new(),
                &pod,
                &[Arc::new(node)]
            ),
            [82]
        );
    }
}
