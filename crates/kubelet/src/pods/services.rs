//! The Services a container's Service environment variables come from, as upstream's service
//! lister: one reflector over every Service, started with the kubelet and read by all pod
//! workers, so that starting a container lists nothing from the API server.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use tokio_util::sync::CancellationToken;

/// How long a container start waits for the first list of Services before it fails with
/// `CreateContainerConfigError` (and is retried by a later sync).
pub const SYNC_WAIT: Duration = Duration::from_secs(10);

/// Upstream's message when the Services have not been listed yet.
pub const NOT_SYNCED: &str =
    "services have not yet been read at least once, cannot construct envvars";

/// A shared, read-only view of the cluster's Services (cheap to clone).
#[derive(Clone, Debug)]
pub struct Services {
    store: Store<Service>,
}

impl Services {
    /// Starts the reflector over all Services; it runs until `shutdown`.
    pub fn start(client: kube::Client, shutdown: CancellationToken) -> Services {
        let (store, writer) = reflector::store();
        tokio::spawn(reflect(client, writer, shutdown));
        Services { store }
    }

    /// A view that holds exactly `services`, ready at once (tests, callers without an API).
    pub fn fixed(services: Vec<Service>) -> Services {
        let mut writer = Writer::default();
        writer.apply_watcher_event(&Event::Init);
        for s in services {
            writer.apply_watcher_event(&Event::InitApply(s));
        }
        writer.apply_watcher_event(&Event::InitDone);
        Services {
            store: writer.as_reader(),
        }
    }

    /// The Services a container of a pod in `ns` sees: those of its namespace when service
    /// links are enabled, and always the master Service `default/kubernetes`. Waits (at most
    /// `wait`) for the first list.
    pub async fn visible(
        &self,
        ns: &str,
        links: bool,
        wait: Duration,
    ) -> Result<Vec<Service>, String> {
        match tokio::time::timeout(wait, self.store.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => return Err(NOT_SYNCED.to_string()),
        }
        let seen = |s: &Service| {
            let sns = s.metadata.namespace.as_deref().unwrap_or_default();
            let master = sns == "default" && s.metadata.name.as_deref() == Some("kubernetes");
            master || (links && sns == ns)
        };
        let mut out: Vec<Service> = self
            .store
            .state_filter(seen)
            .into_iter()
            .map(|s| (*s).clone())
            .collect();
        // A stable order (the store is a hash map) so that the environment is deterministic.
        out.sort_by(|a, b| {
            let key = |s: &Service| (s.metadata.namespace.clone(), s.metadata.name.clone());
            key(a).cmp(&key(b))
        });
        Ok(out)
    }
}

async fn reflect(client: kube::Client, writer: Writer<Service>, shutdown: CancellationToken) {
    let api: Api<Service> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(reflector::reflector(writer, stream));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => match ev {
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "watching Services failed; retrying"),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str) -> Service {
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}}))
            .unwrap_or_default()
    }

    fn names(list: &[Service]) -> Vec<String> {
        list.iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_pods_namespace_and_always_the_master_service() {
        let s = Services::fixed(vec![
            svc("default", "kubernetes"),
            svc("default", "web"),
            svc("ns", "db"),
            svc("other", "x"),
        ]);
        let w = Duration::from_millis(10);
        let got = s.visible("ns", true, w).await.unwrap_or_default();
        assert_eq!(names(&got), ["default/kubernetes", "ns/db"]);
        let got = s.visible("ns", false, w).await.unwrap_or_default();
        assert_eq!(names(&got), ["default/kubernetes"]);
        let got = s.visible("default", true, w).await.unwrap_or_default();
        assert_eq!(names(&got), ["default/kubernetes", "default/web"]);
    }

    #[tokio::test(start_paused = true)]
    async fn not_listed_yet_is_upstreams_error() {
        let (store, _writer) = reflector::store::<Service>();
        let s = Services { store };
        let got = s.visible("ns", true, Duration::from_secs(1)).await;
        assert_eq!(got.err().as_deref(), Some(NOT_SYNCED));
    }
}
