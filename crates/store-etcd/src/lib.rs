//! The etcd v3 backend of the `Store` trait (`k8rs-store`), for API servers that keep their state
//! in an external etcd cluster as upstream kube-apiserver does.
//!
//! Writes are single etcd transactions that compare the key's revisions (create: the key does
//! not exist; update and delete: its `mod_revision` is still the expected one), reads are etcd
//! ranges, watches are etcd watches with previous values, and compaction is coordinated between
//! API servers through a record key, as upstream does. etcd and
//! transport failures surface as `Error::Backend` and never panic.
//!
//! Keys are stored under an optional prefix ([`EtcdConfig::prefix`]); this crate's own
//! bookkeeping keys start with byte 0xFF, which no UTF-8 key contains, so they never show up in a
//! range, count or watch.
//!
//! With the `testing` feature, [`testing::EtcdProcess`] runs a throwaway etcd for tests.
//!
//! This crate depends on `k8rs-store` and `etcd-client` only; nothing in k8rs depends on it
//! except the binary that chooses the backend.

mod compact;
mod config;
mod error;
mod keys;
mod rpc;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod watch;

pub use config::EtcdConfig;
pub use error::Error;
pub use store::EtcdStore;
