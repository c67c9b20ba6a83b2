//! The dependency graph and the collector's decisions, without IO, as upstream's
//! `GraphBuilder` and `attemptToDeleteItem` / `processDeletingDependentsItem` / `orphanDependents`.
//!
//! Nodes are keyed by UID, so a reference whose UID is not the owner's current one never finds
//! it: an owner with a mismatching UID counts as absent. An owner the graph has not seen is
//! neither present nor absent until the caller looked it up ([`Action::Verify`]), because the
//! owner's watch may lag the dependent's.

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::resources::Resources;

/// The finalizer of a foreground deletion: the owner waits for its blocking dependents.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion: dependents lose their reference to the owner.
pub const ORPHAN: &str = "orphan";

/// One object of the graph, from its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Index in the graph's [`Resources`].
    pub res: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Item {
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: its dependents go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    fn target(&self) -> Target {
        Target {
            res: self.res,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            resource_version: self.resource_version.clone(),
        }
    }
}

/// The object an action writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub res: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

/// The propagation policy of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Background,
    Foreground,
    Orphan,
}

/// An API action the collector must perform.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Look the owner up (by name, in `namespace` when namespaced); report whether the object
    /// found has the reference's UID.
    Verify {
        res: usize,
        namespace: Option<String>,
        name: String,
        uid: String,
    },
    /// Delete the object (precondition: its UID).
    Delete { target: Target, policy: Policy },
    /// Replace the object's ownerReferences (precondition: its resourceVersion).
    SetOwners {
        target: Target,
        owners: Vec<OwnerReference>,
    },
    /// Replace the object's finalizers (precondition: its resourceVersion).
    SetFinalizers {
        target: Target,
        finalizers: Vec<String>,
    },
}

impl Action {
    /// A key identifying the action (its target's resourceVersion included).
    pub fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// How one ownerReference stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Present and not being deleted in the foreground.
    Solid,
    /// Absent, or present under another UID.
    Dangling,
    /// Present and deleting its dependents in the foreground.
    Waiting,
    /// Not seen yet: must be looked up.
    Unknown,
}

/// The graph: the watched resources, every watched object, who depends on whom, and the owners
/// known to be gone.
#[derive(Debug, Default)]
pub struct Graph {
    resources: Resources,
    items: HashMap<String, Item>,
    dependents: HashMap<String, BTreeSet<String>>,
    absent: HashSet<String>,
}

impl Graph {
    /// An empty graph of objects of `resources`.
    pub fn new(resources: Resources) -> Self {
        Graph {
            resources,
            ..Default::default()
        }
    }

    /// The resources watched.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The resources watched, to update after a discovery.
    pub fn resources_mut(&mut self) -> &mut Resources {
        &mut self.resources
    }

    pub fn get(&self, uid: &str) -> Option<&Item> {
        self.items.get(uid)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The UIDs of the watched objects of resource `res`.
    pub fn uids_of(&self, res: usize) -> Vec<String> {
        let of = self.items.values().filter(|i| i.res == res);
        of.map(|i| i.uid.clone()).collect()
    }

    /// The UIDs of the objects that have owners (their owners' kinds may have become known).
    pub fn owned(&self) -> Vec<String> {
        let of = self.items.values().filter(|i| !i.owners.is_empty());
        of.map(|i| i.uid.clone()).collect()
    }

    /// Drops the objects of a resource no longer watched, without counting them absent (their
    /// dependents keep them as owners of an unknown kind); returns the UIDs to plan again.
    pub fn forget_resource(&mut self, res: usize) -> Vec<String> {
        let mut dirty = Vec::new();
        for uid in self.uids_of(res) {
            dirty.extend(self.remove(&uid));
            self.absent.remove(&uid);
        }
        dirty
    }

    /// Adds or updates an object; returns the UIDs whose decisions may have changed.
    pub fn upsert(&mut self, item: Item) -> Vec<String> {
        let uid = item.uid.clone();
        let mut dirty = vec![uid.clone()];
        if let Some(old) = self.items.remove(&uid) {
            for o in &old.owners {
                self.unlink(&o.uid, &uid);
                dirty.push(o.uid.clone());
            }
        }
        for o in &item.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            dirty.push(o.uid.clone());
        }
        dirty.extend(self.dependents_of(&uid));
        self.absent.remove(&uid);
        self.items.insert(uid, item);
        dirty
    }

