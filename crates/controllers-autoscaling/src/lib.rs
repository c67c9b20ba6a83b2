//! The autoscaling controllers of the controller manager: [`hpa`], the
//! HorizontalPodAutoscaler controller on `autoscaling/v2` and the resource metrics API
//! (`metrics.k8s.io`), as upstream's kube-controller-manager runs it.
//!
//! A client of the API server (through `kube`): it must not depend on the API server or a
//! store crate. Its caches (HPAs, pods) come from the process's
//! [`SharedInformers`](k8rs_controller_runtime::SharedInformers); it starts no watch of its own.
//! Leader election is done around it by the caller.

pub mod hpa;

#[cfg(test)]
mod builders;

pub use hpa::{HpaConfig, run};

/// Errors of the autoscaling controllers. A sync that fails is retried after
/// [`HpaConfig::retry_after`]; `run` only returns an error when it cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed (retryable).
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The sync could not compute or apply a scale; the HPA's conditions and events say why
    /// (retryable).
    #[error("{0}")]
    SyncFailed(String),
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

/// Compiles only while the public future is `Send`.
#[allow(dead_code)]
fn run_is_send(
    informers: k8rs_controller_runtime::SharedInformers,
) -> impl Future<Output = Result<(), Error>> + Send {
    run(
        informers,
        HpaConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    )
}
