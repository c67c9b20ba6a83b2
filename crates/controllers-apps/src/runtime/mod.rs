//! The plumbing every controller here shares, as client-go's: informers (a watch feeding a
//! cache and change callbacks), a work queue (deduplicated keys, one worker per key, rate-limited
//! requeue), expectations (not acting twice before one's own writes are observed) and events.

pub mod batch;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod queue;

pub use events::EventSink;
pub use expectations::Expectations;
pub use informer::{Change, Store};
pub use queue::WorkQueue;

use kube::ResourceExt;

/// The cache key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key_of<K: ResourceExt>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// Splits a key made by [`key_of`] into namespace and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}
