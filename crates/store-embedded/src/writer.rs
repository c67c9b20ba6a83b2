//! The single writer: a dedicated thread that takes every waiting request into one redb write
//! transaction (group commit), commits it durably, then publishes the changes to watchers and
//! answers the callers. Between batches it purges compacted history a bounded chunk at a time
//! and runs the automatic compaction.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8rs_store::{Error as StoreError, Event, KeyValue, Result as StoreResult, Revision};
use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{broadcast, oneshot};

use crate::read::{COMPACTED, CURRENT, HISTORY, META, REVISION};
use crate::{AutoCompact, Error, Options, codec};

/// A batch stops taking requests once their values add up to this much.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// The changes committed by one transaction, in revision order.
pub(crate) type Batch = Arc<[Event]>;

/// The counters that readers take without a transaction; updated after each commit.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) revision: AtomicI64,
    pub(crate) compacted: AtomicI64,
}

/// One write asked of the writer.
#[derive(Debug)]
pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact(Revision),
}

impl Op {
    fn value_len(&self) -> usize {
        match self {
            Op::Create { value, .. } | Op::Update { value, .. } => value.len(),
            Op::Delete { .. } | Op::Compact(_) => 0,
        }
    }
}

/// What a successful [`Op`] did.
#[derive(Debug)]
pub(crate) enum Outcome {
    Put(KeyValue),
    Deleted(KeyValue, Revision),
    /// The compaction is recorded and its history purged.
    Compacted,
}

pub(crate) type Reply = oneshot::Sender<StoreResult<Outcome>>;

pub(crate) enum Request {
    Op {
        op: Op,
        reply: Reply,
    },
    /// Finish what is queued before this, then stop.
    Shutdown,
}

/// The history purge that follows a compaction.
struct Purge {
    /// Purge history up to and including this revision.
    upto: Revision,
    /// The `compact` calls answered once the purge is done.
    waiters: Vec<Reply>,
}

/// What a batch transaction changed.
struct Applied {
    outcomes: Vec<StoreResult<Outcome>>,
    events: Vec<Event>,
    revision: Revision,
    compacted: Revision,
}

/// The writer thread's state.
pub(crate) struct Writer {
    db: Arc<Database>,
    requests: mpsc::Receiver<Request>,
    events: broadcast::Sender<Batch>,
    shared: Arc<Shared>,
    revision: Revision,
    compacted: Revision,
    purge: Option<Purge>,
    options: Options,
    next_auto_compact: Option<Instant>,
}

/// What the writer found when it waited for work.
enum Wake {
    Request(Request),
    Idle,
    Closed,
}

impl Writer {
    pub(crate) fn new(
        db: Arc<Database>,
        requests: mpsc::Receiver<Request>,
        events: broadcast::Sender<Batch>,
        shared: Arc<Shared>,
        options: Options,
        purge_pending: bool,
    ) -> Self {
        let revision = shared.revision.load(Ordering::SeqCst);
        let compacted = shared.compacted.load(Ordering::SeqCst);
        let next_auto_compact = options
            .auto_compact
            .map(|auto| Instant::now() + auto.interval);
        let purge = purge_pending.then_some(Purge {
            upto: compacted,
            waiters: Vec::new(),
        });
        Writer {
            db,
            requests,
            events,
            shared,
            revision,
            compacted,
            purge,
            options,
            next_auto_compact,
        }
    }

    /// Serves requests until the store shuts down or drops its sender.
    pub(crate) fn run(mut self) {
        loop {
            let first = match self.wait() {
                Wake::Request(request) => Some(request),
                Wake::Idle => None,
                Wake::Closed => break,
            };
            let (batch, shutdown) = self.collect(first);
            if !batch.is_empty() {
                self.commit(batch);
            }
            if shutdown {
                break;
            }
            self.auto_compact();
            self.purge_step();
        }
    }

