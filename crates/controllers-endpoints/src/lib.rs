//! The controllers that publish where a Service's pods are, as upstream's kube-controller-manager:
//! [`endpoints`] (core/v1 Endpoints), [`endpointslice`] (discovery.k8s.io/v1 EndpointSlices for
//! Services with a selector) and [`mirroring`] (EndpointSlices mirrored from hand-written
//! Endpoints of Services without a selector).
//!
//! Each is a client of the API server through `kube`: this crate must not depend on the API
//! server or a store crate. Each module exposes `run(informers, config, shutdown)` and takes its
//! caches from the process's [`SharedInformers`](k8rs_controller_runtime::SharedInformers) (one
//! store per resource type for every controller, never a watch of its own); the decision of
//! one sync is a pure function (objects in, API actions out) tested without a server.

pub mod endpoints;
pub mod endpointslice;
pub mod mirroring;
mod podutil;
use k8rs_controller_runtime as runtime;
mod slices;
#[cfg(test)]
mod testutil;
mod tracker;
mod trigger;
mod writes;

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
    /// The informer cache has not seen our last write yet: retried shortly.
    #[error("informer cache for {0} is out of date")]
    StaleCache(String),
    /// The watches never listed although the controller was not shut down.
    #[error(transparent)]
    CachesNotSynced(#[from] k8rs_controller_runtime::NotSynced),
}
