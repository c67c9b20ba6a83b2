//! The loop: watches NetworkPolicies, Pods and Namespaces, and after every batch of changes
//! recomputes the model and applies the difference to the table; the first sync after start,
//! after a failure and every `resync_period` is a full in-place repair.

use std::collections::BTreeMap;
use std::time::Duration;

use k8rs_controller_runtime::reduced::{Reduced, forward, sleep_until};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dataplane::Dataplane;
use crate::model::{PodInfo, Snapshot, compute, namespace_labels};
use crate::render::{Desired, desired, full, incremental};
use crate::{Error, NetpolConfig};

/// What a watcher reports.
enum Update {
    Policy(Box<watcher::Event<NetworkPolicy>>),
    Pod(Box<watcher::Event<Pod>>),
    Namespace(Box<watcher::Event<Namespace>>),
}

/// Runs the policy controller until `shutdown`. Fails only if `nft` cannot be run at all;
/// refused transactions are logged and retried with a full resync. The table is left in
/// place on shutdown (pods stay protected across a restart); [`crate::cleanup`] removes it.
pub async fn run(
    client: Client,
    config: NetpolConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    forward(
        watcher(
            Api::<NetworkPolicy>::all(client.clone()),
            Default::default(),
        ),
        tx.clone(),
        |e| Update::Policy(Box::new(e)),
        "netpol policy",
        &shutdown,
    );
    forward(
        watcher(Api::<Pod>::all(client.clone()), Default::default()),
        tx.clone(),
        |e| Update::Pod(Box::new(e)),
        "netpol pod",
        &shutdown,
    );
    forward(
        watcher(Api::<Namespace>::all(client), Default::default()),
        tx,
        |e| Update::Namespace(Box::new(e)),
        "netpol namespace",
        &shutdown,
    );
    let mut enforcer = Enforcer::new(config);
    enforcer.run(rx, shutdown).await
}

struct Enforcer {
    config: NetpolConfig,
    dataplane: Dataplane,
    policies: Reduced<NetworkPolicy>,
    pods: Reduced<PodInfo>,
    namespaces: Reduced<BTreeMap<String, String>>,
    applied: Option<Desired>,
    last_full: Option<Instant>,
    dirty: bool,
}

impl Enforcer {
    fn new(config: NetpolConfig) -> Enforcer {
        Enforcer {
            dataplane: Dataplane::new(&config.nft_command),
            config,
            policies: Reduced::default(),
            pods: Reduced::default(),
            namespaces: Reduced::default(),
            applied: None,
            last_full: None,
            dirty: true,
        }
    }

    async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Update>,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let mut retry_at: Option<Instant> = None;
        loop {
            let due = self.next_sync(retry_at);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                update = rx.recv() => match update {
                    Some(update) => {
                        self.on_update(update);
                        while let Ok(more) = rx.try_recv() {
                            self.on_update(more);
                        }
                    }
                    None => return Ok(()),
                },
                _ = sleep_until(due) => {
                    retry_at = None;
                    match self.sync().await {
                        Ok(()) => {}
                        Err(err @ Error::NftSpawn(_)) => return Err(err),
                        Err(err) => {
                            tracing::error!(%err, "netpol sync failed; retrying with a full resync");
                            self.applied = None;
                            retry_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
            }
        }
    }

    fn next_sync(&self, retry_at: Option<Instant>) -> Option<Instant> {
        if !(self.policies.synced() && self.pods.synced() && self.namespaces.synced()) {
            return None;
        }
        if let Some(at) = retry_at {
            return Some(at);
        }
        if self.dirty || self.applied.is_none() {
            return Some(Instant::now());
        }
        self.last_full.map(|t| t + self.config.resync_period)
    }

    fn on_update(&mut self, update: Update) {
        match update {
            Update::Policy(e) => {
                self.policies.apply(*e, |p| Some(p.clone()));
            }
            Update::Pod(e) => {
                self.pods.apply(*e, PodInfo::from_pod);
            }
            Update::Namespace(e) => {
                self.namespaces
                    .apply(*e, |n| namespace_labels(n).map(|(_, l)| l));
            }
        }
        self.dirty = true;
    }

    fn snapshot(&self) -> Snapshot {
        let mut policies: Vec<NetworkPolicy> = self.policies.objects().values().cloned().collect();
        policies.sort_by_key(|p| (p.namespace(), p.name_any()));
        let mut pods: Vec<PodInfo> = self.pods.objects().values().cloned().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let namespaces = self
            .namespaces
            .objects()
            .iter()
            .map(|((_, name), labels)| (name.clone(), labels.clone()))
            .collect();
        Snapshot {
            policies,
            pods,
            namespaces,
        }
    }

    /// One sync: incremental from what was applied, or a full repair when due.
    async fn sync(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        self.dirty = false;
        let want = desired(&compute(&self.snapshot(), &self.config.node_name));
        let resync_due = self
            .last_full
            .is_none_or(|t| started >= t + self.config.resync_period);
        let (text, is_full) = match (&self.applied, resync_due) {
            (Some(applied), false) => (incremental(applied, &want), false),
            _ => {
                let existing = blocking(&self.dataplane, |dp| dp.existing()).await?;
                (full(&existing, &want), true)
            }
        };
        let bytes = text.len();
        blocking(&self.dataplane, move |dp| dp.apply(&text)).await?;
        if is_full {
            self.last_full = Some(started);
        }
        tracing::debug!(chains = want.chains.len(), full = is_full, bytes, elapsed = ?started.elapsed(), "netpol synced");
        self.applied = Some(want);
        Ok(())
    }
}

/// Runs an `nft` call off the async workers.
async fn blocking<T: Send + 'static>(
    dataplane: &Dataplane,
    call: impl FnOnce(&Dataplane) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let dataplane = dataplane.clone();
    tokio::task::spawn_blocking(move || call(&dataplane))
        .await
        .map_err(|err| Error::NftFailed(format!("nft task failed: {err}")))?
}
