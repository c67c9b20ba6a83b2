//! Watches of the ConfigMaps and Secrets that pods' volumes refer to, as upstream's
//! watch-based ConfigMap and Secret managers: one watch per referenced object (namespaced, field
//! selector `metadata.name`, which a node authorizer can allow), started when a first pod refers
//! to the object and stopped when the last one no longer does. Every change of the object (and
//! every re-list, when changes may have been missed) wakes the workers of the pods that refer to
//! it, which then rewrite their volumes at once instead of at the next periodic re-sync.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The kind of a referenced object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Secret,
}

/// A referenced object: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// The ConfigMaps and Secrets `pod`'s volumes refer to (directly or through projected sources).
pub fn referenced(pod: &Pod) -> BTreeSet<ObjectRef> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let r = |kind: Kind, name: &str| ObjectRef {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
    };
    let mut out = BTreeSet::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    for v in volumes.unwrap_or_default() {
        out.extend(v.config_map.as_ref().map(|c| r(Kind::ConfigMap, &c.name)));
        let secret = v.secret.as_ref().and_then(|s| s.secret_name.as_deref());
        out.extend(secret.map(|s| r(Kind::Secret, s)));
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            out.extend(s.config_map.as_ref().map(|c| r(Kind::ConfigMap, &c.name)));
            out.extend(s.secret.as_ref().map(|c| r(Kind::Secret, &c.name)));
        }
    }
    out
}

/// The workers to wake on a change, by pod UID.
type Subscribers = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

struct Watch {
    subscribers: Subscribers,
    stop: CancellationToken,
}

/// The watches of one kubelet, shared by its pod workers.
pub struct ObjectWatches {
    client: kube::Client,
    watches: Mutex<HashMap<ObjectRef, Watch>>,
    shutdown: CancellationToken,
}

impl Debug for ObjectWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWatches")
            .field("watched", &self.watched())
            .finish_non_exhaustive()
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl ObjectWatches {
    /// No watches yet; every watch stops at `shutdown`.
    pub fn new(client: kube::Client, shutdown: CancellationToken) -> Arc<ObjectWatches> {
        Arc::new(ObjectWatches {
            client,
            watches: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    /// The objects watched now.
    pub fn watched(&self) -> BTreeSet<ObjectRef> {
        locked(&self.watches).keys().cloned().collect()
    }

    /// Makes pod `uid` (woken through `wake`) refer to exactly `refs`: watches start for
    /// objects no pod referred to and stop for objects no pod refers to any more.
    pub fn set(&self, uid: &str, refs: &BTreeSet<ObjectRef>, wake: &Arc<Notify>) {
        let mut watches = locked(&self.watches);
        for r in refs {
            let w = watches.entry(r.clone()).or_insert_with(|| self.start(r));
            locked(&w.subscribers).insert(uid.to_string(), wake.clone());
        }
        watches.retain(|r, w| {
            if !refs.contains(r) {
                locked(&w.subscribers).remove(uid);
            }
            let keep = !locked(&w.subscribers).is_empty();
            if !keep {
                w.stop.cancel();
            }
            keep
        });
    }

    /// Pod `uid` refers to nothing any more (it is torn down).
    pub fn forget(&self, uid: &str) {
        self.set(uid, &BTreeSet::new(), &Arc::new(Notify::new()));
    }

    fn start(&self, r: &ObjectRef) -> Watch {
        let subscribers = Subscribers::default();
        let stop = self.shutdown.child_token();
        let (client, ns) = (self.client.clone(), r.namespace.as_str());
        let config = watcher::Config::default().fields(&format!("metadata.name={}", r.name));
        match r.kind {
            Kind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(client, ns);
                tokio::spawn(watch(api, config, subscribers.clone(), stop.clone()));
            }
            Kind::Secret => {
                let api: Api<Secret> = Api::namespaced(client, ns);
                tokio::spawn(watch(api, config, subscribers.clone(), stop.clone()));
            }
        }
        Watch { subscribers, stop }
    }
}

/// Whether an event means the object may differ from what the pods last wrote: a change, a
/// deletion, or the end of a (re-)list.
pub fn wakes<K>(ev: &Event<K>) -> bool {
    matches!(ev, Event::Apply(_) | Event::Delete(_) | Event::InitDone)
}

async fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    subscribers: Subscribers,
    stop: CancellationToken,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            ev = stream.next() => ev,
        };
        match ev {
            Some(Ok(ev)) if wakes(&ev) => {
                for wake in locked(&subscribers).values() {
                    wake.notify_one();
                }
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => tracing::debug!(%err, "watching a volume's object failed"),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(kind: Kind, name: &str) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn references_of_volumes_and_projections() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": [
                {"name": "a", "configMap": {"name": "cfg"}},
                {"name": "b", "secret": {"secretName": "creds"}},
                {"name": "c", "emptyDir": {}},
                {"name": "d", "projected": {"sources": [
                    {"configMap": {"name": "ca"}}, {"secret": {"name": "tls"}},
                    {"serviceAccountToken": {"path": "token"}}]}}
            ]}
        }))
        .unwrap_or_default();
        let want = BTreeSet::from([
            r(Kind::ConfigMap, "ca"),
            r(Kind::ConfigMap, "cfg"),
            r(Kind::Secret, "creds"),
            r(Kind::Secret, "tls"),
        ]);
        assert_eq!(referenced(&pod), want);
    }

    #[test]
    fn changes_and_relists_wake() {
        assert!(wakes(&Event::Apply(ConfigMap::default())));
        assert!(wakes(&Event::Delete(ConfigMap::default())));
        assert!(wakes::<ConfigMap>(&Event::InitDone));
        assert!(!wakes::<ConfigMap>(&Event::Init));
        assert!(!wakes(&Event::InitApply(ConfigMap::default())));
    }

    #[tokio::test]
    async fn watches_follow_the_pods_references() {
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            let mut resp = http::Response::new(kube::client::Body::empty());
            *resp.status_mut() = http::StatusCode::NOT_FOUND;
            Ok::<_, std::convert::Infallible>(resp)
        });
        let client = kube::Client::new(svc, "default");
        let shutdown = CancellationToken::new();
        let watches = ObjectWatches::new(client, shutdown.clone());
        let (w1, w2) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (cfg, creds) = (r(Kind::ConfigMap, "cfg"), r(Kind::Secret, "creds"));
        watches.set("u1", &BTreeSet::from([cfg.clone(), creds.clone()]), &w1);
        watches.set("u2", &BTreeSet::from([cfg.clone()]), &w2);
        assert_eq!(
            watches.watched(),
            BTreeSet::from([cfg.clone(), creds.clone()])
        );
        // u1 drops the secret: nobody watches it any more.
        watches.set("u1", &BTreeSet::from([cfg.clone()]), &w1);
        assert_eq!(watches.watched(), BTreeSet::from([cfg.clone()]));
        watches.forget("u1");
        assert_eq!(watches.watched(), BTreeSet::from([cfg.clone()]));
        watches.forget("u2");
        assert!(watches.watched().is_empty());
        shutdown.cancel();
    }
}
