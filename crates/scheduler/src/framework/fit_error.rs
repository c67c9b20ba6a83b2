//! Why a pod fits no node, and upstream's message for it (`FitError.Error()`):
//! `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}.
//! preemption: ...`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::status::{Code, Status};

/// The status of every evaluated node; nodes not listed have `absent`.
#[derive(Debug, Clone)]
pub struct NodeToStatus {
    statuses: HashMap<String, Status>,
    absent: Status,
}

impl Default for NodeToStatus {
    fn default() -> Self {
        Self {
            statuses: HashMap::new(),
            absent: Status::new(Code::UnschedulableAndUnresolvable, ""),
        }
    }
}

impl NodeToStatus {
    /// Records the status of `node`.
    pub fn set(&mut self, node: &str, status: Status) {
        self.statuses.insert(node.to_owned(), status);
    }

    /// The status of `node` (the absent status when not evaluated).
    pub fn get(&self, node: &str) -> &Status {
        self.statuses.get(node).unwrap_or(&self.absent)
    }

    /// Sets the status of nodes not listed.
    pub fn set_absent(&mut self, status: Status) {
        self.absent = status;
    }

    /// How many nodes have an explicit status.
    pub fn len(&self) -> usize {
        self.statuses.len()
    }

    /// Whether no node has an explicit status.
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
    }

    /// The listed statuses.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Status)> {
        self.statuses.iter()
    }

    /// The absent status.
    pub fn absent(&self) -> &Status {
        &self.absent
    }
}

/// What a failed scheduling attempt learned.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Per-node statuses.
    pub node_to_status: NodeToStatus,
    /// Plugins that rejected the pod (decides which events retry it).
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// The PreFilter rejection message, when PreFilter rejected the pod.
    pub pre_filter_msg: String,
    /// The PostFilter (preemption) message.
    pub post_filter_msg: String,
}

/// The pod fits no node.
#[derive(Debug, Clone)]
pub struct FitError {
    /// How many nodes the snapshot had.
    pub num_all_nodes: usize,
    /// Why.
    pub diagnosis: Diagnosis,
}

impl FitError {
    fn reason_histogram(&self) -> Vec<String> {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, status) in self.diagnosis.node_to_status.iter() {
            for r in &status.reasons {
                *reasons.entry(r.as_str()).or_default() += 1;
            }
        }
        let listed = self.diagnosis.node_to_status.len();
        if listed < self.num_all_nodes {
            for r in &self.diagnosis.node_to_status.absent().reasons {
                *reasons.entry(r.as_str()).or_default() += self.num_all_nodes - listed;
            }
        }
        let mut lines: Vec<String> = reasons
            .into_iter()
            .filter(|(r, _)| !r.is_empty())
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        lines.sort();
        lines
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if !d.pre_filter_msg.is_empty() {
            write!(f, " {}.", d.pre_filter_msg)?;
        } else {
            let lines = self.reason_histogram();
            if !lines.is_empty() {
                write!(f, " {}.", lines.join(", "))?;
            }
        }
        if !d.post_filter_msg.is_empty() {
            write!(f, " {}.", d.post_filter_msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit_error(n: usize, statuses: &[(&str, Status)]) -> FitError {
        let mut d = Diagnosis::default();
        for (node, s) in statuses {
            d.node_to_status.set(node, s.clone());
        }
        FitError {
            num_all_nodes: n,
            diagnosis: d,
        }
    }

    #[test]
    fn message_aggregates_and_sorts_reasons() {
        let taint = "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }";
        let mut e = fit_error(
            3,
            &[
                ("a", Status::unresolvable(taint)),
                ("b", Status::unschedulable("Insufficient cpu")),
                ("c", Status::unresolvable(taint)),
            ],
        );
        e.diagnosis.post_filter_msg =
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling"
                .into();
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 \
             Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn multiple_reasons_per_node_are_counted_each() {
        let mut s = Status::unschedulable("Insufficient cpu");
        s.reasons.push("Insufficient memory".into());
        let e = fit_error(
            2,
            &[("a", s), ("b", Status::unschedulable("Too many pods"))],
        );
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods."
        );
    }

    #[test]
    fn absent_nodes_count_the_absent_status() {
        let mut e = fit_error(5, &[("a", Status::unschedulable("Insufficient cpu"))]);
        e.diagnosis.node_to_status.set_absent(Status::unresolvable(
            "Preemption is not helpful for scheduling",
        ));
        assert_eq!(
            e.to_string(),
            "0/5 nodes are available: 1 Insufficient cpu, 4 Preemption is not helpful for \
             scheduling."
        );
    }

    #[test]
    fn pre_filter_message_replaces_node_reasons() {
        let mut e = fit_error(3, &[]);
        e.diagnosis.pre_filter_msg = "pod has unbound immediate PersistentVolumeClaims".into();
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        );
    }
}
