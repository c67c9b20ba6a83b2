//! Cluster events that may make an unschedulable pod schedulable (upstream's
//! `framework.ClusterEvent`). Plugins register the events that can undo their rejections; the
//! queue moves a pod back only for events a plugin that rejected it registered.

use std::fmt;
use std::ops::BitOr;

/// The kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventResource {
    /// A pod bound to a node (or assumed to be).
    Pod,
    /// A node.
    Node,
    /// A PersistentVolume.
    PersistentVolume,
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// A StorageClass.
    StorageClass,
    /// A namespace (its labels select affinity terms).
    Namespace,
    /// Any resource: for events that move every pod.
    Wildcard,
}

/// What happened, as bit flags so a registration can name several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionType(u32);

impl ActionType {
    /// Created.
    pub const ADD: Self = Self(1);
    /// Deleted.
    pub const DELETE: Self = Self(1 << 1);
    /// A node's allocatable changed.
    pub const UPDATE_NODE_ALLOCATABLE: Self = Self(1 << 2);
    /// A node's labels changed.
    pub const UPDATE_NODE_LABEL: Self = Self(1 << 3);
    /// A node's taints (or `spec.unschedulable`) changed.
    pub const UPDATE_NODE_TAINT: Self = Self(1 << 4);
    /// A node's conditions changed.
    pub const UPDATE_NODE_CONDITION: Self = Self(1 << 5);
    /// A node's annotations changed.
    pub const UPDATE_NODE_ANNOTATION: Self = Self(1 << 6);
    /// A pod's labels changed.
    pub const UPDATE_POD_LABEL: Self = Self(1 << 7);
    /// A pod's requests shrank.
    pub const UPDATE_POD_SCALE_DOWN: Self = Self(1 << 8);
    /// Any other update.
    pub const UPDATE: Self = Self(1 << 9);
    /// Every node update.
    pub const UPDATE_NODE: Self = Self(
        Self::UPDATE_NODE_ALLOCATABLE.0
            | Self::UPDATE_NODE_LABEL.0
            | Self::UPDATE_NODE_TAINT.0
            | Self::UPDATE_NODE_CONDITION.0
            | Self::UPDATE_NODE_ANNOTATION.0
            | Self::UPDATE.0,
    );
    /// Everything.
    pub const ALL: Self = Self(u32::MAX);
    /// Nothing.
    pub const NONE: Self = Self(0);

    /// Whether the two share any flag.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for ActionType {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// An event: a resource and what happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    /// The kind of object.
    pub resource: EventResource,
    /// What happened.
    pub action: ActionType,
}

impl ClusterEvent {
    /// An event.
    pub const fn new(resource: EventResource, action: ActionType) -> Self {
        Self { resource, action }
    }

    /// A node was added.
    pub const NODE_ADD: Self = Self::new(EventResource::Node, ActionType::ADD);
    /// A node was deleted.
    pub const NODE_DELETE: Self = Self::new(EventResource::Node, ActionType::DELETE);
    /// A pod was bound (or assumed).
    pub const ASSIGNED_POD_ADD: Self = Self::new(EventResource::Pod, ActionType::ADD);
    /// A bound pod was deleted (or an assumed pod forgotten).
    pub const ASSIGNED_POD_DELETE: Self = Self::new(EventResource::Pod, ActionType::DELETE);
    /// Pods waited in the unschedulable pool too long.
    pub const UNSCHEDULABLE_TIMEOUT: Self = Self::new(EventResource::Wildcard, ActionType::ALL);
    /// Every pod must be retried (e.g. leadership was acquired).
    pub const FORCE_ACTIVATE: Self = Self::new(EventResource::Wildcard, ActionType::ALL);

    /// Whether a registration for `self` covers the event `happened`.
    pub fn covers(&self, happened: &ClusterEvent) -> bool {
        if happened.resource == EventResource::Wildcard {
            return true;
        }
        (self.resource == EventResource::Wildcard || self.resource == happened.resource)
            && self.action.intersects(happened.action)
    }
}

impl fmt::Display for ClusterEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:#x}", self.resource, self.action.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_cover_matching_events() {
        let reg = ClusterEvent::new(
            EventResource::Node,
            ActionType::ADD | ActionType::UPDATE_NODE_TAINT,
        );
        assert!(reg.covers(&ClusterEvent::NODE_ADD));
        assert!(reg.covers(&ClusterEvent::new(
            EventResource::Node,
            ActionType::UPDATE_NODE_TAINT | ActionType::UPDATE_NODE_LABEL
        )));
        assert!(!reg.covers(&ClusterEvent::NODE_DELETE));
        assert!(!reg.covers(&ClusterEvent::ASSIGNED_POD_ADD));
        assert!(reg.covers(&ClusterEvent::UNSCHEDULABLE_TIMEOUT));
    }
}