    /// Waits for a request, no longer than until the next background work is due.
    fn wait(&self) -> Wake {
        let timeout = if self.purge.is_some() {
            Some(Duration::ZERO)
        } else {
            self.next_auto_compact
                .map(|at| at.saturating_duration_since(Instant::now()))
        };
        let received = match timeout {
            None => self
                .requests
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(timeout) => self.requests.recv_timeout(timeout),
        };
        match received {
            Ok(request) => Wake::Request(request),
            Err(mpsc::RecvTimeoutError::Timeout) => Wake::Idle,
            Err(mpsc::RecvTimeoutError::Disconnected) => Wake::Closed,
        }
    }

    /// Takes `first` and every request already waiting, up to the batch limits.
    fn collect(&self, first: Option<Request>) -> (Vec<(Op, Reply)>, bool) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = first;
        while let Some(request) = next.take() {
            match request {
                Request::Shutdown => return (batch, true),
                Request::Op { op, reply } => {
                    bytes += op.value_len();
                    batch.push((op, reply));
                }
            }
            if batch.len() < self.options.max_batch.max(1) && bytes < MAX_BATCH_BYTES {
                next = self.requests.try_recv().ok();
            }
        }
        (batch, false)
    }

    /// Applies a batch in one transaction, then publishes and answers.
    fn commit(&mut self, batch: Vec<(Op, Reply)>) {
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.into_iter().unzip();
        let applied = match self.apply(&ops) {
            Ok(applied) => applied,
            Err(err) => {
                tracing::error!(error = %err, ops = ops.len(), "store write transaction failed");
                let message = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::backend(std::io::Error::other(
                        message.clone(),
                    ))));
                }
                return;
            }
        };
        self.revision = applied.revision;
        self.shared
            .revision
            .store(applied.revision, Ordering::SeqCst);
        if applied.compacted > self.compacted {
            self.compacted = applied.compacted;
            self.shared
                .compacted
                .store(applied.compacted, Ordering::SeqCst);
            let purge = self.purge.get_or_insert_with(|| Purge {
                upto: 0,
                waiters: Vec::new(),
            });
            purge.upto = applied.compacted;
        }
        if !applied.events.is_empty() {
            // No receiver is not an error: nobody watches.
            let _ = self.events.send(applied.events.into());
        }
        for (reply, outcome) in replies.into_iter().zip(applied.outcomes) {
            match (outcome, self.purge.as_mut()) {
                (Ok(Outcome::Compacted), Some(purge)) => purge.waiters.push(reply),
                (outcome, _) => {
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    /// Runs the ops in one durable write transaction; commits only if one of them wrote.
    fn apply(&self, ops: &[Op]) -> Result<Applied, Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut batch = BatchState {
            revision: self.revision,
            compacted: self.compacted,
            events: Vec::new(),
        };
        let mut outcomes = Vec::with_capacity(ops.len());
        {
            let mut tables = Tables {
                current: txn.open_table(CURRENT)?,
                history: txn.open_table(HISTORY)?,
            };
            for op in ops {
                outcomes.push(tables.apply(op, &mut batch)?);
            }
        }
        if batch.revision == self.revision && batch.compacted == self.compacted {
            txn.abort()?;
        } else {
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(REVISION, batch.revision)?;
                meta.insert(COMPACTED, batch.compacted)?;
            }
            txn.commit()?;
        }
        Ok(Applied {
            outcomes,
            events: batch.events,
            revision: batch.revision,
            compacted: batch.compacted,
        })
    }

    /// Compacts on schedule, keeping the configured number of revisions.
    fn auto_compact(&mut self) {
        let (Some(auto), Some(due)) = (self.options.auto_compact, self.next_auto_compact) else {
            return;
        };
        let now = Instant::now();
        if now < due {
            return;
        }
        self.next_auto_compact = Some(now + auto.interval);
        let target = auto_compact_target(auto, self.revision);
        if target > self.compacted {
            let (reply, _) = oneshot::channel();
            tracing::debug!(revision = target, "automatic compaction");
            self.commit(vec![(Op::Compact(target), reply)]);
        }
    }

    /// Removes one bounded chunk of compacted history; answers the waiters when all is gone.
    fn purge_step(&mut self) {
        let Some(purge) = &self.purge else {
            return;
        };
        let chunk = self.options.compaction_chunk.max(1);
        match purge_history(&self.db, purge.upto, chunk) {
            Ok(false) => {}
            Ok(true) => {
                for waiter in self.purge.take().map(|p| p.waiters).unwrap_or_default() {
                    let _ = waiter.send(Ok(Outcome::Compacted));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "purging compacted history failed");
                let message = err.to_string();
                for waiter in self.purge.take().map(|p| p.waiters).unwrap_or_default() {
                    let _ = waiter.send(Err(StoreError::backend(std::io::Error::other(
                        message.clone(),
                    ))));
                }
            }
        }
    }
}

