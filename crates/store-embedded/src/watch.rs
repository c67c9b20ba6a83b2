//! Watch streams: replay from the history table, then follow the writer's live batches.
//!
//! A watcher subscribes to the live channel before it reads any history, so every change
//! committed after its first history read is also in the channel (unless it lags). It tracks the
//! next revision it needs: live changes below it are duplicates and are skipped; a live batch that
//! starts above it, or a lag notice, sends it back to replaying history from that revision.

use std::sync::{Arc, Weak};

use futures::StreamExt;
use k8rs_store::{Error as StoreError, Event, Result as StoreResult, Revision, WatchStream};
use redb::Database;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::read;
use crate::writer::Batch;

/// Where a watcher is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading history from `next` on.
    Replay,
    /// Following the live channel.
    Live,
    /// Failed; the stream ends.
    Ended,
}

pub(crate) struct Watcher {
    /// Weak, so that a forgotten stream does not keep the database file open after the store
    /// is dropped.
    db: Weak<Database>,
    live: broadcast::Receiver<Batch>,
    prefix: Arc<str>,
    /// The first revision not yet delivered (or skipped as outside the prefix).
    next: Revision,
    phase: Phase,
}

impl Watcher {
    pub(crate) fn new(
        db: &Arc<Database>,
        live: broadcast::Receiver<Batch>,
        prefix: &str,
        next: Revision,
        phase: Phase,
    ) -> Self {
        Watcher {
            db: Arc::downgrade(db),
            live,
            prefix: prefix.into(),
            next,
            phase,
        }
    }

    pub(crate) fn into_stream(self) -> WatchStream {
        futures::stream::unfold(self, |mut watcher| async move {
            let items = watcher.step().await?;
            Some((futures::stream::iter(items), watcher))
        })
        .flatten()
        .boxed()
    }

    /// Produces the next (possibly empty) run of items; `None` ends the stream.
    async fn step(&mut self) -> Option<Vec<StoreResult<Event>>> {
        match self.phase {
            Phase::Replay => self.replay().await,
            Phase::Live => self.follow().await,
            Phase::Ended => None,
        }
    }

    async fn replay(&mut self) -> Option<Vec<StoreResult<Event>>> {
        // The store is gone: the stream ends as it does when the live channel closes.
        let db = self.db.upgrade()?;
        let (prefix, from) = (self.prefix.clone(), self.next);
        let read = tokio::task::spawn_blocking(move || read::history(&db, &prefix, from)).await;
        match read {
            Ok(Ok(chunk)) => {
                self.next = self.next.max(chunk.next);
                if chunk.caught_up {
                    self.phase = Phase::Live;
                }
                Some(chunk.events.into_iter().map(Ok).collect())
            }
            Ok(Err(err)) => Some(self.fail(err)),
            Err(join) => Some(self.fail(StoreError::backend(join))),
        }
    }

    async fn follow(&mut self) -> Option<Vec<StoreResult<Event>>> {
        match self.live.recv().await {
            Ok(batch) => Some(self.take_live(&batch)),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    next = self.next,
                    "watcher lagged; catching up from history"
                );
                self.phase = Phase::Replay;
                Some(Vec::new())
            }
            Err(RecvError::Closed) => None,
        }
    }

    /// The changes of a live batch that this watcher has not delivered yet.
    fn take_live(&mut self, batch: &[Event]) -> Vec<StoreResult<Event>> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Vec::new();
        };
        if first.revision() > self.next {
            // Something between was missed: the history has it.
            self.phase = Phase::Replay;
            return Vec::new();
        }
        let fresh = batch
            .iter()
            .filter(|event| event.revision() >= self.next && event.key().starts_with(&*self.prefix))
            .cloned()
            .map(Ok)
            .collect();
        self.next = self.next.max(last.revision() + 1);
        fresh
    }

    fn fail(&mut self, err: StoreError) -> Vec<StoreResult<Event>> {
        self.phase = Phase::Ended;
        vec![Err(err)]
    }
}
