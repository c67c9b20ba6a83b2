//! The workload controllers of the controller manager, one module each, as upstream's
//! kube-controller-manager: [`replicaset`] (ReplicaSets and ReplicationControllers),
//! [`deployment`], [`daemonset`] and [`statefulset`], with the ControllerRevision helpers
//! the last two share in [`history`].
//!
//! Every controller is a client of the API server (through `kube`) and must not depend on the
//! API server or a store crate. Each exposes `run(informers, shutdown)`: the process's
//! [`SharedInformers`] fill the caches (one per resource type for every controller), a work
//! queue of `k8rs-controller-runtime` hands out one key at a time per object, and a sync computes
//! its decision as a pure function over a snapshot (unit-tested action by action) before a thin
//! shell writes it.

pub mod daemonset;
pub mod deployment;
pub mod history;
pub mod pods;
pub mod replicaset;
pub mod statefulset;

#[cfg(test)]
mod builders;

pub use k8rs_controller_runtime::SharedInformers;

/// Errors of the workload controllers. A sync that fails is retried with backoff; `run` only
/// returns an error when it cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed (retryable, the key is requeued with backoff).
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// Some of a sync's writes failed; the message says which (retryable).
    #[error("{0}")]
    Partial(String),
    /// The watches never listed although the controller was not shut down.
    #[error(transparent)]
    CachesNotSynced(#[from] k8rs_controller_runtime::NotSynced),
}

impl Error {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Api {
            action: action.into(),
            source,
        }
    }
}

/// The message of an API error as the API server wrote it (what upstream's events show).
pub(crate) fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Whether the API answered 404.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}
