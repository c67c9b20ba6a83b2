//! The ReplicaSet controller (and, with the same logic, the ReplicationController manager), as
//! upstream's `pkg/controller/replicaset`: keeps `spec.replicas` active pods matching the
//! selector, adopting orphans and releasing pods that stopped matching, and reports status.
//!
//! [`sync`] decides; this module watches, queues and writes. Pods are created in slow-start
//! batches and the controller does not act again on a replica set until its own creations and
//! deletions have been observed ([`Expectations`]).

pub mod kind;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use k8rs_controller_runtime::{
    self as runtime, Change, EventSink, Expectations, Index, Queue, Requeue, SharedInformers,
    key_of, lookup, slow_start,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

pub use kind::{ReplicaKind, Status, View};
use sync::{Failure, Manage};

use crate::{Error, api_message, is_not_found, pods};

/// Concurrent syncs (upstream's `--concurrent-replicaset-syncs` default).
pub const WORKERS: usize = 5;

/// Runs the ReplicaSet controller until `shutdown`.
pub async fn run(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    run_kind::<ReplicaSet>(informers, shutdown).await
}

/// Runs the ReplicationController manager until `shutdown`.
pub async fn run_rc(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    run_kind::<ReplicationController>(informers, shutdown).await
}

struct Ctx<K: ReplicaKind> {
    client: kube::Client,
    owners: Store<K>,
    pods: Store<Pod>,
    /// Pods by controller: a sync reads its own pods and the orphans, not the namespace.
    pods_by_controller: Index<Pod>,
    queue: Queue<String>,
    expectations: Expectations,
    events: EventSink,
}

async fn run_kind<K: ReplicaKind>(
    informers: SharedInformers,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let ctx = Arc::new(Ctx::<K> {
        owners: informers.store(),
        pods: informers.store(),
        pods_by_controller: informers.by_controller(),
        queue: Queue::default(),
        expectations: Expectations::default(),
        events: EventSink::new(client.clone(), K::CONTROLLER),
        client,
    });
    let c = ctx.clone();
    informers.subscribe::<K, _>(move |change| c.on_owner(change));
    let c = ctx.clone();
    informers.subscribe::<Pod, _>(move |change| c.on_pod(change));
    let stores = vec![runtime::ready(&ctx.owners), runtime::ready(&ctx.pods)];
    let c = ctx.clone();
    let sync = move |key: String| {
        let c = c.clone();
        async move { c.sync(&key).await }
    };
    runtime::run_synced(
        K::CONTROLLER,
        stores,
        ctx.queue.clone(),
        WORKERS,
        shutdown,
        sync,
    )
    .await?;
    Ok(())
}

impl<K: ReplicaKind> Ctx<K> {
    fn on_owner(&self, change: Change<'_, K>) {
        match change {
            (_, Some(o)) => self.queue.add(key_of(o)),
            (Some(o), None) => {
                let key = key_of(o);
                self.expectations.forget(&key);
                self.queue.add(key);
            }
            (None, None) => {}
        }
    }

    /// The key of the owner of kind `K` that controls `pod`, if it is in the cache.
    fn controlling_owner(&self, pod: &Pod) -> Option<String> {
        let r = pods::controller_ref(&pod.metadata)?;
        if r.kind != K::kind(&()) {
            return None;
        }
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), r.name);
        let owner = lookup(&self.owners, &key)?;
        (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(key)
    }

    /// Owners in the pod's namespace whose selector matches it (for orphans).
    fn matching_owners(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.namespace().unwrap_or_default();
        let labels = pod.labels();
        runtime::in_namespace(&self.owners, &ns)
            .into_iter()
            .filter(|o| o.view().is_ok_and(|v| v.selector.matches(labels)))
            .map(|o| key_of(o.as_ref()))
            .collect()
    }

    fn on_pod(&self, change: Change<'_, Pod>) {
        match change {
            (None, Some(pod)) => self.pod_added(pod),
            (Some(old), Some(new)) => self.pod_updated(old, new),
            (Some(pod), None) => self.pod_gone(pod),
            (None, None) => {}
        }
    }

    fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return self.pod_gone(pod);
        }
        match self.controlling_owner(pod) {
            Some(key) => {
                self.expectations.creation_observed(&key);
                self.queue.add(key);
            }
            None if pods::controller_ref(&pod.metadata).is_none() => self
                .matching_owners(pod)
                .into_iter()
                .for_each(|k| self.queue.add(k)),
            None => {}
        }
    }
    fn pod_updated(&self, old: &Pod, new: &Pod) {
        if old.resource_version() == new.resource_version() {
            return;
        }
        let labels_changed = old.labels() != new.labels();
        if new.metadata.deletion_timestamp.is_some() {
            self.pod_gone(new);
            if labels_changed {
                self.pod_gone(old);
            }
            return;
        }
        let (old_ref, new_ref) = (
            pods::controller_ref(&old.metadata),
            pods::controller_ref(&new.metadata),
        );
        if old_ref != new_ref
            && let Some(key) = self.controlling_owner(old)
        {
            self.queue.add(key);
        }
        if let Some(key) = self.controlling_owner(new) {
            self.queue.add(key.clone());
            let min_ready = lookup(&self.owners, &key).and_then(|o| o.view().ok());
            if let Some(v) = min_ready
                && v.min_ready_seconds > 0
                && !pods::is_ready(old)
                && pods::is_ready(new)
            {
                let secs = u64::try_from(v.min_ready_seconds).unwrap_or(0) + 1;
                self.queue.add_after(key, Duration::from_secs(secs));
            }
            return;
        }
        if new_ref.is_none() && (labels_changed || old_ref.is_some()) {
            self.matching_owners(new)
                .into_iter()
                .for_each(|k| self.queue.add(k));
        }
    }

    fn pod_gone(&self, pod: &Pod) {
        if let Some(key) = self.controlling_owner(pod) {
            self.expectations.deletion_observed(&key, &key_of(pod));
            self.queue.add(key);
        }
    }

    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let Some(obj) = lookup(&self.owners, key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let view = match obj.view() {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(key, %err, "invalid selector; not syncing");
                return Ok(None);
            }
        };
        let may_manage = self.expectations.satisfied(key);
        tracing::debug!(key, may_manage, "syncing");
        let now = Timestamp::now();
        let candidates = self
            .pods_by_controller
            .claimable(&view.namespace, &view.uid);
        let plan = sync::plan(&view, &candidates, may_manage, now);
        let (owned, claim_err) = self.apply_claim(&view, plan.claim).await;
        let mut failure = None;
        let mut result = claim_err.map_or(Ok(()), Err);
        if may_manage && !view.deleting {
            // Decide again over what was actually claimed.
            let manage = sync::manage(&view, &owned, now);
            if let Err(err) = self.apply_manage(key, &view, manage).await {
                failure = Some(Failure {
                    reason: sync::failure_reason(&view, owned.len()),
                    message: err.to_string(),
                });
                result = Err(err);
            }
        }
        tracing::debug!(key, "managed; writing status");
        let status = sync::status(&view, &owned, failure.as_ref(), now);
        if status != view.status {
            let api: Api<K> = Api::namespaced(self.client.clone(), &view.namespace);
            api.patch_status(
                &view.name,
                &PatchParams::default(),
                &Patch::Merge(status.to_patch()),
            )
            .await
            .map_err(|e| Error::api(format!("updating status of {key}"), e))?;
        }
        result?;
        let ready_not_available = status.ready_replicas == status.replicas
            && status.available_replicas != status.replicas;
        if view.min_ready_seconds > 0 && ready_not_available {
            let secs = u64::try_from(view.min_ready_seconds).unwrap_or(0);
            return Ok(Some(Duration::from_secs(secs)));
        }
        Ok(None)
    }

    /// Adopts and releases as claimed; returns the pods actually owned afterwards.
    async fn apply_claim(
        &self,
        view: &View,
        claim: pods::Claim<Pod>,
    ) -> (Vec<Arc<Pod>>, Option<Error>) {
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &view.namespace);
        let mut owned = claim.owned;
        let mut error = None;
        if !claim.adopt.is_empty() && !self.can_adopt(view).await {
            owned.retain(|p| !claim.adopt.iter().any(|a| Arc::ptr_eq(a, p)));
        } else {
            for pod in &claim.adopt {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let patch = Patch::Strategic(pods::adopt_patch(&view.owner, &uid));
                if let Err(err) = pods_api
                    .patch(&pod.name_any(), &PatchParams::default(), &patch)
                    .await
                {
                    owned.retain(|p| !Arc::ptr_eq(p, pod));
                    if !is_not_found(&err) {
                        error = Some(Error::api(format!("adopting pod {}", pod.name_any()), err));
                    }
                }
            }
        }
        for pod in &claim.release {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let patch = Patch::Strategic(pods::release_patch(&view.uid, &uid));
            if let Err(err) = pods_api
                .patch(&pod.name_any(), &PatchParams::default(), &patch)
                .await
                && !is_not_found(&err)
            {
                error = Some(Error::api(format!("releasing pod {}", pod.name_any()), err));
            }
        }
        (owned, error)
    }

    /// Upstream's `RecheckDeletionTimestamp`: adopt only if a fresh read shows the same, live owner.
    async fn can_adopt(&self, view: &View) -> bool {
        let api: Api<K> = Api::namespaced(self.client.clone(), &view.namespace);
        match api.get(&view.name).await {
            Ok(fresh) => {
                fresh.meta().uid.as_deref() == Some(view.uid.as_str())
                    && fresh.meta().deletion_timestamp.is_none()
            }
            Err(_) => false,
        }
    }

    async fn apply_manage(&self, key: &str, view: &View, manage: Manage) -> Result<(), Error> {
        match manage {
            Manage::Nothing => Ok(()),
            Manage::Create(n) => self.create_pods(key, view, n).await,
            Manage::Delete(victims) => self.delete_pods(key, view, victims).await,
        }
    }

    async fn create_pods(&self, key: &str, view: &View, n: usize) -> Result<(), Error> {
        let Some(template) = &view.template else {
            return Ok(());
        };
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &view.namespace);
        let pod = pods::pod_from_template(template, view.owner.clone(), &view.namespace);
        self.expectations.expect_creations(key, n);
        let (created, err) = slow_start(n, 1, || {
            let (pods_api, pod) = (&pods_api, &pod);
            async move {
                match pods_api.create(&PostParams::default(), pod).await {
                    Ok(p) => {
                        let note = format!("Created pod: {}", p.name_any());
                        self.events
                            .normal(&view.reference, "SuccessfulCreate", note);
                        Ok(())
                    }
                    Err(err) if is_namespace_terminating(&err) => Ok(()),
                    Err(err) => {
                        let note = format!("Error creating: {}", api_message(&err));
                        self.events.warning(&view.reference, "FailedCreate", note);
                        Err(err)
                    }
                }
            }
        })
        .await;
        for _ in created..n {
            self.expectations.creation_observed(key);
        }
        match err {
            Some(err) => Err(Error::Partial(api_message(&err))),
            None => Ok(()),
        }
    }

    async fn delete_pods(
        &self,
        key: &str,
        view: &View,
        victims: Vec<Arc<Pod>>,
    ) -> Result<(), Error> {
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &view.namespace);
        self.expectations
            .expect_deletions(key, victims.iter().map(|p| key_of(p.as_ref())));
        let deletes = victims.iter().map(|pod| {
            let pods_api = &pods_api;
            async move {
                let name = pod.name_any();
                match pods_api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        let note = format!("Deleted pod: {name}");
                        self.events
                            .normal(&view.reference, "SuccessfulDelete", note);
                        Ok(())
                    }
                    Err(err) => {
                        self.expectations
                            .deletion_observed(key, &key_of(pod.as_ref()));
                        if is_not_found(&err) {
                            return Ok(());
                        }
                        let note = format!("Error deleting: {}", api_message(&err));
                        self.events.warning(&view.reference, "FailedDelete", note);
                        Err(err)
                    }
                }
            }
        });
        let results = futures::future::join_all(deletes).await;
        match results.into_iter().find_map(Result::err) {
            Some(err) => Err(Error::Partial(api_message(&err))),
            None => Ok(()),
        }
    }
}

fn is_namespace_terminating(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}
