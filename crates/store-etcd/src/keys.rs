//! How the trait's string keys map to etcd keys, and etcd key-values back to the trait's.
//!
//! Keys are stored as `prefix + key`. Every stored user key is UTF-8, so it never contains the
//! byte 0xFF; keys that start with 0xFF are this crate's own bookkeeping (the compaction record)
//! and lie outside every range a caller can ask for, even with no prefix configured.

use bytes::Bytes;
use etcd_client::proto::PbKeyValue;
use k8rs_store::KeyValue;

use crate::error::{Error, unexpected};

/// The etcd key recording the last compaction (its value, in decimal) and, by its version, the
/// compaction epoch shared by every API server on this etcd. Compaction is cluster-wide in etcd,
/// so the record is too: it lives outside any prefix.
pub(crate) const COMPACT_REV_KEY: &[u8] = b"\xffcompact_rev_key";

/// A key that is never written: reading it is the cheapest way to learn the current revision.
pub(crate) const NEVER_WRITTEN_KEY: &[u8] = b"\xffrevision_probe";

/// The user keyspace: every key under the configured prefix.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keyspace {
    prefix: Vec<u8>,
}

impl Keyspace {
    pub(crate) fn new(prefix: &str) -> Self {
        Keyspace {
            prefix: prefix.as_bytes().to_vec(),
        }
    }

    /// The etcd key for `key`.
    pub(crate) fn key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The etcd range `[start, end)` of the keys starting with `prefix`, from the first key
    /// strictly greater than `start_after` when given.
    pub(crate) fn range(&self, prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
        let first = self.key(prefix);
        let end = prefix_end(&first);
        let start = match start_after {
            Some(after) => {
                let mut next = self.key(after);
                next.push(0);
                next.max(first)
            }
            None => first,
        };
        // etcd refuses an empty key; no key sorts between "" and "\0".
        let start = if start.is_empty() { vec![0] } else { start };
        (start, end)
    }

    /// The trait's key for an etcd key, which must lie in this keyspace.
    pub(crate) fn decode_key(&self, key: Vec<u8>) -> Result<String, Error> {
        if !key.starts_with(&self.prefix) {
            return Err(unexpected(format!(
                "key {:?} lies outside the prefix {:?}",
                String::from_utf8_lossy(&key),
                String::from_utf8_lossy(&self.prefix)
            )));
        }
        let mut key = key;
        key.drain(..self.prefix.len());
        String::from_utf8(key).map_err(|err| {
            unexpected(format!(
                "key {:?} is not UTF-8",
                String::from_utf8_lossy(err.as_bytes())
            ))
        })
    }

    /// The trait's key-value for an etcd key-value.
    pub(crate) fn decode(&self, kv: PbKeyValue) -> Result<KeyValue, Error> {
        Ok(KeyValue {
            key: self.decode_key(kv.key)?,
            value: Bytes::from(kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        })
    }

    pub(crate) fn decode_all(&self, kvs: Vec<PbKeyValue>) -> Result<Vec<KeyValue>, Error> {
        kvs.into_iter().map(|kv| self.decode(kv)).collect()
    }
}

/// The smallest key greater than every key that starts with `prefix`. For the empty prefix that
/// is 0xFF: it bounds all UTF-8 keys and leaves out this crate's own keys.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0xff]);
    }

    #[test]
    fn bookkeeping_keys_lie_outside_the_empty_prefix_range() {
        let (start, end) = Keyspace::default().range("", None);
        assert_eq!(start, vec![0], "etcd needs a non-empty start key");
        assert!(COMPACT_REV_KEY >= end.as_slice());
        assert!(NEVER_WRITTEN_KEY >= end.as_slice());
        let highest_char = Keyspace::default().key("\u{10ffff}");
        assert!(highest_char < end);
    }

    #[test]
    fn range_applies_prefix_and_start_after() {
        let keys = Keyspace::new("/k8rs");
        assert_eq!(
            keys.range("/a/", None),
            (b"/k8rs/a/".to_vec(), b"/k8rs/a0".to_vec())
        );
        let (start, end) = keys.range("/a/", Some("/a/x"));
        assert_eq!(start, b"/k8rs/a/x\0".to_vec());
        assert_eq!(end, b"/k8rs/a0".to_vec());
    }

    #[test]
    fn start_after_before_the_prefix_does_not_widen_the_range() {
        let (start, _) = Keyspace::default().range("/b/", Some("/a"));
        assert_eq!(start, b"/b/".to_vec());
    }

    #[test]
    fn decode_strips_the_prefix_and_rejects_foreign_keys() {
        let keys = Keyspace::new("/p");
        assert_eq!(
            keys.decode_key(b"/p/x".to_vec()).ok(),
            Some("/x".to_owned())
        );
        assert!(keys.decode_key(b"/q/x".to_vec()).is_err());
        assert!(keys.decode_key(b"/p\xff".to_vec()).is_err());
    }
}
