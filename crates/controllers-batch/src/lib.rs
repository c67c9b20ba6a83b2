//! The batch controllers, as upstream's kube-controller-manager: [`job`] (pods run to
//! completion), [`cronjob`] (Jobs on a schedule) and [`ttl`] (finished Jobs deleted after
//! `ttlSecondsAfterFinished`).
//!
//! Each is a client of the API server through `kube`: this crate must not depend on the API
//! server or a store crate. Each module exposes `run(informers, config, shutdown)` and takes its
//! caches from the process's [`SharedInformers`](k8rs_controller_runtime::SharedInformers) (one
//! store per resource type for every controller, never a watch of its own); the decision of
//! one sync is a pure function (objects and the time in, API actions out) tested without a
//! server; time comes from a [`clock::Clock`] so that tests need not wait.

pub mod clock;
pub mod cronjob;
pub mod job;
use k8rs_controller_runtime as runtime;
#[cfg(test)]
mod testutil;
pub mod ttl;

/// Errors of these controllers. Only a failed start ends `run`; a failed sync is logged and
/// retried with a per-key exponential backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write to the API server failed: retryable, the key is requeued with backoff.
    #[error("{verb} {kind} {key}: {source}")]
    Write {
        verb: &'static str,
        kind: &'static str,
        key: String,
        #[source]
        source: kube::Error,
    },
    /// The informer cache has not seen our last writes yet: retried shortly.
    #[error("informer cache for {0} is out of date")]
    StaleCache(String),
    /// A Job's selector does not parse: retried with backoff (the API server validates
    /// selectors, so this should not happen).
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// The Job may not adopt pods now (a fresh read shows it gone or being deleted, or the
    /// read failed): retried with backoff.
    #[error("can't adopt pods for Job {0}: {1}")]
    CannotAdopt(String, String),
    /// The watches never listed although the controller was not shut down.
    #[error(transparent)]
    CachesNotSynced(#[from] k8rs_controller_runtime::NotSynced),
}
