//! The storage interface of the API server: a revisioned key-value store with compare-and-swap
//! writes, watches that start from any retained revision, and compaction, with the semantics of
//! etcd's v3 API as Kubernetes uses it.
//!
//! Every write advances one cluster-wide revision by exactly one. A key's `mod_revision` is the
//! revision of its last write and serves as its `resourceVersion`; `create_revision` is the
//! revision that created it. Watches deliver every change to the watched prefix in revision
//! order, with no gap, starting at any revision newer than the last compaction.
//!
//! This crate must not depend on any backend: backends depend on it. With the `conformance`
//! feature it exports the suite that every backend runs ([`conformance`]).

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

#[cfg(feature = "conformance")]
pub mod conformance;

/// A revision of the whole store. Revisions start at 1 and grow by one per write.
pub type Revision = i64;

/// One stored key with its value and revisions.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// The result of a range read: a consistent snapshot at `revision`.
#[derive(Debug, Clone)]
pub struct Range {
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the result short and more keys follow the last one returned.
    pub more: bool,
    /// The store revision the snapshot was taken at.
    pub revision: Revision,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created (`prev` is `None`) or updated.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`; `prev` holds its last value.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key this change is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// What a failed store operation means to the caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` found the key already present. Not retryable.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// The key does not exist. Not retryable.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A compare-and-swap saw another revision: re-read (the current value is attached when the
    /// key exists) and retry the read-modify-write.
    #[error("key {key:?} was modified concurrently")]
    Conflict {
        key: String,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision was compacted away. Re-list and watch from the new revision.
    #[error("revision {requested} has been compacted (oldest retained {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is in the future.
    #[error("revision {0} is newer than the store's current revision")]
    FutureRevision(Revision),
    /// The backend failed (I/O, connection, corruption). Retryable with backoff; nothing was
    /// acknowledged.
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

impl Error {
    pub fn backend(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Backend(Box::new(err))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stream of changes, in revision order; it ends only with an error or when the store closes.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The revisioned key-value store.
///
/// Keys are UTF-8 strings; a "prefix" selects every key that starts with it. All writes are
/// durable when they return `Ok`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Reads the keys that start with `prefix`, in key order, from the first key strictly
    /// greater than `start_after` (when given), at most `limit` of them (0 = no limit).
    /// With `revision` the read is of that past snapshot (errors: `Compacted`,
    /// `FutureRevision`), else of the current one.
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Range>;

    /// Counts the keys that start with `prefix` at the current revision.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Creates `key`; fails with `AlreadyExists` if it exists. Returns the new key-value.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces `key` if its `mod_revision` is still `expected`; `Conflict` otherwise, `NotFound`
    /// if it does not exist. Returns the new key-value.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key`, if `expected` is given only when its `mod_revision` still equals it.
    /// Returns the deleted key-value and the revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// The store's current revision (the revision of the last write), read cheaply.
    async fn current_revision(&self) -> Result<Revision>;

    /// Watches the keys that start with `prefix` and delivers every change with a revision of
    /// at least `from` (0 = changes after the current revision). A `from` at or below the
    /// compacted revision fails (at once or as the stream's first item) with `Compacted`.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;

    /// Discards the history older than `revision`: past snapshots and watch starts at or below
    /// it fail with `Compacted` afterwards. Current values are never discarded.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The oldest revision a watch or a past read may still start from, minus one.
    async fn compacted_revision(&self) -> Result<Revision>;
}
