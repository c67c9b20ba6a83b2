//! The Deployment controller, as upstream's `pkg/controller/deployment`: rolls a deployment's
//! pods between replica sets (RollingUpdate or Recreate), keeps revisions and history, scales
//! proportionally, and reports Progressing/Available conditions as `kubectl rollout status`
//! reads them.
//!
//! [`rollout`] decides; this module watches, claims replica sets and writes.

pub mod rollout;
pub mod util;

use std::collections::HashSet;
use std::sync::Arc;

use k8rs_controller_runtime::{
    self as runtime, Change, EventSink, Index, Queue, Requeue, SharedInformers, key_of, lookup,
};
use k8rs_machinery::labels::Selector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{Error, api_message, is_not_found, pods};
use rollout::Action;

/// The name events are reported under, as upstream.
pub const CONTROLLER_NAME: &str = "deployment-controller";
/// Concurrent syncs (upstream's `--concurrent-deployment-syncs` default).
pub const WORKERS: usize = 5;

struct Ctx {
    client: kube::Client,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    /// Pods by controller, to tell which replica sets still have live pods.
    pods_by_controller: Index<Pod>,
    queue: Queue<String>,
    events: EventSink,
}

/// Runs the Deployment controller until `shutdown`.
pub async fn run(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    let client = informers.client().clone();
    let ctx = Arc::new(Ctx {
        deployments: informers.store(),
        replicasets: informers.store(),
        pods: informers.store(),
        pods_by_controller: informers.by_controller(),
        queue: Queue::default(),
        events: EventSink::new(client.clone(), CONTROLLER_NAME),
        client,
    });
    let c = ctx.clone();
    informers.subscribe::<Deployment, _>(move |ch| c.on_deployment(ch));
    let c = ctx.clone();
    informers.subscribe::<ReplicaSet, _>(move |ch| c.on_replicaset(ch));
    let c = ctx.clone();
    informers.subscribe::<Pod, _>(move |ch| c.on_pod(ch));
    let stores = vec![
        runtime::ready(&ctx.deployments),
        runtime::ready(&ctx.replicasets),
        runtime::ready(&ctx.pods),
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

fn selector(d: &Deployment) -> Option<Selector> {
    let sel = &d.spec.as_ref()?.selector;
    Selector::from_label_selector(sel).ok()
}

impl Ctx {
    fn on_deployment(&self, (old, new): Change<'_, Deployment>) {
        if let Some(d) = new.or(old) {
            self.queue.add(key_of(d));
        }
    }

    fn owner_of(&self, ns: &str, meta: &kube::api::ObjectMeta, kind: &str) -> Option<String> {
        let r = pods::controller_ref(meta)?;
        (r.kind == kind).then(|| format!("{ns}/{}", r.name))
    }

    fn matching(&self, rs: &ReplicaSet) -> Vec<String> {
        let ns = rs.namespace().unwrap_or_default();
        runtime::in_namespace(&self.deployments, &ns)
            .into_iter()
            .filter(|d| selector(d).is_some_and(|s| !s.is_empty() && s.matches(rs.labels())))
            .map(|d| key_of(d.as_ref()))
            .collect()
    }

    fn on_replicaset(&self, change: Change<'_, ReplicaSet>) {
        let enqueue = |rs: &ReplicaSet| {
            let ns = rs.namespace().unwrap_or_default();
            match self.owner_of(&ns, &rs.metadata, "Deployment") {
                Some(key) => self.queue.add(key),
                None if pods::controller_ref(&rs.metadata).is_none() => self
                    .matching(rs)
                    .into_iter()
                    .for_each(|k| self.queue.add(k)),
                None => {}
            }
        };
        match change {
            (None, Some(rs)) | (Some(rs), None) => enqueue(rs),
            (Some(old), Some(new)) => {
                if pods::controller_ref(&old.metadata) != pods::controller_ref(&new.metadata)
                    || old.labels() != new.labels()
                {
                    enqueue(old);
                }
                enqueue(new);
            }
            (None, None) => {}
        }
    }

    /// Upstream watches pod deletions only to continue a Recreate rollout.
    fn on_pod(&self, change: Change<'_, Pod>) {
        let (Some(pod), None) = change else {
            return;
        };
        let ns = pod.namespace().unwrap_or_default();
        let Some(rs_key) = self.owner_of(&ns, &pod.metadata, "ReplicaSet") else {
            return;
        };
        let Some(rs) = lookup(&self.replicasets, &rs_key) else {
            return;
        };
        if let Some(d_key) = self.owner_of(&ns, &rs.metadata, "Deployment")
            && lookup(&self.deployments, &d_key).is_some_and(|d| util::is_recreate(&d))
        {
            self.queue.add(d_key);
        }
    }

    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let Some(d) = lookup(&self.deployments, key) else {
            return Ok(None);
        };
        let Some(sel) = selector(&d) else {
            tracing::warn!(key, "invalid selector; not syncing");
            return Ok(None);
        };
        if sel.is_empty() {
            let note = "This deployment is selecting all pods. A non-empty selector is required.";
            self.events
                .warning(&pods::object_ref(d.as_ref()), "SelectingAll", note.into());
            return Ok(None);
        }
        let owned = self.claim(&d, &sel).await?;
        // The owned replica sets that still control a pod that has not terminated.
        let live_pods: HashSet<String> = owned
            .iter()
            .filter_map(|r| r.metadata.uid.clone())
            .filter(|uid| {
                self.pods_by_controller
                    .any(uid, |p| !matches!(pods::phase(p), "Succeeded" | "Failed"))
            })
            .collect();
        let plan = rollout::plan(&d, owned, &live_pods, Timestamp::now());
        for action in plan.actions {
            self.perform(&d, action).await?;
        }
        Ok(plan.requeue_after)
    }

    /// Claims the namespace's replica sets (adopting orphans, releasing mismatches).
    async fn claim(&self, d: &Deployment, sel: &Selector) -> Result<Vec<ReplicaSet>, Error> {
        let ns = d.namespace().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let claim = pods::claim(
            &uid,
            deleting,
            |l| sel.matches(l),
            runtime::in_namespace(&self.replicasets, &ns),
        );
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let owner = pods::owner_ref(d);
        let mut owned = claim.owned;
        for rs in &claim.adopt {
            let patch = pods::adopt_patch(&owner, rs.metadata.uid.as_deref().unwrap_or_default());
            if let Err(err) = api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                owned.retain(|o| !Arc::ptr_eq(o, rs));
                if !is_not_found(&err) {
                    return Err(Error::api(
                        format!("adopting replica set {}", rs.name_any()),
                        err,
                    ));
                }
            }
        }
        for rs in &claim.release {
            let patch = pods::release_patch(&uid, rs.metadata.uid.as_deref().unwrap_or_default());
            if let Err(err) = api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
                && !is_not_found(&err)
            {
                return Err(Error::api(
                    format!("releasing replica set {}", rs.name_any()),
                    err,
                ));
            }
        }
        Ok(owned.iter().map(|r| r.as_ref().clone()).collect())
    }

    async fn perform(&self, d: &Deployment, action: Action) -> Result<(), Error> {
        let ns = d.namespace().unwrap_or_default();
        let name = d.name_any();
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let d_api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let reference = pods::object_ref(d);
        match action {
            Action::CreateReplicaSet { rs, event } => {
                match rs_api.create(&PostParams::default(), &rs).await {
                    Ok(_) => {
                        if let Some(note) = event {
                            self.events.normal(&reference, "ScalingReplicaSet", note);
                        }
                        Ok(())
                    }
                    Err(err) => self.create_failed(d, &rs, err).await,
                }
            }
            Action::UpdateReplicaSet { rs, event } => {
                let body = json!({
                    "metadata": {"annotations": rs.metadata.annotations, "resourceVersion": rs.metadata.resource_version},
                    "spec": {"replicas": util::rs_replicas(&rs), "minReadySeconds": rs.spec.as_ref().and_then(|s| s.min_ready_seconds)},
                });
                let rs_name = rs.name_any();
                rs_api
                    .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map_err(|e| Error::api(format!("updating replica set {ns}/{rs_name}"), e))?;
                if let Some(note) = event {
                    self.events.normal(&reference, "ScalingReplicaSet", note);
                }
                Ok(())
            }
            Action::DeleteReplicaSet { name: rs_name } => {
                match rs_api.delete(&rs_name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(Error::api(
                        format!("deleting replica set {ns}/{rs_name}"),
                        e,
                    )),
                }
            }
            Action::SetRevision(revision) => {
                // Through the status endpoint, as upstream: annotations written there do not
                // move the generation.
                let body = json!({"metadata": {"annotations": {util::REVISION: revision}}});
                d_api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(drop)
                    .map_err(|e| Error::api(format!("setting the revision of {ns}/{name}"), e))
            }
            Action::UpdateStatus(status) => {
                let mut body = serde_json::to_value(&status).unwrap_or_default();
                if body.get("conditions").is_none() {
                    body["conditions"] = json!([]);
                }
                d_api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": body})),
                    )
                    .await
                    .map(drop)
                    .map_err(|e| Error::api(format!("updating status of {ns}/{name}"), e))
            }
        }
    }

    /// A failed replica set creation: a hash collision bumps `collisionCount`; other errors
    /// set Progressing=False (FailedRSCreate), as upstream.
    async fn create_failed(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        err: kube::Error,
    ) -> Result<(), Error> {
        let ns = d.namespace().unwrap_or_default();
        let d_api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let rs_name = rs.name_any();
        let already = matches!(&err, kube::Error::Api(s) if s.code == 409);
        if already {
            let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
            let existing = rs_api.get(&rs_name).await.ok();
            let ours = existing.as_ref().is_some_and(|e| {
                pods::controller_ref(&e.metadata).map(|r| r.uid.as_str()) == d.meta().uid.as_deref()
                    && match (
                        e.spec.as_ref().and_then(|s| s.template.as_ref()),
                        rs.spec.as_ref().and_then(|s| s.template.as_ref()),
                    ) {
                        (Some(a), Some(b)) => util::equal_ignore_hash(a, b),
                        _ => false,
                    }
            });
            if !ours {
                let count = d
                    .status
                    .as_ref()
                    .and_then(|s| s.collision_count)
                    .unwrap_or(0)
                    + 1;
                let body = json!({"status": {"collisionCount": count}});
                d_api
                    .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(body))
                    .await
                    .map_err(|e| Error::api("bumping collisionCount", e))?;
            }
            return Err(Error::Partial(format!(
                "replica set {rs_name} already exists"
            )));
        }
        let msg = format!(
            "Failed to create new replica set {rs_name:?}: {}",
            api_message(&err)
        );
        self.events
            .warning(&pods::object_ref(d), "FailedCreate", msg.clone());
        if util::progress_deadline(d).is_some() {
            let mut status = d.status.clone().unwrap_or_default();
            let c = util::new_condition(
                util::PROGRESSING,
                "False",
                "FailedRSCreate",
                msg,
                Timestamp::now(),
            );
            util::set_condition(&mut status, c);
            let body = json!({"status": {"conditions": status.conditions}});
            let _ = d_api
                .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(body))
                .await;
        }
        Err(Error::api(
            format!("creating replica set {ns}/{rs_name}"),
            err,
        ))
    }
}
