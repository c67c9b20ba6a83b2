//! The default durable single-node [`Store`]: an embedded redb database, written by one thread
//! that group-commits every waiting request into one fsynced transaction, read through redb's
//! MVCC read transactions, with watches replayed from a history table and compaction.
//!
//! Layout: `current` (key -> create and mod revision, value), `history` (revision -> the change,
//! with the previous version inline, so that watches and past reads need only this table) and
//! `meta` (current and compacted revision). An empty store is at revision 1, as etcd is.
//!
//! A write is acknowledged only after its transaction committed with immediate durability, so a
//! crash (even `kill -9`) loses no acknowledged write. Blocking redb work never runs on the async
//! executor: writes on the writer thread, reads on `spawn_blocking`.
//!
//! This crate depends on `k8rs-store` (the trait) and redb only; nothing above the store layer.

mod codec;
mod read;
mod watch;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use k8rs_store::{
    Error as StoreError, KeyValue, Range, Result as StoreResult, Revision, Store, WatchStream,
};
use redb::{Database, ReadableTable, backends::InMemoryBackend};
use tokio::sync::{broadcast, oneshot};

use crate::read::{COMPACTED, CURRENT, HISTORY, META, Meta, Page, REVISION};
use crate::watch::{Phase, Watcher};
use crate::writer::{Batch, Op, Outcome, Request, Shared, Writer};

/// What failed inside the embedded store. Reaches `Store` callers as [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be opened or created (permissions, locked by another
    /// process, not a redb file). Not retryable without operator action.
    #[error("opening the store database failed: {0}")]
    Open(#[from] redb::DatabaseError),
    /// A database operation failed (I/O error, full disk). Nothing was acknowledged; retryable.
    #[error("store database operation failed: {0}")]
    Storage(#[from] redb::Error),
    /// A stored record could not be decoded: the file is damaged. Not retryable.
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
    /// The writer thread could not be started.
    #[error("starting the store writer thread failed: {0}")]
    Spawn(#[source] std::io::Error),
}

impl From<Error> for StoreError {
    fn from(err: Error) -> Self {
        StoreError::backend(err)
    }
}

/// Maps any redb failure to a backend error of the store.
pub(crate) fn storage(err: impl Into<redb::Error>) -> StoreError {
    Error::Storage(err.into()).into()
}

macro_rules! redb_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(err: $ty) -> Self {
                Error::Storage(err.into())
            }
        }
    )*};
}
redb_errors!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Tuning of an [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Compact automatically, keeping a number of recent revisions. `None`: only explicit
    /// [`Store::compact`] calls discard history.
    pub auto_compact: Option<AutoCompact>,
    /// The most requests committed in one transaction.
    pub max_batch: usize,
    /// How many committed batches the live watch channel holds for a slow watcher before it
    /// has to catch up from the history table.
    pub watch_buffer: usize,
    /// How many revisions of history one purge transaction removes after a compaction, so a
    /// large compaction never holds the writer for long.
    pub compaction_chunk: usize,
    /// redb's page cache size in bytes (`None`: redb's default).
    pub cache_size: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auto_compact: None,
            max_batch: 1024,
            watch_buffer: 1024,
            compaction_chunk: 10_000,
            cache_size: None,
        }
    }
}

/// Periodic compaction, as the API server's compactor does with etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCompact {
    /// How often to compact.
    pub interval: Duration,
    /// How many of the latest revisions stay readable and watchable (at least 1).
    pub retain_revisions: i64,
}

