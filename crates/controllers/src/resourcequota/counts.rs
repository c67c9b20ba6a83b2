//! Object counts of the resources quotas name only to count (`configmaps`, `secrets`,
//! `count/deployments.apps`, custom resources, ...): a metadata-only watch per resource, started
//! the first time a quota names it (resolved through discovery, retried every
//! [`REDISCOVER`] until the resource exists), reporting every change on a channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{self, verbs};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use super::usage::Counts;

/// How often a resource that discovery does not know is looked up again (upstream re-runs
/// discovery every 30 s).
const REDISCOVER: Duration = Duration::from_secs(30);

type MetaStore = Store<PartialObjectMeta<DynamicObject>>;
/// Per group-resource, its store once listed.
type Slots = Arc<Mutex<BTreeMap<String, Option<MetaStore>>>>;

/// The lazily started count watches.
pub struct CountWatches {
    client: kube::Client,
    notify: UnboundedSender<()>,
    shutdown: CancellationToken,
    slots: Slots,
}

impl CountWatches {
    pub fn new(
        client: kube::Client,
        notify: UnboundedSender<()>,
        shutdown: CancellationToken,
    ) -> Self {
        CountWatches {
            client,
            notify,
            shutdown,
            slots: Slots::default(),
        }
    }

    /// Starts a watch for each group-resource not yet watched.
    pub fn ensure<'a>(&self, resources: impl IntoIterator<Item = &'a String>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for gr in resources {
            if slots.contains_key(gr) {
                continue;
            }
            slots.insert(gr.clone(), None);
            tokio::spawn(watch(
                self.client.clone(),
                gr.clone(),
                self.slots.clone(),
                self.notify.clone(),
                self.shutdown.clone(),
            ));
        }
    }

    /// The counts per namespace of every listed resource.
    pub fn counts(&self) -> Counts {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Counts::new();
        for (gr, store) in slots.iter() {
            let Some(store) = store else { continue };
            let per_ns = out.entry(gr.clone()).or_default();
            for obj in store.state() {
                let ns = obj.metadata.namespace.clone().unwrap_or_default();
                *per_ns.entry(ns).or_default() += 1;
            }
        }
        out
    }
}

/// The API resource of a group-resource (`configmaps`, `deployments.apps`) that can be listed
/// and watched.
async fn resolve(client: &kube::Client, gr: &str) -> Option<ApiResource> {
    let (plural, group) = gr.split_once('.').unwrap_or((gr, ""));
    let found = match discovery::group(client, group).await {
        Ok(g) => g,
        Err(err) => {
            tracing::debug!(%err, resource = gr, "resourcequota: discovery failed");
            return None;
        }
    };
    found
        .recommended_resources()
        .into_iter()
        .find(|(ar, caps)| {
            ar.plural == plural
                && caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::WATCH)
        })
        .map(|(ar, _)| ar)
}

async fn watch(
    client: kube::Client,
    gr: String,
    slots: Slots,
    notify: UnboundedSender<()>,
    shutdown: CancellationToken,
) {
    let ar = loop {
        if let Some(ar) = resolve(&client, &gr).await {
            break ar;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REDISCOVER) => {}
        }
    };
    let writer = reflector::store::Writer::new(ar.clone());
    let reader = writer.as_reader();
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &ar);
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Ok(watcher::Event::InitDone)) => {
                let mut slots = slots.lock().unwrap_or_else(PoisonError::into_inner);
                slots.insert(gr.clone(), Some(reader.clone()));
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                tracing::warn!(%err, resource = gr, "resourcequota: count watch failed; retrying");
                continue;
            }
        }
        // The loop may have stopped: nothing left to tell.
        if notify.unbounded_send(()).is_err() {
            return;
        }
    }
}
