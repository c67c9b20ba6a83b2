//! Secondary indexes over a shared store, as client-go's Indexer: the objects of a store under
//! keys computed from each object, so a sync reads the pods one owner controls without walking
//! every pod of the cluster.
//!
//! The informer that feeds the store keeps its indexes current: each change updates them after
//! the store and before any change handler runs, and a relist rebuilds them from the new store.
//! The index holds the store's own `Arc`s, so it costs a key and a pointer per entry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::Resource;

use crate::Watched;

/// Computes the index keys of an object (none, one or several).
pub type IndexKeys<K> = fn(&K) -> Vec<String>;

/// A read handle on one index of a shared store; cheap to clone.
pub struct Index<K> {
    data: Arc<IndexData<K>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Index {
            data: Arc::clone(&self.data),
        }
    }
}

impl<K: Watched> Index<K> {
    /// The objects indexed under `key`, in no particular order.
    pub fn get(&self, key: &str) -> Vec<Arc<K>> {
        self.data
            .read()
            .get(key)
            .map(|bucket| bucket.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any object indexed under `key` satisfies `pred` (without copying the bucket).
    pub fn any(&self, key: &str, pred: impl Fn(&K) -> bool) -> bool {
        self.data
            .read()
            .get(key)
            .is_some_and(|bucket| bucket.values().any(|o| pred(o)))
    }

    /// On the [`BY_CONTROLLER`] index: the objects the owner with uid `uid` in namespace `ns`
    /// may claim (those it controls and the namespace's orphans), as upstream's controllers
    /// read them before claiming.
    pub fn claimable(&self, ns: &str, uid: &str) -> Vec<Arc<K>> {
        // An object has one key in this index, so the two buckets are disjoint.
        let buckets = self.data.read();
        [uid, orphan_key(ns).as_str()]
            .into_iter()
            .filter_map(|key| buckets.get(key))
            .flat_map(|bucket| bucket.values().cloned())
            .collect()
    }

    pub(crate) fn new(data: Arc<IndexData<K>>) -> Self {
        Index { data }
    }
}

/// `namespace/name`: identifies an object within one store.
type ObjectId = String;

type Buckets<K> = HashMap<String, HashMap<ObjectId, Arc<K>>>;

/// One index's function and contents; written only by the informer's task.
pub(crate) struct IndexData<K> {
    pub(crate) name: &'static str,
    keys: IndexKeys<K>,
    buckets: RwLock<Buckets<K>>,
}

impl<K: Watched> IndexData<K> {
    pub(crate) fn new(name: &'static str, keys: IndexKeys<K>) -> Self {
        IndexData {
            name,
            keys,
            buckets: RwLock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Buckets<K>> {
        self.buckets.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Buckets<K>> {
        self.buckets.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the contents with an index of `objects`.
    pub(crate) fn rebuild(&self, objects: &[Arc<K>]) {
        let mut buckets = Buckets::<K>::new();
        for obj in objects {
            for key in (self.keys)(obj) {
                buckets
                    .entry(key)
                    .or_default()
                    .insert(object_id(&**obj), Arc::clone(obj));
            }
        }
        *self.write() = buckets;
    }

    /// Moves an object from the keys of its `old` version to those of `new` (`None`: deleted).
    pub(crate) fn update(&self, old: Option<&K>, new: Option<&Arc<K>>) {
        let id = match (old, new) {
            (_, Some(new)) => object_id(&**new),
            (Some(old), None) => object_id(old),
            (None, None) => return,
        };
        let old_keys = old.map(self.keys).unwrap_or_default();
        let new_keys = new.map(|n| (self.keys)(n)).unwrap_or_default();
        let mut buckets = self.write();
        for key in old_keys.iter().filter(|k| !new_keys.contains(k)) {
            if let Some(bucket) = buckets.get_mut(key) {
                bucket.remove(&id);
                if bucket.is_empty() {
                    buckets.remove(key);
                }
            }
        }
        if let Some(new) = new {
            for key in new_keys {
                buckets
                    .entry(key)
                    .or_default()
                    .insert(id.clone(), Arc::clone(new));
            }
        }
    }
}

fn object_id<K: Resource>(obj: &K) -> ObjectId {
    let meta = obj.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The name of [`SharedInformers::by_controller`](crate::SharedInformers::by_controller)'s index.
pub const BY_CONTROLLER: &str = "controller";

/// The index key of the objects of namespace `ns` that no controller owns.
pub fn orphan_key(ns: &str) -> String {
    format!("{ns}/")
}

/// Keys an object by its controller's uid, or as an orphan of its namespace (upstream's
/// `controllerUIDIndex` and `orphanPodIndexKey`). A uid never contains `/`, so the two kinds of
/// key cannot collide.
pub fn controller_keys<K: Resource>(obj: &K) -> Vec<String> {
    let meta = obj.meta();
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    match controller {
        Some(r) => vec![r.uid.clone()],
        None => vec![orphan_key(meta.namespace.as_deref().unwrap_or_default())],
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn cm(name: &str, controller: Option<&str>) -> Arc<ConfigMap> {
        let owner = controller.map(|uid| OwnerReference {
            uid: uid.into(),
            controller: Some(true),
            ..OwnerReference::default()
        });
        Arc::new(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: owner.map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        })
    }

    fn names(mut objects: Vec<Arc<ConfigMap>>) -> Vec<String> {
        objects.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        objects
            .iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn objects_move_between_keys_as_their_controller_changes() {
        let data = Arc::new(IndexData::new(BY_CONTROLLER, controller_keys::<ConfigMap>));
        let index = Index::new(Arc::clone(&data));
        data.rebuild(&[cm("a", Some("u1")), cm("b", None), cm("c", Some("u1"))]);
        assert_eq!(names(index.get("u1")), ["a", "c"]);
        assert_eq!(names(index.get(&orphan_key("ns"))), ["b"]);

        // Adopted, released, deleted.
        let (b_old, b_new) = (cm("b", None), cm("b", Some("u1")));
        data.update(Some(&b_old), Some(&b_new));
        assert_eq!(names(index.get("u1")), ["a", "b", "c"]);
        assert!(index.get(&orphan_key("ns")).is_empty());
        data.update(Some(&cm("a", Some("u1"))), Some(&cm("a", None)));
        data.update(Some(&cm("c", Some("u1"))), None);
        assert_eq!(names(index.get("u1")), ["b"]);
        assert_eq!(names(index.claimable("ns", "u1")), ["a", "b"]);
    }

    #[test]
    fn an_update_keeps_the_newest_version_under_an_unchanged_key() {
        let data = Arc::new(IndexData::new(BY_CONTROLLER, controller_keys::<ConfigMap>));
        let index = Index::new(Arc::clone(&data));
        let old = cm("a", Some("u1"));
        data.rebuild(std::slice::from_ref(&old));
        let mut newer = (*old).clone();
        newer.data = Some([("k".to_string(), "v".to_string())].into());
        let newer = Arc::new(newer);
        data.update(Some(&old), Some(&newer));
        let got = index.get("u1");
        assert_eq!(got.len(), 1);
        assert!(Arc::ptr_eq(&got[0], &newer));
    }
}
