//! Read-only caches of the objects plugins look up besides pods and nodes: services and
//! controllers (default spreading), PodDisruptionBudgets (preemption), namespaces (affinity
//! namespace selectors) and storage (volume binding). They are kube-runtime reflector stores,
//! filled by the informers (or by tests through [`ListerWriters`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};

use crate::podinfo::pod_labels;

/// The stores plugins read.
#[derive(Clone)]
pub struct Listers {
    /// Services (default spreading).
    pub services: Store<Service>,
    /// ReplicaSets (default spreading).
    pub replica_sets: Store<ReplicaSet>,
    /// ReplicationControllers (default spreading).
    pub replication_controllers: Store<ReplicationController>,
    /// StatefulSets (default spreading).
    pub stateful_sets: Store<StatefulSet>,
    /// PodDisruptionBudgets (preemption).
    pub pdbs: Store<PodDisruptionBudget>,
    /// Namespaces (affinity namespace selectors).
    pub namespaces: Store<Namespace>,
    /// PersistentVolumeClaims (volume binding).
    pub pvcs: Store<PersistentVolumeClaim>,
    /// PersistentVolumes (volume binding).
    pub pvs: Store<PersistentVolume>,
    /// StorageClasses (volume binding).
    pub storage_classes: Store<StorageClass>,
}

/// The writing halves of [`Listers`].
pub struct ListerWriters {
    /// Services.
    pub services: Writer<Service>,
    /// ReplicaSets.
    pub replica_sets: Writer<ReplicaSet>,
    /// ReplicationControllers.
    pub replication_controllers: Writer<ReplicationController>,
    /// StatefulSets.
    pub stateful_sets: Writer<StatefulSet>,
    /// PodDisruptionBudgets.
    pub pdbs: Writer<PodDisruptionBudget>,
    /// Namespaces.
    pub namespaces: Writer<Namespace>,
    /// PersistentVolumeClaims.
    pub pvcs: Writer<PersistentVolumeClaim>,
    /// PersistentVolumes.
    pub pvs: Writer<PersistentVolume>,
    /// StorageClasses.
    pub storage_classes: Writer<StorageClass>,
}

impl std::fmt::Debug for Listers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listers").finish_non_exhaustive()
    }
}

impl Listers {
    /// Empty stores and their writers.
    pub fn new() -> (Self, ListerWriters) {
        let (services, w_services) = reflector::store();
        let (replica_sets, w_replica_sets) = reflector::store();
        let (replication_controllers, w_rcs) = reflector::store();
        let (stateful_sets, w_sets) = reflector::store();
        let (pdbs, w_pdbs) = reflector::store();
        let (namespaces, w_namespaces) = reflector::store();
        let (pvcs, w_pvcs) = reflector::store();
        let (pvs, w_pvs) = reflector::store();
        let (storage_classes, w_classes) = reflector::store();
        let listers = Self {
            services,
            replica_sets,
            replication_controllers,
            stateful_sets,
            pdbs,
            namespaces,
            pvcs,
            pvs,
            storage_classes,
        };
        let writers = ListerWriters {
            services: w_services,
            replica_sets: w_replica_sets,
            replication_controllers: w_rcs,
            stateful_sets: w_sets,
            pdbs: w_pdbs,
            namespaces: w_namespaces,
            pvcs: w_pvcs,
            pvs: w_pvs,
            storage_classes: w_classes,
        };
        (listers, writers)
    }

    /// Empty stores (tests and plugins that need none).
    pub fn empty() -> Self {
        Self::new().0
    }

    /// The labels of namespace `ns`, when known.
    pub fn namespace_labels(&self, ns: &str) -> Option<BTreeMap<String, String>> {
        let n = self.namespaces.get(&ObjectRef::new(ns))?;
        Some(n.metadata.labels.clone().unwrap_or_default())
    }

    /// The claim `ns/name`.
    pub fn pvc(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&ObjectRef::new(name).within(ns))
    }

    /// The volume `name`.
    pub fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(&ObjectRef::new(name))
    }

    /// The storage class `name`.
    pub fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.storage_classes.get(&ObjectRef::new(name))
    }

    /// Upstream's `helper.DefaultSelector`: the union of the selectors of every service,
    /// ReplicationController, ReplicaSet and StatefulSet that selects the pod. Empty when none
    /// does.
    pub fn default_selector(&self, pod: &Pod) -> Selector {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod_labels(pod);
        let mut merged = LabelSelector::default();
        let selects_map = |sel: &BTreeMap<String, String>| {
            !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        let add_map = |merged: &mut LabelSelector, sel: &BTreeMap<String, String>| {
            let m = merged.match_labels.get_or_insert_with(BTreeMap::new);
            m.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
        };
        for s in self
            .services
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        {
            if let Some(sel) = s
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .filter(|s| selects_map(s))
            {
                add_map(&mut merged, sel);
            }
        }
        for rc in self
            .replication_controllers
            .state()
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
        {
            if let Some(sel) = rc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .filter(|s| selects_map(s))
            {
                add_map(&mut merged, sel);
            }
        }
        let mut add_selector = |sel: &LabelSelector| {
            let Ok(parsed) = Selector::from_label_selector(sel) else {
                return;
            };
            if parsed.is_empty() || !parsed.matches(labels) {
                return;
            }
            if let Some(m) = sel.match_labels.as_ref() {
                add_map(&mut merged, m);
            }
            let exprs: &[LabelSelectorRequirement] =
                sel.match_expressions.as_deref().unwrap_or_default();
            merged
                .match_expressions
                .get_or_insert_with(Vec::new)
                .extend(exprs.iter().cloned());
        };
        for rs in self
            .replica_sets
            .state()
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
        {
            if let Some(spec) = rs.spec.as_ref() {
                add_selector(&spec.selector);
            }
        }
        for ss in self
            .stateful_sets
            .state()
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
        {
            if let Some(spec) = ss.spec.as_ref() {
                add_selector(&spec.selector);
            }
        }
        Selector::from_label_selector(&merged).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::watcher;

    #[test]
    fn default_selector_merges_selecting_services() {
        let (listers, mut w) = Listers::new();
        let svc = |name: &str, ns: &str, sel: &[(&str, &str)]| Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    sel.iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        };
        for s in [
            svc("web", "default", &[("app", "web")]),
            svc("other", "default", &[("app", "db")]),
            svc("elsewhere", "prod", &[("tier", "front")]),
        ] {
            w.services.apply_watcher_event(&watcher::Event::Apply(s));
        }
        let pod = PodBuilder::new("p")
            .label("app", "web")
            .label("tier", "front")
            .build();
        let sel = listers.default_selector(&pod);
        assert_eq!(sel.to_string(), "app=web");
        let lonely = PodBuilder::new("q").label("x", "y").build();
        assert!(listers.default_selector(&lonely).is_empty());
    }
}
