//! The pods bound to this node: a watch of them (`spec.nodeName=<node>`) feeding one worker per
//! pod, adoption of what the runtime already runs, and removal of what it runs for pods no
//! longer bound here.

pub mod actions;
pub mod cgroups;
pub mod env;
mod exec;
mod mount;
pub mod qos;
pub mod runtime;
pub mod services;
pub mod spec;
pub mod status;
pub mod worker;

#[cfg(test)]
mod spec_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use exec::{docker_auth, go_duration, log_tail};

use crate::KubeletConfig;
use crate::cri::Cri;
use worker::Worker;

/// How often finished workers are reaped and orphans looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

struct Handle {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

struct Manager {
    client: kube::Client,
    config: Arc<KubeletConfig>,
    cri: Arc<dyn Cri>,
    runtime_name: String,
    workers: HashMap<String, Handle>,
    /// Watches of the ConfigMaps and Secrets the pods' volumes refer to.
    watches: Arc<crate::volumes::watches::ObjectWatches>,
    /// The kubelet's Services (for containers' Service environment variables).
    services: services::Services,
    /// UIDs of the pods bound here, as last listed/watched.
    bound: HashSet<String>,
    listing: HashSet<String>,
    /// Whether the first list of the node's pods is complete: until then nothing is an orphan.
    synced: bool,
    shutdown: CancellationToken,
}

impl Manager {
    fn spawn(&mut self, uid: &str, pod: Option<Pod>) {
        let (tx, rx) = watch::channel(pod.clone());
        let mut w = Worker::new(
            self.client.clone(),
            self.config.clone(),
            self.cri.clone(),
            uid.to_string(),
            self.runtime_name.clone(),
            pod,
            self.services.clone(),
        );
        w.volumes.watch_with(self.watches.clone());
        let task = tokio::spawn(w.run(rx, self.shutdown.child_token()));
        self.workers.insert(uid.to_string(), Handle { tx, task });
    }

    fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.bound.insert(uid.clone());
        match self.workers.get(&uid) {
            Some(h) if !h.task.is_finished() => {
                let _ = h.tx.send(Some(pod));
            }
            _ => self.spawn(&uid, Some(pod)),
        }
    }

    fn delete(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.bound.remove(&uid);
        match self.workers.get(&uid) {
            Some(h) if !h.task.is_finished() => {
                let _ = h.tx.send(None);
            }
            _ => self.spawn(&uid, None),
        }
    }

    /// Tears down runtime pods whose pod is not bound here (any more).
    async fn remove_orphans(&mut self) {
        if !self.synced {
            return;
        }
        let uids = match runtime::pod_uids(self.cri.as_ref()).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "listing the runtime's pods failed");
                return;
            }
        };
        for uid in uids {
            let live = self
                .workers
                .get(&uid)
                .is_some_and(|h| !h.task.is_finished());
            if !self.bound.contains(&uid) && !live {
                tracing::info!(%uid, "removing the runtime pod of a pod not bound here");
                self.spawn(&uid, None);
            }
        }
    }

    fn reap(&mut self) {
        self.workers.retain(|_, h| !h.task.is_finished());
    }

    async fn on_event(&mut self, ev: Event<Pod>) {
        match ev {
            Event::Init => self.listing.clear(),
            Event::InitApply(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.listing.insert(uid.clone());
                }
                self.apply(pod);
            }
            Event::InitDone => {
                self.bound = std::mem::take(&mut self.listing);
                self.synced = true;
                let stale: Vec<String> = self
                    .workers
                    .keys()
                    .filter(|u| !self.bound.contains(*u))
                    .cloned()
                    .collect();
                for uid in stale {
                    if let Some(h) = self.workers.get(&uid) {
                        let _ = h.tx.send(None);
                    }
                }
                self.remove_orphans().await;
            }
            Event::Apply(pod) => self.apply(pod),
            Event::Delete(pod) => self.delete(&pod),
        }
    }
}

/// Waits until the runtime answers; its name (`containerd`), or `None` on shutdown.
async fn runtime_name(cri: &dyn Cri, shutdown: &CancellationToken) -> Option<String> {
    let mut wait = Duration::from_millis(100);
    loop {
        match cri.version().await {
            Ok(v) => return Some(v.runtime_name),
            Err(e) => tracing::warn!(error = %e, "the container runtime does not answer yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Runs the pods bound to the node until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    cri: Arc<dyn Cri>,
    shutdown: CancellationToken,
) -> Result<(), crate::Error> {
    // Listed while the runtime is waited for; container starts wait for its first list.
    let services = services::Services::start(client.clone(), shutdown.clone());
    let Some(runtime_name) = runtime_name(cri.as_ref(), &shutdown).await else {
        return Ok(());
    };
    let pods: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name));
    let mut stream = watcher::watcher(pods, wc).default_backoff().boxed();
    let mut m = Manager {
        watches: crate::volumes::watches::ObjectWatches::new(client.clone(), shutdown.clone()),
        services,
        client,
        config,
        cri,
        runtime_name,
        workers: HashMap::new(),
        bound: HashSet::new(),
        listing: HashSet::new(),
        synced: false,
        shutdown: shutdown.clone(),
    };
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = stream.next() => match ev {
                Some(Ok(ev)) => m.on_event(ev).await,
                Some(Err(e)) => tracing::warn!(error = %e, "watching the node's pods failed"),
                None => break,
            },
            _ = tick.tick() => {
                m.reap();
                m.remove_orphans().await;
            }
        }
    }
    for (_, h) in m.workers.drain() {
        let _ = h.task.await;
    }
    Ok(())
}
