//! The resource usage hollow pods report (from their annotations), shared with whoever serves
//! metrics: one writer (the pod loop), cheap readers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::annotations::PodUsage;
use crate::kubelet::PodKey;

/// Usage per pod, and the node each pod runs on.
#[derive(Clone, Debug, Default)]
pub struct UsageTable {
    inner: Arc<RwLock<HashMap<PodKey, (String, PodUsage)>>>,
}

impl UsageTable {
    /// The usage `namespace/name` reports, if it reports any.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodUsage> {
        let key = (namespace.to_string(), name.to_string());
        self.read(|m| m.get(&key).map(|(_, u)| *u))
    }

    /// Every reporting pod on `node`: namespace, name and usage, sorted.
    pub fn node(&self, node: &str) -> Vec<(String, String, PodUsage)> {
        let mut pods: Vec<_> = self.read(|m| {
            m.iter()
                .filter(|(_, (n, _))| n == node)
                .map(|((ns, name), (_, u))| (ns.clone(), name.clone(), *u))
                .collect()
        });
        pods.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        pods
    }

    pub(crate) fn set(&self, key: &PodKey, node: &str, usage: Option<PodUsage>) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match usage {
            Some(u) => {
                map.insert(key.clone(), (node.to_string(), u));
            }
            None => {
                map.remove(key);
            }
        }
    }

    pub(crate) fn remove(&self, key: &PodKey) {
        self.set(key, "", None);
    }

    fn read<T>(&self, f: impl FnOnce(&HashMap<PodKey, (String, PodUsage)>) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }
}
