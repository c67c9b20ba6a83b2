//! Compaction, coordinated between API servers the way kube-apiserver does it: a record key whose
//! version is the compaction epoch is advanced by a compare-and-swap, and only the server whose
//! swap wins asks etcd to compact. The record also answers `compacted_revision`.
//!
//! etcd's `Compact(r)` keeps revision `r` itself readable (so an event at `r + 1` still carries
//! its previous value), while the trait makes reads and watch starts at `r` fail. The record
//! closes that gap: reads at a past revision and watches from one check it too.

use etcd_client::proto::PbKeyValue;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use k8rs_store::Revision;

use crate::error::{Error, Failure, unexpected};
use crate::keys::COMPACT_REV_KEY;
use crate::rpc::{call, revision_of};
use crate::store::EtcdStore;

/// How many times a compaction is retried when other servers record compactions meanwhile.
const RECORD_ATTEMPTS: usize = 8;

/// The last recorded compaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CompactionRecord {
    /// The record key's version: how many compactions were ever recorded (0 = none).
    pub(crate) epoch: i64,
    /// The last compacted revision (0 = none).
    pub(crate) revision: Revision,
}

impl CompactionRecord {
    /// The record in the result of reading [`COMPACT_REV_KEY`].
    pub(crate) fn from_kvs(kvs: Vec<PbKeyValue>) -> Result<Self, Error> {
        match kvs.into_iter().next() {
            Some(kv) => Ok(CompactionRecord {
                epoch: kv.version,
                revision: parse_revision(&kv.value)?,
            }),
            None => Ok(CompactionRecord::default()),
        }
    }

    /// `Compacted` if a read at or watch from `requested` reaches into compacted history.
    pub(crate) fn check(&self, requested: Revision) -> k8rs_store::Result<()> {
        if requested <= self.revision {
            return Err(k8rs_store::Error::Compacted {
                requested,
                compacted: self.revision,
            });
        }
        Ok(())
    }
}

impl EtcdStore {
    /// The compaction record, and the store's current revision.
    pub(crate) async fn read_compaction_record(
        &self,
    ) -> Result<(CompactionRecord, Revision), Error> {
        let response = self
            .get_raw(COMPACT_REV_KEY.to_vec(), GetOptions::new())
            .await?;
        let current = revision_of(response.header.as_ref())?;
        Ok((CompactionRecord::from_kvs(response.kvs)?, current))
    }

    pub(crate) async fn compact_to(&self, revision: Revision) -> k8rs_store::Result<()> {
        for _ in 0..RECORD_ATTEMPTS {
            let (record, current) = self.read_compaction_record().await?;
            if revision > current {
                return Err(k8rs_store::Error::FutureRevision(revision));
            }
            record.check(revision)?;
            if self.record_compaction(record.epoch, revision).await? {
                return self.compact_etcd(revision).await;
            }
            tracing::debug!(
                revision,
                "another server recorded a compaction first; re-reading"
            );
        }
        Err(Error::CompactionContended(revision).into())
    }

    /// Advances the record from `epoch` to `revision`; false if another server moved it first.
    async fn record_compaction(&self, epoch: i64, revision: Revision) -> Result<bool, Error> {
        let txn = Txn::new()
            .when([Compare::version(COMPACT_REV_KEY, CompareOp::Equal, epoch)])
            .and_then([TxnOp::put(COMPACT_REV_KEY, revision.to_string(), None)]);
        Ok(self.txn(txn).await?.succeeded)
    }

    async fn compact_etcd(&self, revision: Revision) -> k8rs_store::Result<()> {
        let mut kv = self.kv.clone();
        let Err(err) = call(kv.compact(revision, None)).await else {
            return Ok(());
        };
        match Failure::classify(err) {
            // etcd was compacted further already (not through this crate): nothing left to do.
            Failure::Compacted => Ok(()),
            Failure::FutureRevision => Err(k8rs_store::Error::FutureRevision(revision)),
            Failure::Other(err) => Err(err.into()),
        }
    }
}

fn parse_revision(value: &[u8]) -> Result<Revision, Error> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<Revision>().ok())
        .filter(|revision| *revision >= 0)
        .ok_or_else(|| {
            unexpected(format!(
                "compaction record holds {:?}, not a revision",
                String::from_utf8_lossy(value)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_holds_a_decimal_revision() {
        assert_eq!(parse_revision(b"42").ok(), Some(42));
        assert!(parse_revision(b"").is_err());
        assert!(parse_revision(b"-3").is_err());
        assert!(parse_revision(b"\xff").is_err());
    }

    #[test]
    fn the_record_rejects_revisions_at_or_below_it() {
        let kv = PbKeyValue {
            value: b"7".to_vec(),
            version: 3,
            ..PbKeyValue::default()
        };
        let record = CompactionRecord::from_kvs(vec![kv]).unwrap_or_default();
        assert_eq!(
            record,
            CompactionRecord {
                epoch: 3,
                revision: 7
            }
        );
        assert!(matches!(
            record.check(7),
            Err(k8rs_store::Error::Compacted {
                requested: 7,
                compacted: 7
            })
        ));
        assert!(record.check(8).is_ok());
        assert_eq!(
            CompactionRecord::from_kvs(vec![]).ok(),
            Some(CompactionRecord::default())
        );
    }
}
