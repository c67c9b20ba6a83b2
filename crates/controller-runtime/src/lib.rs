//! The controller plumbing upstream's controllers share: [`SharedInformers`] (one watch and one
//! store per resource type for the whole process, as upstream's SharedInformerFactory, with
//! change callbacks that see the old and the new object, and indexes), a keyed work queue (a
//! key is never processed twice at once, re-added keys are coalesced, failures back off per key)
//! with the worker loop that drives a sync function (bounded in time, surviving panics),
//! [`Expectations`] of a controller's own writes, [`slow_start`] batches and an [`EventSink`].
//!
//! It is a client-side library: it must not depend on the API server, a store or any controller.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod batch;
mod events;
mod expectations;
mod index;
mod queue;
pub mod reduced;
mod shared;

pub use batch::slow_start;
pub use events::EventSink;
pub use expectations::{EXPECTATIONS_TIMEOUT, Expectations};
pub use index::{BY_CONTROLLER, Index, IndexKeys, controller_keys, orphan_key};
pub use queue::{Queue, Requeue, SYNC_TIMEOUT, resync, run_workers};
pub use shared::{SharedInformers, Watched};

/// A change seen by an informer: `(old, new)`; `old` is `None` on add, `new` is `None` on delete.
pub type Change<'a, K> = (Option<&'a K>, Option<&'a K>);

/// Waits until every store has listed once, or `shutdown`.
pub async fn wait_synced(
    shutdown: &CancellationToken,
    waits: Vec<futures::future::BoxFuture<'static, bool>>,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        all = futures::future::join_all(waits) => all.into_iter().all(|ok| ok),
    }
}

/// An informer stopped before its first list although no shutdown was asked (the API server
/// went away for good): the controller cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSynced;

impl std::fmt::Display for NotSynced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("caches did not sync")
    }
}

impl std::error::Error for NotSynced {}

/// Waits until every store of `synced` has listed, then runs `workers` workers over `queue`
/// (see [`run_workers`]) until `shutdown`, logging within a span named for `controller`. A
/// shutdown before the caches synced is a clean stop; a store that stopped before it listed is
/// [`NotSynced`].
pub async fn run_synced<T, F, Fut, E>(
    controller: &'static str,
    synced: Vec<futures::future::BoxFuture<'static, bool>>,
    queue: Queue<T>,
    workers: usize,
    shutdown: CancellationToken,
    sync: F,
) -> Result<(), NotSynced>
where
    T: Clone + Eq + std::hash::Hash + Send + Sync + Debug + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Requeue, E>> + Send,
    E: std::fmt::Display,
{
    if !wait_synced(&shutdown, synced).await {
        return if shutdown.is_cancelled() {
            Ok(())
        } else {
            Err(NotSynced)
        };
    }
    tracing::info!(controller, "caches synced; started");
    run_workers(queue, workers, shutdown, sync)
        .instrument(tracing::info_span!("controller", name = controller))
        .await;
    Ok(())
}

/// How often [`ready`] polls a store's readiness again.
const READY_POLL: Duration = Duration::from_millis(50);

/// `Store::wait_until_ready` as a boxed future for [`wait_synced`]; true once the store has
/// listed, false if its writer is gone first.
///
/// kube's readiness signal wakes only the task that polled it last, so of several controllers
/// waiting for one shared store all but one would sleep forever: this polls again every
/// [`READY_POLL`]. Do not await `Store::wait_until_ready` on a shared store directly.
pub fn ready<K>(store: &Store<K>) -> futures::future::BoxFuture<'static, bool>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let store = store.clone();
    Box::pin(async move {
        loop {
            if let Ok(ready) = tokio::time::timeout(READY_POLL, store.wait_until_ready()).await {
                return ready.is_ok();
            }
        }
    })
}

/// `namespace/name` of an object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Splits a `namespace/name` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Looks `namespace/name` up in a store.
pub fn lookup<K>(store: &Store<K>, key: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (ns, name) = split_key(key);
    store.get(&ObjectRef::new(name).within(ns))
}

/// The objects of namespace `ns` in `store`.
pub fn in_namespace<K>(store: &Store<K>, ns: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut objects = store.state();
    objects.retain(|o| o.meta().namespace.as_deref() == Some(ns));
    objects
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_waiter_on_a_shared_store_sees_it_ready() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(ready(&store))).collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            let done = tokio::time::timeout(Duration::from_secs(1), waiter).await;
            assert!(matches!(done, Ok(Ok(true))), "a waiter was never woken");
        }
    }
}
