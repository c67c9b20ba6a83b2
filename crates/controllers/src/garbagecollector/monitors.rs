//! The collector's inputs: discovery of the resources to watch (at start, every
//! [`REDISCOVER`], and soon after a CustomResourceDefinition changes) and one metadata-only watch
//! per resource (`application/json;as=PartialObjectMetadata`: only metadata crosses the wire).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::Discovery;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::resources::{self, Resource};

/// How often discovery runs again (upstream's garbage collector resyncs every 30 s).
pub const REDISCOVER: Duration = Duration::from_secs(30);
/// How soon discovery runs again after a failure.
const RETRY: Duration = Duration::from_secs(2);
/// How long after a CustomResourceDefinition changed discovery runs (its resource is served
/// once the definition is established).
const SETTLE: Duration = Duration::from_millis(300);

/// A metadata-only watch event of any resource.
pub type MetaEvent = watcher::Event<PartialObjectMeta<DynamicObject>>;

/// A watch event, tagged with the resource's index and the watch's generation.
pub type Tagged = (usize, u64, watcher::Result<MetaEvent>);

/// Whether `r` is the CustomResourceDefinitions resource, whose changes call for discovery.
pub fn is_crd(r: &Resource) -> bool {
    r.group == "apiextensions.k8s.io" && r.plural == "customresourcedefinitions"
}

/// Every deletable resource discovery lists (aggregated discovery, or group by group where the
/// server has none).
pub async fn discover(client: &kube::Client) -> Result<Vec<Resource>, kube::Error> {
    let found = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(found) => found,
        Err(err) => {
            tracing::debug!(%err, "garbage collector: aggregated discovery failed; per group");
            Discovery::new(client.clone()).run().await?
        }
    };
    let mut out = Vec::new();
    for group in found.groups() {
        out.extend(resources::deletable(&group.recommended_resources()));
    }
    Ok(out)
}

/// Runs discovery until `shutdown`, sending each non-empty result.
pub async fn discovery_loop(
    client: kube::Client,
    found: mpsc::Sender<Vec<Resource>>,
    trigger: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match discover(&client).await {
            Ok(list) if !list.is_empty() => {
                if found.send(list).await.is_err() {
                    return;
                }
                REDISCOVER
            }
            Ok(_) => RETRY,
            Err(err) => {
                tracing::warn!(%err, "garbage collector: discovery failed; retrying");
                RETRY
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = trigger.notified() => tokio::time::sleep(SETTLE).await,
        }
    }
}

/// Watches the metadata of every object of `r` into `events` until `stop`.
pub fn spawn_watch(
    client: kube::Client,
    (index, generation): (usize, u64),
    r: &Resource,
    events: mpsc::Sender<Tagged>,
    stop: CancellationToken,
) {
    // An `Api` of `PartialObjectMeta` lists and watches with the metadata-only media type.
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &r.api_resource());
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                event = stream.next() => event,
            };
            let Some(event) = event else { return };
            if events.send((index, generation, event)).await.is_err() {
                return;
            }
        }
    });
}
