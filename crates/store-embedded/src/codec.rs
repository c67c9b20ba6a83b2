//! The byte layout of the records in the current-state and history tables.
//!
//! A current record is `create_revision (i64 BE) | mod_revision (i64 BE) | value`. A history
//! record (one per revision, keyed by that revision) is
//! `tag (u8) | key length (u64 BE) | key | ...` followed, for a put, by
//! `create_revision | value length | value` and then, when the tag says so, the previous version
//! as `create_revision | mod_revision | value length | value`. A delete always carries the
//! previous version.

use bytes::Bytes;
use k8rs_store::{Event, KeyValue, Revision};

use crate::Error;

const PUT: u8 = 0;
const PUT_WITH_PREV: u8 = 1;
const DELETE: u8 = 2;

/// Encodes the current version of a key.
pub(crate) fn encode_current(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes the current version of `key`.
pub(crate) fn decode_current(key: &str, bytes: &[u8]) -> Result<KeyValue, Error> {
    let mut reader = Reader::new(bytes);
    let create_revision = reader.i64()?;
    let mod_revision = reader.i64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(reader.rest()),
        create_revision,
        mod_revision,
    })
}

/// Encodes a change for the history table (the revision is the table key).
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + event_len(event));
    match event {
        Event::Put { kv, prev } => {
            out.push(if prev.is_some() { PUT_WITH_PREV } else { PUT });
            put_bytes(&mut out, kv.key.as_bytes());
            out.extend_from_slice(&kv.create_revision.to_be_bytes());
            put_bytes(&mut out, &kv.value);
            if let Some(prev) = prev {
                put_version(&mut out, prev);
            }
        }
        Event::Delete { prev, .. } => {
            out.push(DELETE);
            put_bytes(&mut out, prev.key.as_bytes());
            put_version(&mut out, prev);
        }
    }
    out
}

fn event_len(event: &Event) -> usize {
    match event {
        Event::Put { kv, prev } => {
            2 * kv.key.len() + kv.value.len() + prev.as_ref().map_or(0, |p| p.value.len())
        }
        Event::Delete { prev, .. } => 2 * prev.key.len() + prev.value.len(),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_version(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    put_bytes(out, &kv.value);
}

/// Reads only the key of a history record, to filter by prefix without decoding values.
pub(crate) fn event_key(bytes: &[u8]) -> Result<&str, Error> {
    let mut reader = Reader::new(bytes);
    reader.u8()?;
    reader.str()
}

/// Decodes the history record of `revision`.
pub(crate) fn decode_event(revision: Revision, bytes: &[u8]) -> Result<Event, Error> {
    let mut reader = Reader::new(bytes);
    let tag = reader.u8()?;
    let key = reader.str()?.to_owned();
    match tag {
        PUT | PUT_WITH_PREV => {
            let create_revision = reader.i64()?;
            let value = Bytes::copy_from_slice(reader.bytes()?);
            let prev = if tag == PUT_WITH_PREV {
                Some(reader.version(&key)?)
            } else {
                None
            };
            let kv = KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
            };
            Ok(Event::Put { kv, prev })
        }
        DELETE => Ok(Event::Delete {
            prev: reader.version(&key)?,
            revision,
        }),
        other => Err(Error::Corrupt(format!(
            "history record {revision} has tag {other}"
        ))),
    }
}

/// A bounds-checked cursor over a record.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() < n {
            return Err(Error::Corrupt(format!(
                "record truncated: needs {n} more bytes, has {}",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = u64::from_be_bytes(self.array()?);
        let len = usize::try_from(len)
            .map_err(|_| Error::Corrupt(format!("record length {len} too large")))?;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|e| Error::Corrupt(format!("record key is not UTF-8: {e}")))
    }

    fn version(&mut self, key: &str) -> Result<KeyValue, Error> {
        let create_revision = self.i64()?;
        let mod_revision = self.i64()?;
        let value = Bytes::copy_from_slice(self.bytes()?);
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision,
        })
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], create_revision: Revision, mod_revision: Revision) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            create_revision,
            mod_revision,
        }
    }

    #[test]
    fn current_round_trips() {
        let original = kv("/a", b"\0value", 3, 9);
        let decoded = decode_current("/a", &encode_current(&original)).expect("decodes");
        assert_eq!(decoded, original);
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event::Put {
                kv: kv("/a", b"v", 4, 4),
                prev: None,
            },
            Event::Put {
                kv: kv("/ä", b"", 2, 7),
                prev: Some(kv("/ä", b"old", 2, 5)),
            },
            Event::Delete {
                prev: kv("/b", b"x", 1, 3),
                revision: 8,
            },
        ];
        for event in events {
            let bytes = encode_event(&event);
            assert_eq!(event_key(&bytes).expect("key"), event.key());
            assert_eq!(
                decode_event(event.revision(), &bytes).expect("decodes"),
                event
            );
        }
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let event = Event::Put {
            kv: kv("/a", b"value", 1, 2),
            prev: Some(kv("/a", b"p", 1, 1)),
        };
        let bytes = encode_event(&event);
        for len in 0..bytes.len() {
            assert!(
                decode_event(2, &bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        assert!(decode_current("/a", &[0; 15]).is_err());
        assert!(
            decode_event(2, &[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "unknown tag"
        );
        assert!(decode_event(2, &[0, 255, 255, 255, 255, 255, 255, 255, 255]).is_err());
    }
}
