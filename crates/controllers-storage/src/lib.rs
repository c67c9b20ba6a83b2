//! The storage controllers of the controller manager: [`pvbinder`] (upstream's
//! PersistentVolume controller: binding claims to volumes, phases, reclaiming) and
//! [`localpath`] (a built-in local-path provisioner with a default StorageClass, as k3s ships
//! rancher's `local-path-provisioner`).
//!
//! Both are clients of the API server through `kube`: this crate must not depend on the API
//! server, a store, the scheduler or the kubelet. Their caches come from the process's
//! [`SharedInformers`], their queues and workers from `k8rs-controller-runtime`. The decision of
//! one sync is a pure function (objects in, API actions out) tested without a server.

pub mod localpath;
pub mod pvbinder;
#[cfg(test)]
mod testutil;
pub mod volume;

pub use k8rs_controller_runtime::SharedInformers;

/// Errors of these controllers. Only a failed start ends `run`; a failed sync is logged and
/// retried with a per-key exponential backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write to the API server failed (often a conflict with a newer object): retryable, the
    /// key is requeued with backoff.
    #[error("{verb} {kind} {key}: {source}")]
    Write {
        verb: &'static str,
        kind: &'static str,
        key: String,
        #[source]
        source: kube::Error,
    },
    /// A read from the API server failed: retryable.
    #[error("get {kind} {key}: {source}")]
    Read {
        kind: &'static str,
        key: String,
        #[source]
        source: kube::Error,
    },
    /// The informer cache does not hold an object a sync needs yet: retried shortly.
    #[error("informer cache does not hold {0} yet")]
    StaleCache(String),
    /// The watches never listed although the controller was not shut down.
    #[error(transparent)]
    CachesNotSynced(#[from] k8rs_controller_runtime::NotSynced),
}
