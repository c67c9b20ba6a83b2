//! The crate's error type, and how etcd failures map onto the `Store` trait's errors.

use std::path::PathBuf;
use std::time::Duration;

use k8rs_store::Revision;

/// Why talking to etcd failed. Every variant reaches `Store` callers as
/// [`k8rs_store::Error::Backend`] (retryable with backoff), except where a method maps an etcd
/// answer onto a more precise trait error (`Compacted`, `FutureRevision`, ...).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (no endpoint, bad URL scheme, TLS files half given). Fix the
    /// configuration; retrying does not help.
    #[error("invalid etcd configuration: {0}")]
    InvalidConfig(String),
    /// A TLS file named in the configuration cannot be read. Fix the path or permissions.
    #[error("cannot read etcd {what} {path:?}: {source}")]
    ReadTlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The client could not be set up, or the first request to etcd failed. Retryable.
    #[error("cannot connect to etcd at {endpoints:?}: {source}")]
    Connect {
        endpoints: Vec<String>,
        #[source]
        source: Box<Error>,
    },
    /// An etcd request failed (transport, gRPC status). Retryable with backoff.
    #[error("etcd request failed: {0}")]
    Request(#[source] etcd_client::Error),
    /// etcd did not answer in time. Retryable with backoff.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// etcd answered something this client does not understand (missing header, wrong response
    /// kind, a key outside the configured prefix or not UTF-8). Not expected from a healthy etcd.
    #[error("unexpected response from etcd: {0}")]
    UnexpectedResponse(String),
    /// etcd canceled a watch for a reason other than compaction. Re-list and watch again.
    #[error("etcd canceled the watch: {0}")]
    WatchCanceled(String),
    /// etcd ended the watch stream. Re-list and watch again.
    #[error("etcd closed the watch stream")]
    WatchClosed,
    /// Other API servers kept recording compactions while this one tried. Retry later.
    #[error("gave up recording the compaction of revision {0} after concurrent compactions")]
    CompactionContended(Revision),
}

impl From<Error> for k8rs_store::Error {
    fn from(err: Error) -> Self {
        k8rs_store::Error::backend(err)
    }
}

/// What an etcd error means to the `Store` contract.
#[derive(Debug)]
pub(crate) enum Failure {
    /// etcd's `ErrCompacted`: the requested revision was compacted away.
    Compacted,
    /// etcd's `ErrFutureRev`: the requested revision is newer than the store's.
    FutureRevision,
    /// Anything else.
    Other(Error),
}

/// The gRPC messages etcd sends for its revision errors (`mvcc.ErrCompacted`, `ErrFutureRev`).
const COMPACTED_MESSAGE: &str = "required revision has been compacted";
const FUTURE_REVISION_MESSAGE: &str = "required revision is a future revision";

impl Failure {
    pub(crate) fn classify(err: Error) -> Self {
        let message = match &err {
            Error::Request(etcd_client::Error::GRpcStatus(status)) => status.message(),
            _ => return Failure::Other(err),
        };
        if message.contains(COMPACTED_MESSAGE) {
            Failure::Compacted
        } else if message.contains(FUTURE_REVISION_MESSAGE) {
            Failure::FutureRevision
        } else {
            Failure::Other(err)
        }
    }
}

pub(crate) fn unexpected(what: impl Into<String>) -> Error {
    Error::UnexpectedResponse(what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: etcd_client::Error) -> Failure {
        Failure::classify(Error::Request(code))
    }

    #[test]
    fn revision_errors_are_recognised_by_message() {
        let compacted = tonic_status("etcdserver: mvcc: required revision has been compacted");
        assert!(matches!(status(compacted), Failure::Compacted));
        let future = tonic_status("etcdserver: mvcc: required revision is a future revision");
        assert!(matches!(status(future), Failure::FutureRevision));
        let other = tonic_status("etcdserver: request timed out");
        assert!(matches!(status(other), Failure::Other(_)));
    }

    #[test]
    fn errors_become_backend_errors() {
        let err: k8rs_store::Error = Error::WatchClosed.into();
        assert!(matches!(err, k8rs_store::Error::Backend(_)));
        assert!(err.to_string().contains("etcd closed the watch stream"));
    }

    fn tonic_status(message: &str) -> etcd_client::Error {
        tonic::Status::out_of_range(message).into()
    }
}