fn auto_compact_target(auto: AutoCompact, revision: Revision) -> Revision {
    revision.saturating_sub(auto.retain_revisions.max(1))
}

/// Deletes up to `chunk` history records at or below `upto`; true when none remain.
fn purge_history(db: &Database, upto: Revision, chunk: usize) -> Result<bool, Error> {
    let txn = db.begin_write()?;
    let done = {
        let mut history = txn.open_table(HISTORY)?;
        let first = history.first()?.map(|(revision, _)| revision.value());
        match first {
            Some(first) if first <= upto => {
                let last = upto.min(first.saturating_add(chunk as i64 - 1));
                history.retain_in(first..=last, |_, _| false)?;
                Some(last >= upto)
            }
            _ => None,
        }
    };
    match done {
        Some(done) => {
            txn.commit()?;
            Ok(done)
        }
        None => {
            txn.abort()?;
            Ok(true)
        }
    }
}

/// The revision counters and changes of a batch being applied.
struct BatchState {
    revision: Revision,
    compacted: Revision,
    events: Vec<Event>,
}

/// The tables a batch writes.
struct Tables<'txn> {
    current: Table<'txn, &'static str, &'static [u8]>,
    history: Table<'txn, i64, &'static [u8]>,
}

impl Tables<'_> {
    /// Applies one op on top of the batch so far. The outer error aborts the whole batch; the
    /// inner one fails only this op.
    fn apply(&mut self, op: &Op, batch: &mut BatchState) -> Result<StoreResult<Outcome>, Error> {
        match op {
            Op::Create { key, value } => {
                if self.current.get(key.as_str())?.is_some() {
                    return Ok(Err(StoreError::AlreadyExists(key.clone())));
                }
                let revision = batch.revision + 1;
                let kv = new_version(key, value, revision, revision);
                self.record(
                    Event::Put {
                        kv: kv.clone(),
                        prev: None,
                    },
                    batch,
                )?;
                Ok(Ok(Outcome::Put(kv)))
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let current = match self.check(key, Some(*expected))? {
                    Ok(current) => current,
                    Err(err) => return Ok(Err(err)),
                };
                let kv = new_version(key, value, current.create_revision, batch.revision + 1);
                self.record(
                    Event::Put {
                        kv: kv.clone(),
                        prev: Some(current),
                    },
                    batch,
                )?;
                Ok(Ok(Outcome::Put(kv)))
            }
            Op::Delete { key, expected } => {
                let current = match self.check(key, *expected)? {
                    Ok(current) => current,
                    Err(err) => return Ok(Err(err)),
                };
                let revision = batch.revision + 1;
                self.record(
                    Event::Delete {
                        prev: current.clone(),
                        revision,
                    },
                    batch,
                )?;
                Ok(Ok(Outcome::Deleted(current, revision)))
            }
            Op::Compact(revision) => Ok(compact(*revision, batch)),
        }
    }

    /// The key's current version, if it exists and (when `expected` is given) is that revision.
    fn check(&self, key: &str, expected: Option<Revision>) -> Result<StoreResult<KeyValue>, Error> {
        let current = self
            .current
            .get(key)?
            .map(|guard| codec::decode_current(key, guard.value()))
            .transpose()?;
        Ok(match current {
            None => Err(StoreError::NotFound(key.to_owned())),
            Some(current) if expected.is_some_and(|e| e != current.mod_revision) => {
                Err(StoreError::Conflict {
                    key: key.to_owned(),
                    current: Some(Box::new(current)),
                })
            }
            Some(current) => Ok(current),
        })
    }

    /// Writes a change to both tables and takes its revision.
    fn record(&mut self, event: Event, batch: &mut BatchState) -> Result<(), Error> {
        match &event {
            Event::Put { kv, .. } => {
                self.current
                    .insert(kv.key.as_str(), codec::encode_current(kv).as_slice())?;
            }
            Event::Delete { prev, .. } => {
                self.current.remove(prev.key.as_str())?;
            }
        }
        let revision = event.revision();
        self.history
            .insert(revision, codec::encode_event(&event).as_slice())?;
        batch.revision = revision;
        batch.events.push(event);
        Ok(())
    }
}