/// The embedded store. Dropping it finishes the queued writes, stops the writer thread (waiting
/// for it briefly) and closes the database; open watch streams then end.
pub struct EmbeddedStore {
    db: Arc<Database>,
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Batch>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("revision", &self.shared.revision.load(Ordering::Relaxed))
            .field("compacted", &self.shared.compacted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store file at `path`, creating it if missing. After a crash, redb repairs the
    /// file on open and the store continues from its last committed revision.
    pub fn open(path: &Path, options: Options) -> Result<Self, Error> {
        let mut builder = Database::builder();
        if let Some(bytes) = options.cache_size {
            builder.set_cache_size(bytes);
        }
        Self::start(builder.create(path)?, options)
    }

    /// A store held in memory only, for tests.
    pub fn in_memory() -> Result<Self, Error> {
        Self::in_memory_with(Options::default())
    }

    /// A store held in memory only, with options.
    pub fn in_memory_with(options: Options) -> Result<Self, Error> {
        let db = Database::builder().create_with_backend(InMemoryBackend::new())?;
        Self::start(db, options)
    }

    fn start(db: Database, options: Options) -> Result<Self, Error> {
        let db = Arc::new(db);
        let (meta, purge_pending) = init_tables(&db)?;
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(meta.revision),
            compacted: AtomicI64::new(meta.compacted),
        });
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let (requests, queue) = mpsc::channel();
        let writer = Writer::new(
            db.clone(),
            queue,
            events.clone(),
            shared.clone(),
            options,
            purge_pending,
        );
        let writer = std::thread::Builder::new()
            .name("k8rs-store-writer".into())
            .spawn(move || writer.run())
            .map_err(Error::Spawn)?;
        Ok(EmbeddedStore {
            db,
            requests,
            events,
            shared,
            writer: Some(writer),
        })
    }

    async fn submit(&self, op: Op) -> StoreResult<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Op { op, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(StoreError::backend)?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Shutdown);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

/// Creates the tables of a new store; returns the counters and whether compacted history is
/// still waiting to be purged.
fn init_tables(db: &Database) -> Result<(Meta, bool), Error> {
    let txn = db.begin_write()?;
    let (meta, purge_pending) = {
        txn.open_table(CURRENT)?;
        let history = txn.open_table(HISTORY)?;
        let mut table = txn.open_table(META)?;
        if table.get(REVISION)?.is_none() {
            table.insert(REVISION, 1)?;
            table.insert(COMPACTED, 0)?;
        }
        let meta = read::read_meta(&table).map_err(|e| Error::Corrupt(e.to_string()))?;
        let oldest = history.first()?.map(|(revision, _)| revision.value());
        (meta, oldest.is_some_and(|oldest| oldest <= meta.compacted))
    };
    txn.commit()?;
    Ok((meta, purge_pending))
}

fn unexpected(outcome: Outcome) -> StoreError {
    StoreError::backend(std::io::Error::other(format!(
        "store writer answered {outcome:?}"
    )))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |db| read::get(db, &key)).await
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> StoreResult<Range> {
        let (prefix, start_after) = (prefix.to_owned(), start_after.map(str::to_owned));
        self.read(move |db| {
            let page = Page {
                prefix: &prefix,
                start_after: start_after.as_deref(),
                limit,
            };
            read::range(db, page, revision)
        })
        .await
    }

    async fn count(&self, prefix: &str) -> StoreResult<u64> {
        let prefix = prefix.to_owned();
        self.read(move |db| read::count(db, &prefix)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> StoreResult<KeyValue> {
        match self
            .submit(Op::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Outcome::Put(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> StoreResult<KeyValue> {
        match self
            .submit(Op::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            Outcome::Put(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> StoreResult<(KeyValue, Revision)> {
        match self
            .submit(Op::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            Outcome::Deleted(kv, revision) => Ok((kv, revision)),
            other => Err(unexpected(other)),
        }
    }

    async fn current_revision(&self) -> StoreResult<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> StoreResult<WatchStream> {
        // Subscribe before anything is read, so that nothing committed later can be missed.
        let live = self.events.subscribe();
        if from <= 0 {
            let next = self.shared.revision.load(Ordering::SeqCst) + 1;
            return Ok(Watcher::new(&self.db, live, prefix, next, Phase::Live).into_stream());
        }
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if from <= compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        Ok(Watcher::new(&self.db, live, prefix, from, Phase::Replay).into_stream())
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        match self.submit(Op::Compact(revision)).await? {
            Outcome::Compacted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn compacted_revision(&self) -> StoreResult<Revision> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }
}
