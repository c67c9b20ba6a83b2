//! The thin IO shell the snapshot controllers share: reflector stores fed by watches, and a loop
//! that runs one sync at a time over the stores' snapshot whenever something changed (debounced),
//! when the sync asked to be woken, and at every resync period.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, stream};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// How long the loop gathers changes before it syncs.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How long a failed sync waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A store kept up to date by a watch, and the stream of its changes (one `()` per event).
pub fn informer<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, BoxStream<'static, ()>)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let changes = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .filter_map(|event| async move {
            match event {
                Ok(_) => Some(()),
                Err(err) => {
                    tracing::warn!(%err, kind = std::any::type_name::<K>(), "watch failed; retrying");
                    None
                }
            }
        })
        .boxed();
    (reader, changes)
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
/// `shutdown`; the first sync waits for `ready` (every store listed, see [`listed`]).
pub async fn run_loop<F, Fut>(
    changes: Vec<BoxStream<'static, ()>>,
    ready: Vec<BoxFuture<'static, ()>>,
    resync: Duration,
    shutdown: CancellationToken,
    mut sync: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Next>,
{
    let mut changes: SelectAll<BoxStream<'static, ()>> = stream::select_all(changes);
    // The watches only make progress while polled: drive them until every store listed.
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
        // Gather the burst of changes before syncing.
        let settle = tokio::time::sleep(DEBOUNCE);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                c = changes.next() => if c.is_none() { return },
            }
        }
    }
}

/// A future that ends once `store` has listed.
pub fn listed<K>(store: &Store<K>) -> BoxFuture<'static, ()>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let store = store.clone();
    Box::pin(async move {
        let _ = store.wait_until_ready().await;
    })
}
