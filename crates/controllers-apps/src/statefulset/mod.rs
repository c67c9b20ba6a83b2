//! The StatefulSet controller, as upstream's `pkg/controller/statefulset`: pods with stable
//! names `SET-ORDINAL` and claims `TEMPLATE-SET-ORDINAL` made before them, created and removed
//! in ordinal order (OrderedReady) or all at once (Parallel), rolled from the highest ordinal
//! down to the partition (RollingUpdate) or left to the user (OnDelete), and recorded as
//! ControllerRevisions (`status.currentRevision` / `updateRevision`) so `kubectl rollout
//! status/history/undo statefulset` work.
//!
//! [`plan`] decides, [`identity`] names; this module watches, keeps revisions and writes.

pub mod identity;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8rs_controller_runtime::{
    self as runtime, Change, EventSink, Expectations, Index, Queue, Requeue, SharedInformers,
    key_of, lookup,
};
use k8rs_machinery::labels::Selector;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::history::{self, Step};
use crate::{Error, api_message, is_not_found, pods};
use plan::{Action, Input};

/// The name events are reported under, as upstream.
pub const CONTROLLER_NAME: &str = "statefulset-controller";
/// Concurrent syncs (upstream's `--concurrent-statefulset-syncs` default).
pub const WORKERS: usize = 5;

struct Ctx {
    client: kube::Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    /// Pods by controller: a sync reads its own pods and the orphans, not the namespace.
    pods_by_controller: Index<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    queue: Queue<String>,
    expectations: Expectations,
    events: EventSink,
}

/// Runs the StatefulSet controller until `shutdown`.
pub async fn run(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    let client = informers.client().clone();
    let ctx = Arc::new(Ctx {
        sets: informers.store(),
        pods: informers.store(),
        pods_by_controller: informers.by_controller(),
        claims: informers.store(),
        revisions: informers.store(),
        queue: Queue::default(),
        expectations: Expectations::default(),
        events: EventSink::new(client.clone(), CONTROLLER_NAME),
        client,
    });
    let c = ctx.clone();
    informers.subscribe::<StatefulSet, _>(move |ch| c.on_set(ch));
    let c = ctx.clone();
    informers.subscribe::<Pod, _>(move |ch| c.on_pod(ch));
    let c = ctx.clone();
    informers.subscribe::<PersistentVolumeClaim, _>(move |ch| c.on_claim(ch));
    let stores = vec![
        runtime::ready(&ctx.sets),
        runtime::ready(&ctx.pods),
        runtime::ready(&ctx.claims),
        runtime::ready(&ctx.revisions),
    ];
    let c = ctx.clone();
    let sync = move |key: String| {
        let c = c.clone();
        async move { c.sync(&key).await }
    };
    runtime::run_synced(
        CONTROLLER_NAME,
        stores,
        ctx.queue.clone(),
        WORKERS,
        shutdown,
        sync,
    )
    .await?;
    Ok(())
}

