//! [`EtcdStore`]: the `Store` trait on etcd's KV API, one transaction per write.

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::proto::{PbRangeResponse, PbTxnResponse};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KvClient, PutOptions, Txn, TxnOp,
    WatchClient,
};
use k8rs_store::{KeyValue, Range, Revision, Store, WatchStream};

use crate::compact::CompactionRecord;
use crate::config::EtcdConfig;
use crate::error::{Error, Failure, unexpected};
use crate::keys::{COMPACT_REV_KEY, Keyspace, NEVER_WRITTEN_KEY};
use crate::rpc::{call, delete_result, put_result, range_result, range_results, revision_of};

/// The largest response accepted from etcd (etcd's own default limit), so a big list is never
/// refused by the client.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// The `Store` trait on an etcd v3 cluster. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) kv: KvClient,
    pub(crate) watch: WatchClient,
    pub(crate) keys: Keyspace,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers (one cheap read), so a wrong address or
    /// credentials fail here rather than at the first request.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, Error> {
        let options = config.connect_options()?;
        let connect_failed = |source: Error| Error::Connect {
            endpoints: config.endpoints.clone(),
            source: Box::new(source),
        };
        let client = call(Client::connect(&config.endpoints, Some(options)))
            .await
            .map_err(connect_failed)?;
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            keys: Keyspace::new(config.prefix.as_deref().unwrap_or_default()),
        };
        store.probe_revision().await.map_err(connect_failed)?;
        Ok(store)
    }

    /// The current revision, from the header of a count of a key that is never written.
    async fn probe_revision(&self) -> Result<Revision, Error> {
        let response = self.get_raw(
            NEVER_WRITTEN_KEY.to_vec(),
            GetOptions::new().with_count_only(),
        );
        revision_of(response.await?.header.as_ref())
    }

    pub(crate) async fn get_raw(
        &self,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<PbRangeResponse, Error> {
        let mut kv = self.kv.clone();
        Ok(call(kv.get(key, Some(options))).await?.0)
    }

    pub(crate) async fn txn(&self, txn: Txn) -> Result<PbTxnResponse, Error> {
        let mut kv = self.kv.clone();
        Ok(call(kv.txn(txn)).await?.0)
    }

    /// The trait error for a failed read at `requested`.
    async fn read_failure(&self, err: Error, requested: Revision) -> k8rs_store::Error {
        match Failure::classify(err) {
            Failure::Compacted => match self.read_compaction_record().await {
                Ok((record, _)) => k8rs_store::Error::Compacted {
                    requested,
                    compacted: record.revision,
                },
                Err(err) => err.into(),
            },
            Failure::FutureRevision => k8rs_store::Error::FutureRevision(requested),
            Failure::Other(err) => err.into(),
        }
    }

    /// A range at a past revision, read in one transaction with the compaction record, which
    /// rejects the compacted revision itself (etcd still serves it).
    async fn range_past(
        &self,
        start: Vec<u8>,
        options: GetOptions,
        revision: Revision,
    ) -> k8rs_store::Result<PbRangeResponse> {
        let txn = Txn::new().and_then([
            TxnOp::get(COMPACT_REV_KEY, None),
            TxnOp::get(start, Some(options.with_revision(revision))),
        ]);
        let response = match self.txn(txn).await {
            Ok(response) => response,
            Err(err) => return Err(self.read_failure(err, revision).await),
        };
        let [record, range] = range_results(response)?;
        CompactionRecord::from_kvs(record.kvs)?.check(revision)?;
        Ok(range)
    }

    /// The error of a compare-and-swap whose `else` branch read the key.
    fn cas_failure(&self, key: &str, txn: PbTxnResponse) -> k8rs_store::Error {
        let current = range_result(txn).and_then(|range| {
            range
                .kvs
                .into_iter()
                .next()
                .map(|kv| self.keys.decode(kv))
                .transpose()
        });
        match current {
            Ok(Some(current)) => k8rs_store::Error::Conflict {
                key: key.to_owned(),
                current: Some(Box::new(current)),
            },
            Ok(None) => k8rs_store::Error::NotFound(key.to_owned()),
            Err(err) => err.into(),
        }
    }

    /// The compares that hold while `key` exists with `mod_revision == expected`.
    fn unchanged_since(key: &[u8], expected: Revision) -> [Compare; 2] {
        [
            Compare::mod_revision(key, CompareOp::Equal, expected),
            Compare::create_revision(key, CompareOp::Greater, 0),
        ]
    }

    async fn delete_any(&self, key: &str) -> k8rs_store::Result<(KeyValue, Revision)> {
        let mut kv = self.kv.clone();
        let options = DeleteOptions::new().with_prev_key();
        let response = call(kv.delete(self.keys.key(key), Some(options))).await?.0;
        let revision = revision_of(response.header.as_ref())?;
        match response.prev_kvs.into_iter().next() {
            Some(prev) => Ok((self.keys.decode(prev)?, revision)),
            None => Err(k8rs_store::Error::NotFound(key.to_owned())),
        }
    }

    async fn delete_unchanged(
        &self,
        key: &str,
        expected: Revision,
    ) -> k8rs_store::Result<(KeyValue, Revision)> {
        let full = self.keys.key(key);
        let txn = Txn::new()
            .when(Self::unchanged_since(&full, expected))
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded {
            return Err(self.cas_failure(key, response));
        }
        let revision = revision_of(response.header.as_ref())?;
        let deleted = delete_result(response)?.prev_kvs.into_iter().next();
        let deleted = deleted.ok_or_else(|| unexpected("delete without the deleted key-value"))?;
        Ok((self.keys.decode(deleted)?, revision))
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> k8rs_store::Result<Option<KeyValue>> {
        let response = self.get_raw(self.keys.key(key), GetOptions::new()).await?;
        let found = response
            .kvs
            .into_iter()
            .next()
            .map(|kv| self.keys.decode(kv));
        Ok(found.transpose()?)
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> k8rs_store::Result<Range> {
        let (start, end) = self.keys.range(prefix, start_after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let options = GetOptions::new().with_range(end).with_limit(limit);
        let (response, revision) = match revision.filter(|revision| *revision > 0) {
            Some(past) => (self.range_past(start, options, past).await?, past),
            None => {
                let response = self.get_raw(start, options).await?;
                let current = revision_of(response.header.as_ref())?;
                (response, current)
            }
        };
        Ok(Range {
            kvs: self.keys.decode_all(response.kvs)?,
            more: response.more,
            revision,
        })
    }

    async fn count(&self, prefix: &str) -> k8rs_store::Result<u64> {
        let (start, end) = self.keys.range(prefix, None);
        let response = self.get_raw(start, GetOptions::new().with_range(end).with_count_only());
        let count = response.await?.count;
        u64::try_from(count).map_err(|_| unexpected(format!("negative count {count}")).into())
    }

    async fn create(&self, key: &str, value: Bytes) -> k8rs_store::Result<KeyValue> {
        let full = self.keys.key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(
                full.as_slice(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded {
            return Err(k8rs_store::Error::AlreadyExists(key.to_owned()));
        }
        let revision = revision_of(response.header.as_ref())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> k8rs_store::Result<KeyValue> {
        let full = self.keys.key(key);
        let put_options = PutOptions::new().with_prev_key();
        let txn = Txn::new()
            .when(Self::unchanged_since(&full, expected))
            .and_then([TxnOp::put(full.clone(), value.to_vec(), Some(put_options))])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded {
            return Err(self.cas_failure(key, response));
        }
        let revision = revision_of(response.header.as_ref())?;
        let prev = put_result(response)?.prev_kv;
        let prev = prev.ok_or_else(|| unexpected("update without the previous key-value"))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> k8rs_store::Result<(KeyValue, Revision)> {
        match expected {
            Some(expected) => self.delete_unchanged(key, expected).await,
            None => self.delete_any(key).await,
        }
    }

    async fn current_revision(&self) -> k8rs_store::Result<Revision> {
        Ok(self.probe_revision().await?)
    }

    async fn watch(&self, prefix: &str, from: Revision) -> k8rs_store::Result<WatchStream> {
        self.open_watch(prefix, from).await
    }

    async fn compact(&self, revision: Revision) -> k8rs_store::Result<()> {
        self.compact_to(revision).await
    }

    async fn compacted_revision(&self) -> k8rs_store::Result<Revision> {
        Ok(self.read_compaction_record().await?.0.revision)
    }
}
