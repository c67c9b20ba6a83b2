//! Keeps the [`Catalog`] in step with the API server: one kube-runtime watcher per kind,
//! reflected into the catalog (which is this component's reflector store: it indexes as it
//! stores, so an update costs one Service's worth of work).

use std::collections::HashSet;
use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Kind, object_key};

/// Starts the four watchers; the returned receiver counts those that have listed once.
pub(crate) fn spawn_watchers(
    client: &Client,
    catalog: &Catalog,
    shutdown: &CancellationToken,
) -> watch::Receiver<usize> {
    let (synced_tx, synced_rx) = watch::channel(0usize);
    spawn_one::<Service>(
        client,
        catalog,
        shutdown,
        &synced_tx,
        Kind::Service,
        |c, o| c.apply_service(o),
    );
    spawn_one::<EndpointSlice>(
        client,
        catalog,
        shutdown,
        &synced_tx,
        Kind::EndpointSlice,
        |c, o| c.apply_endpoint_slice(o),
    );
    spawn_one::<Pod>(client, catalog, shutdown, &synced_tx, Kind::Pod, |c, o| {
        c.apply_pod(o)
    });
    spawn_one::<Namespace>(
        client,
        catalog,
        shutdown,
        &synced_tx,
        Kind::Namespace,
        |c, o| c.apply_namespace(o),
    );
    synced_rx
}

/// How many watchers [`spawn_watchers`] starts.
pub(crate) const WATCHERS: usize = 4;

fn spawn_one<K>(
    client: &Client,
    catalog: &Catalog,
    shutdown: &CancellationToken,
    synced: &watch::Sender<usize>,
    kind: Kind,
    apply: fn(&Catalog, &K),
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    tokio::spawn(run_watcher(
        Api::<K>::all(client.clone()),
        catalog.clone(),
        kind,
        apply,
        synced.clone(),
        shutdown.clone(),
    ));
}

/// Applies one watch event; returns whether a (re-)list just completed.
fn handle_event<K: Resource>(
    catalog: &Catalog,
    kind: Kind,
    apply: fn(&Catalog, &K),
    seen: &mut HashSet<(String, String)>,
    event: watcher::Event<K>,
) -> bool {
    match event {
        watcher::Event::Apply(obj) => apply(catalog, &obj),
        watcher::Event::Delete(obj) => {
            if let Some((ns, name)) = object_key(obj.meta()) {
                catalog.delete(kind, &ns, &name);
            }
        }
        watcher::Event::Init => seen.clear(),
        watcher::Event::InitApply(obj) => {
            seen.extend(object_key(obj.meta()));
            apply(catalog, &obj);
        }
        watcher::Event::InitDone => {
            catalog.retain(kind, seen);
            seen.clear();
            return true;
        }
    }
    false
}

async fn run_watcher<K>(
    api: Api<K>,
    catalog: Catalog,
    kind: Kind,
    apply: fn(&Catalog, &K),
    synced: watch::Sender<usize>,
    shutdown: CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen = HashSet::new();
    let mut listed = false;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            None => return,
            Some(Err(e)) => tracing::warn!(?kind, error = %e, "watch failed; retrying"),
            Some(Ok(event)) => {
                if handle_event(&catalog, kind, apply, &mut seen, event) && !listed {
                    listed = true;
                    synced.send_modify(|n| *n += 1);
                }
            }
        }
    }
}
