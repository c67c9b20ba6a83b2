//! The batch controllers, as upstream's kube-controller-manager: [`job`] (pods run to
//! completion), [`cronjob`] (Jobs on a schedule) and [`ttl`] (finished Jobs deleted after
//! `ttlSecondsAfterFinished`).
//!
//! Each is a client of the API server through `kube`: this crate must not depend on the API
//! server or a store crate. Each module exposes `run(client, config, shutdown)`; the decision of
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
    /// The watches never listed (the API server went away before they synced).
    #[error("caches did not sync before shutdown")]
    CachesNotSynced,
}