impl Ctx {
    fn on_set(&self, change: Change<'_, StatefulSet>) {
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

    /// The key of the set controlling `pod`.
    fn owner(&self, pod: &Pod) -> Option<String> {
        let r = pods::controller_ref(&pod.metadata)?;
        (r.kind == "StatefulSet")
            .then(|| format!("{}/{}", pod.namespace().unwrap_or_default(), r.name))
    }

    /// Sets whose selector matches an orphan (to adopt it).
    fn matching_sets(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.namespace().unwrap_or_default();
        runtime::in_namespace(&self.sets, &ns)
            .into_iter()
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|sp| Selector::from_label_selector(&sp.selector).ok())
                    .is_some_and(|sel| sel.matches(pod.labels()))
            })
            .map(|s| key_of(s.as_ref()))
            .collect()
    }

    fn on_pod(&self, change: Change<'_, Pod>) {
        let (pod, added, gone) = match change {
            (None, Some(p)) => (p, true, p.metadata.deletion_timestamp.is_some()),
            (Some(_), Some(new)) => (new, false, new.metadata.deletion_timestamp.is_some()),
            (Some(p), None) => (p, false, true),
            (None, None) => return,
        };
        if let (Some(old), Some(new)) = change
            && old.labels() != new.labels()
            && let Some(key) = self.owner(old)
        {
            self.queue.add(key);
        }
        match self.owner(pod) {
            Some(key) => {
                if added {
                    self.expectations.creation_observed(&key);
                }
                if gone {
                    self.expectations.deletion_observed(&key, &key_of(pod));
                }
                self.queue.add(key);
            }
            None if !gone => self
                .matching_sets(pod)
                .into_iter()
                .for_each(|k| self.queue.add(k)),
            None => {}
        }
    }

    /// A claim changed: the sets of its namespace whose name it carries may wait for it.
    fn on_claim(&self, (old, new): Change<'_, PersistentVolumeClaim>) {
        let Some(claim) = new.or(old) else {
            return;
        };
        let ns = claim.namespace().unwrap_or_default();
        let name = claim.name_any();
        for set in runtime::in_namespace(&self.sets, &ns) {
            if name.contains(&format!("-{}-", set.name_any())) {
                self.queue.add(key_of(set.as_ref()));
            }
        }
    }

    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let Some(set) = lookup(&self.sets, key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(sel) = set
            .spec
            .as_ref()
            .and_then(|s| Selector::from_label_selector(&s.selector).ok())
        else {
            return Ok(None);
        };
        let revisions = self.owned_revisions(&set);
        let Some((current, update, collisions)) = self.sync_revisions(&set, &revisions).await?
        else {
            return Ok(None);
        };
        let owned = self.claim_pods(&set, &sel).await;
        let ns = set.namespace().unwrap_or_default();
        let claims: BTreeMap<String, Arc<PersistentVolumeClaim>> =
            runtime::in_namespace(&self.claims, &ns)
                .into_iter()
                .map(|c| (c.name_any(), c))
                .collect();
        let plan = plan::plan(Input {
            set: &set,
            pods: &owned,
            claims: &claims,
            current: &current,
            update: &update,
            collision_count: collisions,
            now: Timestamp::now(),
        });
        let mut result = Ok(());
        if self.expectations.satisfied(key) {
            result = self.perform(key, &set, plan.actions).await;
        }
        self.truncate_history(&set, &revisions, &[&current, &update], &owned)
            .await;
        if set.status.as_ref() != Some(&plan.status) {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
            let body = json!({"status": plan.status});
            api.patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(body),
            )
            .await
            .map_err(|e| Error::api(format!("updating status of {key}"), e))?;
        }
        result.map(|_| plan.requeue_after)
    }

    fn owned_revisions(&self, set: &StatefulSet) -> Vec<ControllerRevision> {
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let ns = set.namespace().unwrap_or_default();
        let mut revs: Vec<ControllerRevision> = runtime::in_namespace(&self.revisions, &ns)
            .into_iter()
            .filter(|r| pods::controller_ref(&r.metadata).is_some_and(|o| o.uid == uid))
            .map(|r| r.as_ref().clone())
            .collect();
        history::sort(&mut revs);
        revs
    }

    /// Finds or makes the update revision; returns (current, update, collision count), or
    /// `None` for a set being deleted that has no revision yet.
    async fn sync_revisions(
        &self,
        set: &StatefulSet,
        revisions: &[ControllerRevision],
    ) -> Result<Option<(ControllerRevision, ControllerRevision, i32)>, Error> {
        let collisions = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let labels = set
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let next = history::next_revision(revisions);
        let mut wanted = history::new_revision(
            set,
            plan::revision_data(set),
            &labels,
            next,
            Some(collisions),
        );
        wanted.metadata.annotations = set.metadata.annotations.clone();
        let step = history::step(revisions, wanted);
        let update = match step {
            Step::Keep(r) => r,
            _ if set.metadata.deletion_timestamp.is_some() => match revisions.last() {
                Some(r) => r.clone(),
                None => return Ok(None),
            },
            Step::Renumber(r, n) => self.renumber(&r, n).await?,
            Step::Create(r) => self.create_revision(set, r, collisions).await?,
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok(Some((current, update, collisions)))
    }

    async fn renumber(
        &self,
        rev: &ControllerRevision,
        n: i64,
    ) -> Result<ControllerRevision, Error> {
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &rev.namespace().unwrap_or_default());
        api.patch(
            &rev.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"revision": n})),
        )
        .await
        .map_err(|e| Error::api("renumbering a controller revision", e))
    }

    /// Creates `wanted`; on a name taken by other data, bumps `status.collisionCount` and
    /// fails so the next sync hashes differently.
    async fn create_revision(
        &self,
        set: &StatefulSet,
        wanted: ControllerRevision,
        collisions: i32,
    ) -> Result<ControllerRevision, Error> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &wanted).await {
            Ok(r) => Ok(r),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api
                    .get(&wanted.name_any())
                    .await
                    .map_err(|e| Error::api("reading a controller revision", e))?;
                if history::equal(&existing, &wanted) {
                    return Ok(existing);
                }
                let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
                let body = json!({"status": {"collisionCount": collisions + 1}});
                sets.patch_status(
                    &set.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(body),
                )
                .await
                .map_err(|e| Error::api("recording a revision hash collision", e))?;
                Err(Error::Partial("controller revision hash collision".into()))
            }
            Err(e) => Err(Error::api("creating a controller revision", e)),
        }
    }

    /// The set's pods after adopting matching orphans and releasing pods that no longer
    /// match (upstream's `getPodsForStatefulSet`); only pods named as members are adopted.
    async fn claim_pods(&self, set: &StatefulSet, sel: &Selector) -> Vec<Arc<Pod>> {
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let deleting = set.metadata.deletion_timestamp.is_some();
        let candidates = self
            .pods_by_controller
            .claimable(&ns, &uid)
            .into_iter()
            .filter(|p| pods::controller_ref(&p.metadata).is_some() || identity::is_member(set, p));
        let claim = pods::claim(&uid, deleting, |l| sel.matches(l), candidates);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let owner = pods::owner_ref(set);
        let params = PatchParams::default();
        for pod in &claim.adopt {
            let patch = pods::adopt_patch(&owner, pods_uid(pod));
            if let Err(e) = api
                .patch(&pod.name_any(), &params, &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(pod = pod.name_any(), %e, "adopting failed");
            }
        }
        for pod in &claim.release {
            let patch = pods::release_patch(&uid, pods_uid(pod));
            if let Err(e) = api
                .patch(&pod.name_any(), &params, &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(pod = pod.name_any(), %e, "releasing failed");
            }
        }
        claim.owned
    }

    async fn truncate_history(
        &self,
        set: &StatefulSet,
        revisions: &[ControllerRevision],
        live: &[&ControllerRevision],
        owned: &[Arc<Pod>],
    ) {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut in_use: Vec<&str> = owned
            .iter()
            .filter_map(|p| identity::pod_revision(p))
            .collect();
        in_use.extend(live.iter().filter_map(|r| r.metadata.name.as_deref()));
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        for name in history::to_truncate(revisions, &in_use, limit) {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }

    /// Performs the actions in order, stopping at the first failure (a pod is never created
    /// before its claims).
    async fn perform(
        &self,
        key: &str,
        set: &StatefulSet,
        actions: Vec<Action>,
    ) -> Result<(), Error> {
        let ns = set.namespace().unwrap_or_default();
        let creates = actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod(_)))
            .count();
        let deletes: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod(p) => Some(format!("{ns}/{p}")),
                _ => None,
            })
            .collect();
        if creates > 0 || !deletes.is_empty() {
            self.expectations.expect(key, creates, deletes);
        }
        let mut actions = actions.into_iter();
        while let Some(action) = actions.next() {
            if let Err(e) = self.act(key, set, action).await {
                for rest in actions {
                    self.unexpect(key, &ns, &rest);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn unexpect(&self, key: &str, ns: &str, action: &Action) {
        match action {
            Action::CreatePod(_) => self.expectations.creation_observed(key),
            Action::DeletePod(p) => self
                .expectations
                .deletion_observed(key, &format!("{ns}/{p}")),
            _ => {}
        }
    }

    async fn act(&self, key: &str, set: &StatefulSet, action: Action) -> Result<(), Error> {
        let ns = set.namespace().unwrap_or_default();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let reference = pods::object_ref(set);
        let set_name = set.name_any();
        let pp = PostParams::default();
        match action {
            Action::CreateClaim { pod, claim } => {
                let name = claim.name_any();
                match claims_api.create(&pp, &claim).await {
                    Ok(_) => {
                        let note = format!(
                            "create Claim {name} Pod {pod} in StatefulSet {set_name} success"
                        );
                        self.events.about(
                            &reference,
                            related("v1", "PersistentVolumeClaim", &ns, &name),
                            false,
                            "SuccessfulCreate",
                            note,
                        );
                        Ok(())
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => {
                        let note = format!(
                            "create Claim {name} for Pod {pod} in StatefulSet {set_name} failed error: {}",
                            api_message(&e)
                        );
                        self.events.about(
                            &reference,
                            related("v1", "PersistentVolumeClaim", &ns, &name),
                            true,
                            "FailedCreate",
                            note,
                        );
                        Err(Error::api(format!("creating claim {name}"), e))
                    }
                }
            }
            Action::CreatePod(pod) => {
                let name = pod.name_any();
                let result = pods_api.create(&pp, &pod).await.map(|_| ());
                if result.is_err() {
                    self.expectations.creation_observed(key);
                }
                self.record("create", set, &name, result)
            }
            Action::DeletePod(name) => {
                let result = pods_api.delete(&name, &DeleteParams::default()).await;
                match result {
                    Err(e) if is_not_found(&e) => {
                        self.expectations
                            .deletion_observed(key, &format!("{ns}/{name}"));
                        Ok(())
                    }
                    other => {
                        if other.is_err() {
                            self.expectations
                                .deletion_observed(key, &format!("{ns}/{name}"));
                        }
                        self.record("delete", set, &name, other.map(|_| ()))
                    }
                }
            }
            Action::UpdatePod(pod) => {
                let name = pod.name_any();
                let result = pods_api.replace(&name, &pp, &pod).await.map(|_| ());
                self.record("update", set, &name, result)
            }
            Action::SetClaimOwners { claim, owners } => {
                let body = json!({"metadata": {"ownerReferences": owners}});
                claims_api
                    .patch(&claim, &PatchParams::default(), &Patch::Merge(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::api(format!("updating owners of claim {claim}"), e))
            }
        }
    }

    /// Upstream's `recordPodEvent`: `SuccessfulCreate` "create Pod web-0 in StatefulSet web
    /// successful", or the Failed reason with the error.
    fn record(
        &self,
        verb: &str,
        set: &StatefulSet,
        pod: &str,
        result: Result<(), kube::Error>,
    ) -> Result<(), Error> {
        let reference = pods::object_ref(set);
        let title = match verb {
            "create" => "Create",
            "delete" => "Delete",
            _ => "Update",
        };
        let set_name = set.name_any();
        let ns = set.namespace().unwrap_or_default();
        let pod_ref = related("v1", "Pod", &ns, pod);
        match result {
            Ok(()) => {
                let note = format!("{verb} Pod {pod} in StatefulSet {set_name} successful");
                self.events.about(
                    &reference,
                    pod_ref,
                    false,
                    &format!("Successful{title}"),
                    note,
                );
                Ok(())
            }
            Err(e) => {
                let note = format!(
                    "{verb} Pod {pod} in StatefulSet {set_name} failed error: {}",
                    api_message(&e)
                );
                self.events
                    .about(&reference, pod_ref, true, &format!("Failed{title}"), note);
                Err(Error::api(format!("{verb} pod {pod}"), e))
            }
        }
    }
}

/// A reference to the object `kind` `name` a set's event is about.
fn related(api_version: &str, kind: &str, ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn pods_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
