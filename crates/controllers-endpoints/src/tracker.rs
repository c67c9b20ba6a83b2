//! Upstream's `EndpointSliceTracker`: what the informer cache must show before a Service is
//! synced again, so that a lagging cache does not make a controller create duplicate slices or
//! undo its own writes.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::discovery::v1::EndpointSlice;

#[derive(Default)]
struct Expected {
    /// Slice name to the resource version our write returned.
    written: HashMap<String, u64>,
    /// Slices we deleted.
    deleted: Vec<String>,
}

/// Per-owner expectations of the slice cache.
#[derive(Default)]
pub struct SliceTracker {
    owners: Mutex<HashMap<String, Expected>>,
}

fn rv(slice: &EndpointSlice) -> u64 {
    slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl SliceTracker {
    /// Records a create or update of `slice` (as the API server returned it) for `owner`.
    pub fn written(&self, owner: &str, slice: &EndpointSlice) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let name = slice.metadata.name.clone().unwrap_or_default();
        owners
            .entry(owner.to_string())
            .or_default()
            .written
            .insert(name, rv(slice));
    }

    /// Records a delete of the slice `name` of `owner`.
    pub fn deleted(&self, owner: &str, name: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let expected = owners.entry(owner.to_string()).or_default();
        expected.written.remove(name);
        expected.deleted.push(name.to_string());
    }

    /// Whether `cached` (the owner's slices in the cache) shows all of our writes; forgets the
    /// expectations that are met.
    pub fn in_sync(&self, owner: &str, cached: &[&EndpointSlice]) -> bool {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let Some(expected) = owners.get_mut(owner) else {
            return true;
        };
        let find = |name: &str| {
            cached
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
        };
        expected
            .written
            .retain(|name, version| find(name).is_none_or(|s| rv(s) < *version));
        expected.deleted.retain(|name| find(name).is_some());
        let done = expected.written.is_empty() && expected.deleted.is_empty();
        if done {
            owners.remove(owner);
        }
        done
    }

    /// Forgets an owner that is gone.
    pub fn forget(&self, owner: &str) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(owner);
    }
}