    /// Removes a deleted object: it is absent from now on.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut dirty = self.dependents_of(uid);
        if let Some(old) = self.items.remove(uid) {
            for o in &old.owners {
                self.unlink(&o.uid, uid);
                dirty.push(o.uid.clone());
            }
        }
        self.absent.insert(uid.to_string());
        dirty
    }

    /// A lookup found no owner with this UID.
    pub fn confirm_absent(&mut self, uid: &str) -> Vec<String> {
        if self.items.contains_key(uid) {
            return Vec::new();
        }
        self.absent.insert(uid.to_string());
        self.dependents_of(uid)
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(deps) = self.dependents.get_mut(owner) {
            deps.remove(dependent);
            if deps.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<String> {
        let deps = self.dependents.get(uid).into_iter().flatten();
        deps.filter(|d| self.items.contains_key(*d))
            .cloned()
            .collect()
    }

    /// The actions the objects `dirty` call for.
    pub fn plan<'a>(&self, dirty: impl IntoIterator<Item = &'a String>) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut seen = HashSet::new();
        for uid in dirty {
            if !seen.insert(uid) {
                continue;
            }
            if let Some(item) = self.items.get(uid) {
                self.plan_item(item, &mut actions);
            }
        }
        let mut unique = HashSet::new();
        actions.retain(|a| unique.insert(a.key()));
        actions
    }

    fn plan_item(&self, item: &Item, out: &mut Vec<Action>) {
        if item.deleting {
            if item.has_finalizer(ORPHAN) {
                self.orphan_dependents(item, out);
            } else if item.has_finalizer(FOREGROUND) {
                self.process_deleting_dependents(item, out);
            }
            return;
        }
        if item.owners.is_empty() {
            return;
        }
        self.attempt_to_delete(item, out);
    }

    /// An owner deleted with the `orphan` finalizer: its dependents lose their reference to it,
    /// then the finalizer goes.
    fn orphan_dependents(&self, owner: &Item, out: &mut Vec<Action>) {
        let deps = self.dependents_of(&owner.uid);
        if deps.is_empty() {
            out.push(without_finalizer(owner, ORPHAN));
            return;
        }
        for dep in deps.iter().filter_map(|d| self.items.get(d)) {
            let owners = dep.owners.iter().filter(|o| o.uid != owner.uid);
            out.push(Action::SetOwners {
                target: dep.target(),
                owners: owners.cloned().collect(),
            });
        }
    }

    /// An owner deleted in the foreground: once no dependent blocks it, the finalizer goes.
    fn process_deleting_dependents(&self, owner: &Item, out: &mut Vec<Action>) {
        let blocking = self.dependents_of(&owner.uid).into_iter().any(|d| {
            self.items.get(&d).is_some_and(|dep| {
                dep.owners
                    .iter()
                    .any(|o| o.uid == owner.uid && o.block_owner_deletion == Some(true))
            })
        });
        if !blocking {
            out.push(without_finalizer(owner, FOREGROUND));
        }
    }

    fn classify(&self, owner: &OwnerReference) -> Owner {
        if let Some(o) = self.items.get(&owner.uid) {
            if o.deleting_dependents() {
                return Owner::Waiting;
            }
            return Owner::Solid;
        }
        if self.absent.contains(&owner.uid) {
            return Owner::Dangling;
        }
        if self
            .resources
            .lookup(&owner.api_version, &owner.kind)
            .is_none()
        {
            // A kind this collector does not watch: it cannot tell, so it keeps the object.
            return Owner::Solid;
        }
        Owner::Unknown
    }

    /// A dependent: deleted once no owner remains (or its owners wait for it), its references
    /// to absent or waiting owners removed when another owner remains.
    fn attempt_to_delete(&self, item: &Item, out: &mut Vec<Action>) {
        let states: Vec<(Owner, &OwnerReference)> =
            item.owners.iter().map(|o| (self.classify(o), o)).collect();
        let unknown: Vec<Action> = states
            .iter()
            .filter(|(s, _)| *s == Owner::Unknown)
            .filter_map(|(_, o)| self.verify(item, o))
            .collect();
        if !unknown.is_empty() {
            out.extend(unknown);
            return;
        }
        let count = |want: Owner| states.iter().filter(|(s, _)| *s == want).count();
        let (solid, waiting) = (count(Owner::Solid), count(Owner::Waiting));
        if solid > 0 {
            if solid < states.len() {
                let keep = states.iter().filter(|(s, _)| *s == Owner::Solid);
                out.push(Action::SetOwners {
                    target: item.target(),
                    owners: keep.map(|(_, o)| (*o).clone()).collect(),
                });
            }
            return;
        }
        let has_dependents = !self.dependents_of(&item.uid).is_empty();
        if waiting > 0 && has_dependents {
            let blocks_waiting = states
                .iter()
                .any(|(s, o)| *s == Owner::Waiting && o.block_owner_deletion == Some(true));
            if blocks_waiting {
                // Unblock the waiting owners first, so a cycle cannot deadlock.
                let owners = states.iter().map(|(s, o)| {
                    let mut o = (*o).clone();
                    if *s == Owner::Waiting {
                        o.block_owner_deletion = Some(false);
                    }
                    o
                });
                out.push(Action::SetOwners {
                    target: item.target(),
                    owners: owners.collect(),
                });
                return;
            }
            out.push(Action::Delete {
                target: item.target(),
                policy: Policy::Foreground,
            });
            return;
        }
        let policy = if item.has_finalizer(ORPHAN) {
            Policy::Orphan
        } else if item.has_finalizer(FOREGROUND) {
            Policy::Foreground
        } else {
            Policy::Background
        };
        out.push(Action::Delete {
            target: item.target(),
            policy,
        });
    }

    fn verify(&self, item: &Item, owner: &OwnerReference) -> Option<Action> {
        let res = self.resources.lookup(&owner.api_version, &owner.kind)?;
        let namespaced = self.resources.get(res)?.namespaced;
        Some(Action::Verify {
            res,
            namespace: if namespaced {
                item.namespace.clone()
            } else {
                None
            },
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        })
    }
}

fn without_finalizer(item: &Item, finalizer: &str) -> Action {
    let keep = item.finalizers.iter().filter(|f| *f != finalizer);
    Action::SetFinalizers {
        target: item.target(),
        finalizers: keep.cloned().collect(),
    }
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
