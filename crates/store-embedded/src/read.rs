//! The tables, and every read: all of them run in one redb read transaction (an MVCC snapshot that
//! the writer does not block), on a blocking thread.
//!
//! Past snapshots are not stored as such: the state at revision `s` is the current state with the
//! changes after `s` undone, each key taking the `prev` of its first change after `s`.

use std::collections::BTreeMap;
use std::ops::Bound;

use k8rs_store::{Error as StoreError, Event, KeyValue, Range, Result as StoreResult, Revision};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use crate::{Error, codec, storage};

/// Key -> the key's current version (see [`codec::encode_current`]).
pub(crate) const CURRENT: TableDefinition<&str, &[u8]> = TableDefinition::new("current");
/// Revision -> the change made at it (see [`codec::encode_event`]).
pub(crate) const HISTORY: TableDefinition<i64, &[u8]> = TableDefinition::new("history");
/// [`REVISION`] and [`COMPACTED`].
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
pub(crate) const REVISION: &str = "revision";
pub(crate) const COMPACTED: &str = "compacted";

/// How much history one watch replay step reads at most.
const REPLAY_MAX_EVENTS: usize = 512;
const REPLAY_MAX_BYTES: usize = 8 << 20;

/// The store-wide counters, as of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) revision: Revision,
    pub(crate) compacted: Revision,
}

pub(crate) fn read_meta(table: &impl ReadableTable<&'static str, i64>) -> StoreResult<Meta> {
    let get = |name: &str| -> StoreResult<i64> {
        let value = table.get(name).map_err(storage)?;
        value
            .map(|guard| guard.value())
            .ok_or_else(|| Error::Corrupt(format!("meta entry {name:?} is missing")).into())
    };
    Ok(Meta {
        revision: get(REVISION)?,
        compacted: get(COMPACTED)?,
    })
}

fn begin(db: &Database) -> StoreResult<ReadTransaction> {
    db.begin_read().map_err(storage)
}

fn current_table(txn: &ReadTransaction) -> StoreResult<ReadOnlyTable<&'static str, &'static [u8]>> {
    txn.open_table(CURRENT).map_err(storage)
}

fn meta(txn: &ReadTransaction) -> StoreResult<Meta> {
    read_meta(&txn.open_table(META).map_err(storage)?)
}

/// Reads one key at the current revision.
pub(crate) fn get(db: &Database, key: &str) -> StoreResult<Option<KeyValue>> {
    let txn = begin(db)?;
    let table = current_table(&txn)?;
    let value = table.get(key).map_err(storage)?;
    Ok(value
        .map(|guard| codec::decode_current(key, guard.value()))
        .transpose()?)
}

/// Counts the keys under `prefix` at the current revision.
pub(crate) fn count(db: &Database, prefix: &str) -> StoreResult<u64> {
    let txn = begin(db)?;
    let table = current_table(&txn)?;
    let mut count = 0;
    for entry in table
        .range::<&str>((Bound::Included(prefix), Bound::Unbounded))
        .map_err(storage)?
    {
        let (key, _) = entry.map_err(storage)?;
        if !key.value().starts_with(prefix) {
            break;
        }
        count += 1;
    }
    Ok(count)
}

/// One page of keys under a prefix, in key order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) start_after: Option<&'a str>,
    /// 0 = no limit.
    pub(crate) limit: usize,
}

impl Page<'_> {
    fn lower_bound(&self) -> Bound<&str> {
        match self.start_after {
            Some(after) if after >= self.prefix => Bound::Excluded(after),
            _ => Bound::Included(self.prefix),
        }
    }

    fn selects(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && self.start_after.is_none_or(|after| key > after)
    }

    fn is_full(&self, len: usize) -> bool {
        self.limit > 0 && len >= self.limit
    }
}

/// Reads a page at the current revision, or at `revision` when given.
pub(crate) fn range(
    db: &Database,
    page: Page<'_>,
    revision: Option<Revision>,
) -> StoreResult<Range> {
    let txn = begin(db)?;
    let meta = meta(&txn)?;
    let at = match revision {
        Some(at) if at > 0 => at,
        _ => meta.revision,
    };
    if at > meta.revision {
        return Err(StoreError::FutureRevision(at));
    }
    if revision.is_some() && at <= meta.compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted: meta.compacted,
        });
    }
    let undo = if at < meta.revision {
        undo_since(&txn, page, at, meta.revision)?
    } else {
        BTreeMap::new()
    };
    let current = CurrentScan::new(&current_table(&txn)?, page)?;
    let (kvs, more) = merge(current, undo, page)?;
    Ok(Range {
        kvs,
        more,
        revision: at,
    })
}

