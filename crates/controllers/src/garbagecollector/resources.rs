//! The resources the collector watches, as upstream's `GetDeletableResources`: every resource
//! discovery lists (at its group's preferred version) that supports `list`, `watch` and `delete`,
//! built-in or served for a CustomResourceDefinition, except upstream's ignored `events`.
//!
//! The table only grows: an index handed out stays the same resource for the collector's life,
//! and a resource discovery stops listing is marked inactive (its owners' kind then counts as
//! unknown).

use kube::core::ApiResource;
use kube::discovery::{ApiCapabilities, Scope, verbs};

/// Group-resources never watched (upstream's `DefaultIgnoredResources`).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// One watchable resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

impl Resource {
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Resource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    /// The `apiVersion` objects of this resource carry.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The type-erased resource for a dynamic `Api`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `plural.group`, as logs and upstream name it.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The resources of one discovered group (its preferred version) the collector must watch.
pub fn deletable(found: &[(ApiResource, ApiCapabilities)]) -> Vec<Resource> {
    let needed = [verbs::LIST, verbs::WATCH, verbs::DELETE];
    found
        .iter()
        .filter(|(_, caps)| needed.iter().all(|v| caps.supports_operation(v)))
        .filter(|(ar, _)| !ar.plural.contains('/'))
        .filter(|(ar, _)| {
            !IGNORED
                .iter()
                .any(|(g, r)| ar.group == *g && ar.plural == *r)
        })
        .map(|(ar, caps)| Resource {
            group: ar.group.clone(),
            version: ar.version.clone(),
            kind: ar.kind.clone(),
            plural: ar.plural.clone(),
            namespaced: caps.scope == Scope::Namespaced,
        })
        .collect()
}

/// Every resource ever watched, by index, and which are watched now.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    all: Vec<(Resource, bool)>,
}

/// How a discovery changed the watched set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Newly watched (or watched again, possibly at another version), by index.
    pub added: Vec<usize>,
    /// No longer listed by discovery, by index.
    pub removed: Vec<usize>,
}

impl Resources {
    /// A table watching exactly `resources`, indexed in that order.
    pub fn new(resources: Vec<Resource>) -> Self {
        Resources {
            all: resources.into_iter().map(|r| (r, true)).collect(),
        }
    }

    /// The resource at `index`, watched or not.
    pub fn get(&self, index: usize) -> Option<&Resource> {
        self.all.get(index).map(|(r, _)| r)
    }

    /// The indexes of the watched resources.
    pub fn active(&self) -> impl Iterator<Item = usize> + '_ {
        self.all
            .iter()
            .enumerate()
            .filter(|(_, (_, on))| *on)
            .map(|(i, _)| i)
    }

    /// The index of the watched resource an ownerReference names (`apiVersion` and `kind`; the
    /// version may differ from the watched one).
    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<usize> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.all
            .iter()
            .position(|(r, on)| *on && r.group == group && r.kind == kind)
    }

    /// Makes `discovered` the watched set. A resource keeps its index across versions (it is
    /// reported added again when its version changed).
    pub fn update(&mut self, discovered: Vec<Resource>) -> Changes {
        let mut changes = Changes::default();
        let mut listed = vec![false; self.all.len()];
        for r in discovered {
            let same = |(o, _): &(Resource, bool)| o.group == r.group && o.plural == r.plural;
            match self.all.iter().position(same) {
                Some(i) => {
                    listed[i] = true;
                    let (old, on) = &mut self.all[i];
                    if !*on || *old != r {
                        if *on {
                            changes.removed.push(i);
                        }
                        *old = r;
                        *on = true;
                        changes.added.push(i);
                    }
                }
                None => {
                    changes.added.push(self.all.len());
                    self.all.push((r, true));
                    listed.push(true);
                }
            }
        }
        for (i, (_, on)) in self.all.iter_mut().enumerate() {
            if *on && !listed[i] {
                *on = false;
                changes.removed.push(i);
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(namespaced: bool, ops: &[&str]) -> ApiCapabilities {
        ApiCapabilities {
            scope: if namespaced {
                Scope::Namespaced
            } else {
                Scope::Cluster
            },
            subresources: Vec::new(),
            operations: ops.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
        let gvk = kube::core::GroupVersionKind::gvk(group, "v1", kind);
        ApiResource::from_gvk_with_plural(&gvk, plural)
    }

    #[test]
    fn only_listable_watchable_deletable_resources_are_watched_and_events_never() {
        let all = ["list", "watch", "delete", "get"];
        let found = vec![
            (ar("", "ConfigMap", "configmaps"), caps(true, &all)),
            (ar("", "Event", "events"), caps(true, &all)),
            (ar("events.k8s.io", "Event", "events"), caps(true, &all)),
            (ar("", "Binding", "bindings"), caps(true, &["create"])),
            (
                ar("", "ComponentStatus", "componentstatuses"),
                caps(false, &["list", "get"]),
            ),
            (ar("example.com", "Widget", "widgets"), caps(false, &all)),
        ];
        assert_eq!(
            deletable(&found),
            vec![
                Resource::new("", "v1", "ConfigMap", "configmaps", true),
                Resource::new("example.com", "v1", "Widget", "widgets", false),
            ]
        );
    }

    #[test]
    fn looks_up_kinds_by_group_whatever_the_version() {
        let r = Resources::new(vec![
            Resource::new("", "v1", "Pod", "pods", true),
            Resource::new("apps", "v1", "ReplicaSet", "replicasets", true),
        ]);
        assert_eq!(r.lookup("apps/v1beta2", "ReplicaSet"), Some(1));
        assert_eq!(r.lookup("v1", "Pod"), Some(0));
        assert_eq!(r.lookup("example.com/v1", "Widget"), None);
    }

    #[test]
    fn updates_keep_indexes_and_report_what_changed() {
        let pods = Resource::new("", "v1", "Pod", "pods", true);
        let widgets = Resource::new("example.com", "v1", "Widget", "widgets", true);
        let mut r = Resources::new(vec![pods.clone()]);
        let changes = r.update(vec![pods.clone(), widgets.clone()]);
        assert_eq!(
            changes,
            Changes {
                added: vec![1],
                removed: vec![]
            }
        );
        assert_eq!(r.lookup("example.com/v1", "Widget"), Some(1));
        // The CRD went away.
        let changes = r.update(vec![pods.clone()]);
        assert_eq!(
            changes,
            Changes {
                added: vec![],
                removed: vec![1]
            }
        );
        assert_eq!(r.lookup("example.com/v1", "Widget"), None);
        // It came back at another version: same index.
        let v2 = Resource::new("example.com", "v2", "Widget", "widgets", true);
        let changes = r.update(vec![pods, v2]);
        assert_eq!(
            changes,
            Changes {
                added: vec![1],
                removed: vec![]
            }
        );
        assert_eq!(r.active().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(r.get(1).map(|w| w.version.as_str()), Some("v2"));
    }
}
