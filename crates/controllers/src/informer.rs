//! The thin IO shell the snapshot controllers share: a loop that runs one sync at a time over the
//! shared informers' stores whenever something changed (debounced), when the sync asked to be
//! woken, and at every resync period. The stores and their change streams come from
//! [`SharedInformers::changes`] (or [`selected`] for a field-selected subset).

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, stream};
use k8rs_controller_runtime::{SharedInformers, Watched};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long the loop gathers changes before it syncs.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How long a failed sync waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// The least time from the start of one change-triggered sync to the start of the next. A
/// sync walks whole stores, and in a large cluster something changes all the time (5,000
/// nodes renew 500 Leases a second): without a floor these loops would sync back to back and
/// take the CPU from everything else. A change after a quiet spell is still synced within
/// [`DEBOUNCE`].
const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// As [`SharedInformers::changes`], for the objects `config` selects (shared only with
/// subscribers of the same selection): for controllers that need a handful of objects of a
/// type nobody else caches whole.
pub fn selected<K: Watched>(
    informers: &SharedInformers,
    config: watcher::Config,
) -> (Store<K>, BoxStream<'static, ()>) {
    let (tx, rx) = mpsc::channel::<()>(1);
    let store = informers.subscribe_with::<K, _>(config, move |_| {
        let _ = tx.try_send(());
    });
    let stream = stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|()| ((), rx)) },
    );
    (store, stream.boxed())
}

/// What a sync asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Next {
    /// Nothing until something changes.
    #[default]
    Idle,
    /// Sync again after this long, even if nothing changes.
    After(Duration),
    /// The sync failed: retry with a delay.
    Retry,
}

/// Runs `sync` whenever `changes` report a change, as `sync` asks, and every `resync`, until
/// `shutdown`; the first sync waits for `ready` (every store listed, see
/// [`k8rs_controller_runtime::ready`]).
pub async fn run_loop<F, Fut>(
    changes: Vec<BoxStream<'static, ()>>,
    ready: Vec<BoxFuture<'static, bool>>,
    resync: Duration,
    shutdown: CancellationToken,
    mut sync: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Next>,
{
    let mut changes: SelectAll<BoxStream<'static, ()>> = stream::select_all(changes);
    // The changes before every store listed need no sync of their own.
    let ready = futures::future::join_all(ready);
    tokio::pin!(ready);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut ready => break,
            c = changes.next() => if c.is_none() { return },
        }
    }
    loop {
        let started = tokio::time::Instant::now();
        let delay = match sync().await {
            Next::Idle => resync,
            Next::After(d) => d.min(resync),
            Next::Retry => RETRY,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => continue,
            c = changes.next() => if c.is_none() { return },
        }
        // Gather the burst of changes before syncing, for at least DEBOUNCE and until
        // MIN_INTERVAL after the last sync began.
        let settle = tokio::time::sleep_until(
            (started + MIN_INTERVAL).max(tokio::time::Instant::now() + DEBOUNCE),
        );
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                c = changes.next() => if c.is_none() { return },
            }
        }
    }
}
