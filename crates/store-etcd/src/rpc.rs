//! Bounded etcd calls and the unpacking of their protobuf answers, which never trusts a field to
//! be present.

use std::future::Future;
use std::time::Duration;

use etcd_client::proto::{
    PbDeleteResponse, PbPutResponse, PbRangeResponse, PbResponseHeader, PbTxnOpResponse,
    PbTxnResponse,
};
use k8rs_store::Revision;

use crate::error::{Error, unexpected};

/// How long one unary etcd request may take before it fails as a backend error.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one etcd request, failing with [`Error::Timeout`] after [`REQUEST_TIMEOUT`].
pub(crate) async fn call<T>(
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(answer) => answer.map_err(Error::Request),
        Err(_) => Err(Error::Timeout(REQUEST_TIMEOUT)),
    }
}

/// The store revision a response was served at.
pub(crate) fn revision_of(header: Option<&PbResponseHeader>) -> Result<Revision, Error> {
    match header {
        Some(header) if header.revision > 0 => Ok(header.revision),
        Some(header) => Err(unexpected(format!(
            "response at revision {}",
            header.revision
        ))),
        None => Err(unexpected("response without header")),
    }
}

/// The result of the single operation a transaction branch ran.
fn only_result(txn: PbTxnResponse) -> Result<PbTxnOpResponse, Error> {
    txn.responses
        .into_iter()
        .next()
        .and_then(|op| op.response)
        .ok_or_else(|| unexpected("transaction response without an operation result"))
}

pub(crate) fn range_result(txn: PbTxnResponse) -> Result<PbRangeResponse, Error> {
    as_range(only_result(txn)?)
}

/// The results of a transaction branch made of `N` ranges.
pub(crate) fn range_results<const N: usize>(
    txn: PbTxnResponse,
) -> Result<[PbRangeResponse; N], Error> {
    let ranges = txn.responses.into_iter().map(|op| {
        op.response
            .ok_or_else(|| unexpected("transaction response without an operation result"))
            .and_then(as_range)
    });
    let ranges = ranges.collect::<Result<Vec<_>, Error>>()?;
    let count = ranges.len();
    ranges
        .try_into()
        .map_err(|_| unexpected(format!("expected {N} range results, got {count}")))
}

fn as_range(result: PbTxnOpResponse) -> Result<PbRangeResponse, Error> {
    match result {
        PbTxnOpResponse::ResponseRange(range) => Ok(range),
        other => Err(unexpected(format!(
            "expected a range result, got {other:?}"
        ))),
    }
}

pub(crate) fn put_result(txn: PbTxnResponse) -> Result<PbPutResponse, Error> {
    match only_result(txn)? {
        PbTxnOpResponse::ResponsePut(put) => Ok(put),
        other => Err(unexpected(format!("expected a put result, got {other:?}"))),
    }
}

pub(crate) fn delete_result(txn: PbTxnResponse) -> Result<PbDeleteResponse, Error> {
    match only_result(txn)? {
        PbTxnOpResponse::ResponseDeleteRange(delete) => Ok(delete),
        other => Err(unexpected(format!(
            "expected a delete result, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::PbResponseOp;

    use super::*;

    #[test]
    fn missing_or_mismatched_results_are_errors_not_panics() {
        assert!(range_result(PbTxnResponse::default()).is_err());
        let empty_op = PbTxnResponse {
            responses: vec![PbResponseOp { response: None }],
            ..PbTxnResponse::default()
        };
        assert!(put_result(empty_op).is_err());
        let put = PbTxnResponse {
            responses: vec![PbResponseOp {
                response: Some(PbTxnOpResponse::ResponsePut(PbPutResponse::default())),
            }],
            ..PbTxnResponse::default()
        };
        assert!(delete_result(put.clone()).is_err());
        assert!(range_results::<1>(put.clone()).is_err());
        assert!(put_result(put).is_ok());
        let range = PbResponseOp {
            response: Some(PbTxnOpResponse::ResponseRange(PbRangeResponse::default())),
        };
        let two = PbTxnResponse {
            responses: vec![range.clone(), range],
            ..PbTxnResponse::default()
        };
        assert!(range_results::<2>(two.clone()).is_ok());
        assert!(range_results::<3>(two).is_err());
    }

    #[test]
    fn a_response_needs_a_header_with_a_revision() {
        assert!(revision_of(None).is_err());
        let zero = PbResponseHeader::default();
        assert!(revision_of(Some(&zero)).is_err());
        let header = PbResponseHeader {
            revision: 7,
            ..PbResponseHeader::default()
        };
        assert_eq!(revision_of(Some(&header)).ok(), Some(7));
    }
}