/// For each key of the page changed after `at`, its version at `at` (`None`: it did not exist).
fn undo_since(
    txn: &ReadTransaction,
    page: Page<'_>,
    at: Revision,
    current: Revision,
) -> StoreResult<BTreeMap<String, Option<KeyValue>>> {
    let history = txn.open_table(HISTORY).map_err(storage)?;
    let mut undo = BTreeMap::new();
    for entry in history.range(at + 1..=current).map_err(storage)? {
        let (revision, record) = entry.map_err(storage)?;
        let key = codec::event_key(record.value())?;
        if !page.selects(key) || undo.contains_key(key) {
            continue;
        }
        let before = match codec::decode_event(revision.value(), record.value())? {
            Event::Put { prev, .. } => prev,
            Event::Delete { prev, .. } => Some(prev),
        };
        undo.insert(key.to_owned(), before);
    }
    Ok(undo)
}

/// Which sorted source the next key of a merge comes from.
enum Next {
    Current,
    Undone,
    /// Both hold the key: the undone version wins.
    Both,
}

/// Merges the current versions with the undone ones (which win), up to the page's limit.
fn merge(
    mut current: CurrentScan,
    undo: BTreeMap<String, Option<KeyValue>>,
    page: Page<'_>,
) -> StoreResult<(Vec<KeyValue>, bool)> {
    let mut undo = undo.into_iter().peekable();
    let mut next_current = current.next_kv()?;
    let mut kvs = Vec::new();
    loop {
        let next = match (&next_current, undo.peek()) {
            (None, None) => break,
            (Some(_), None) => Next::Current,
            (None, Some(_)) => Next::Undone,
            (Some(kv), Some((key, _))) => match kv.key.as_str().cmp(key.as_str()) {
                std::cmp::Ordering::Less => Next::Current,
                std::cmp::Ordering::Equal => Next::Both,
                std::cmp::Ordering::Greater => Next::Undone,
            },
        };
        let pick = match next {
            Next::Current => std::mem::replace(&mut next_current, current.next_kv()?),
            Next::Undone => undo.next().and_then(|(_, before)| before),
            Next::Both => {
                next_current = current.next_kv()?;
                undo.next().and_then(|(_, before)| before)
            }
        };
        if let Some(kv) = pick {
            if page.is_full(kvs.len()) {
                return Ok((kvs, true));
            }
            kvs.push(kv);
        }
    }
    Ok((kvs, false))
}

/// The current versions of the keys of a page, in key order.
struct CurrentScan {
    entries: redb::Range<'static, &'static str, &'static [u8]>,
    prefix: String,
    done: bool,
}

impl CurrentScan {
    fn new(
        table: &ReadOnlyTable<&'static str, &'static [u8]>,
        page: Page<'_>,
    ) -> StoreResult<Self> {
        let entries = table
            .range::<&str>((page.lower_bound(), Bound::Unbounded))
            .map_err(storage)?;
        Ok(CurrentScan {
            entries,
            prefix: page.prefix.to_owned(),
            done: false,
        })
    }

    fn next_kv(&mut self) -> StoreResult<Option<KeyValue>> {
        if self.done {
            return Ok(None);
        }
        let Some(entry) = self.entries.next() else {
            self.done = true;
            return Ok(None);
        };
        let (key, value) = entry.map_err(storage)?;
        if !key.value().starts_with(&self.prefix) {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(codec::decode_current(key.value(), value.value())?))
    }
}

/// A run of history read for a watch.
#[derive(Debug)]
pub(crate) struct HistoryChunk {
    /// The changes under the prefix, in revision order.
    pub(crate) events: Vec<Event>,
    /// The first revision not yet read.
    pub(crate) next: Revision,
    /// True when `next` is past the store's revision as of this read.
    pub(crate) caught_up: bool,
}

/// Reads the history under `prefix` from revision `from` on, a bounded amount at a time.
pub(crate) fn history(db: &Database, prefix: &str, from: Revision) -> StoreResult<HistoryChunk> {
    let txn = begin(db)?;
    let meta = meta(&txn)?;
    if from <= meta.compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted: meta.compacted,
        });
    }
    let table = txn.open_table(HISTORY).map_err(storage)?;
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut next = from;
    for entry in table.range(from..=meta.revision).map_err(storage)? {
        let (revision, record) = entry.map_err(storage)?;
        next = revision.value() + 1;
        if codec::event_key(record.value())?.starts_with(prefix) {
            bytes += record.value().len();
            events.push(codec::decode_event(revision.value(), record.value())?);
        }
        if events.len() >= REPLAY_MAX_EVENTS || bytes >= REPLAY_MAX_BYTES {
            break;
        }
    }
    Ok(HistoryChunk {
        events,
        next,
        caught_up: next > meta.revision,
    })
}