fn new_version(
    key: &str,
    value: &Bytes,
    create_revision: Revision,
    mod_revision: Revision,
) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision,
        mod_revision,
    }
}

fn compact(revision: Revision, batch: &mut BatchState) -> StoreResult<Outcome> {
    if revision > batch.revision {
        return Err(StoreError::FutureRevision(revision));
    }
    if revision <= batch.compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted: batch.compacted,
        });
    }
    batch.compacted = revision;
    Ok(Outcome::Compacted)
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;
    use redb::backends::InMemoryBackend;

    use super::*;

    fn history_revisions(db: &Database) -> Vec<Revision> {
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(HISTORY).expect("history");
        table
            .iter()
            .expect("iter")
            .map(|entry| entry.expect("entry").0.value())
            .collect()
    }

    #[test]
    fn purge_removes_bounded_chunks_up_to_the_compacted_revision() {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("db");
        let txn = db.begin_write().expect("write");
        {
            let mut history = txn.open_table(HISTORY).expect("history");
            for revision in 2..=40 {
                history.insert(revision, b"x".as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");

        assert!(!purge_history(&db, 25, 10).expect("purge"), "first chunk");
        assert_eq!(history_revisions(&db).first(), Some(&12));
        assert!(!purge_history(&db, 25, 10).expect("purge"), "second chunk");
        assert!(purge_history(&db, 25, 10).expect("purge"), "last chunk");
        assert_eq!(history_revisions(&db), (26..=40).collect::<Vec<_>>());
        assert!(
            purge_history(&db, 25, 10).expect("purge"),
            "nothing left to purge"
        );
    }

    #[test]
    fn auto_compaction_keeps_the_retained_revisions() {
        let auto = AutoCompact {
            interval: Duration::from_secs(1),
            retain_revisions: 100,
        };
        assert_eq!(auto_compact_target(auto, 50), -50);
        assert_eq!(auto_compact_target(auto, 1000), 900);
        let none = AutoCompact {
            retain_revisions: 0,
            ..auto
        };
        assert_eq!(
            auto_compact_target(none, 1000),
            999,
            "the current revision stays readable"
        );
    }

    #[test]
    fn compaction_is_checked_against_the_batch() {
        let mut batch = BatchState {
            revision: 10,
            compacted: 4,
            events: Vec::new(),
        };
        assert!(matches!(
            compact(11, &mut batch),
            Err(StoreError::FutureRevision(11))
        ));
        assert!(matches!(
            compact(4, &mut batch),
            Err(StoreError::Compacted { compacted: 4, .. })
        ));
        assert!(matches!(compact(7, &mut batch), Ok(Outcome::Compacted)));
        assert_eq!(batch.compacted, 7);
    }
}
