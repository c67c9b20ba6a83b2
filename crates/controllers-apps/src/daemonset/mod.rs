//! The DaemonSet controller, as upstream's `pkg/controller/daemon`: one pod per eligible node,
//! pinned by a required node affinity on `metadata.name` (the scheduler binds it), rolled to
//! new templates (RollingUpdate with maxUnavailable, or OnDelete) and recorded as
//! ControllerRevisions so `kubectl rollout history/undo daemonset` work.
//!
//! [`plan`] decides; this module watches, keeps revisions and writes.

pub mod plan;

use std::sync::Arc;

use k8rs_controller_runtime::{
    self as runtime, Change, EventSink, Expectations, Index, Queue, Requeue, SharedInformers,
    key_of, lookup,
};
use k8rs_machinery::labels::Selector;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::history;
use crate::{Error, api_message, is_not_found, pods};
use plan::Action;

/// The name events are reported under, as upstream.
pub const CONTROLLER_NAME: &str = "daemonset-controller";
/// Concurrent syncs (upstream's `--concurrent-daemonset-syncs` default).
pub const WORKERS: usize = 2;

struct Ctx {
    client: kube::Client,
    sets: Store<DaemonSet>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// Pods by controller: a sync reads its own pods and the orphans, not the namespace.
    pods_by_controller: Index<Pod>,
    revisions: Store<ControllerRevision>,
    queue: Queue<String>,
    expectations: Expectations,
    events: EventSink,
}

/// Runs the DaemonSet controller until `shutdown`.
pub async fn run(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    let client = informers.client().clone();
    let ctx = Arc::new(Ctx {
        sets: informers.store(),
        nodes: informers.store(),
        pods: informers.store(),
        pods_by_controller: informers.by_controller(),
        revisions: informers.store(),
        queue: Queue::default(),
        expectations: Expectations::default(),
        events: EventSink::new(client.clone(), CONTROLLER_NAME),
        client,
    });
    let c = ctx.clone();
    informers.subscribe::<DaemonSet, _>(move |(old, new)| {
        if let Some(ds) = new.or(old) {
            c.queue.add(key_of(ds));
        }
    });
    let c = ctx.clone();
    informers.subscribe::<Node, _>(move |_| c.enqueue_all());
    let c = ctx.clone();
    informers.subscribe::<Pod, _>(move |ch| c.on_pod(ch));
    let stores = vec![
        runtime::ready(&ctx.sets),
        runtime::ready(&ctx.nodes),
        runtime::ready(&ctx.pods),
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
    fn enqueue_all(&self) {
        for ds in self.sets.state() {
            self.queue.add(key_of(ds.as_ref()));
        }
    }

    fn owner(&self, pod: &Pod) -> Option<String> {
        let r = pods::controller_ref(&pod.metadata)?;
        (r.kind == "DaemonSet")
            .then(|| format!("{}/{}", pod.namespace().unwrap_or_default(), r.name))
    }

    /// Queues the daemon sets whose selector matches an orphan (to adopt it).
    fn enqueue_matching(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let ns = pod.namespace().unwrap_or_default();
        for ds in runtime::in_namespace(&self.sets, &ns) {
            let matches = ds
                .spec
                .as_ref()
                .and_then(|s| Selector::from_label_selector(&s.selector).ok())
                .is_some_and(|sel| sel.matches(pod.labels()));
            if matches {
                self.queue.add(key_of(ds.as_ref()));
            }
        }
    }

    fn on_pod(&self, change: Change<'_, Pod>) {
        match change {
            (None, Some(p)) => {
                if let Some(key) = self.owner(p) {
                    self.expectations.creation_observed(&key);
                    self.queue.add(key);
                } else if pods::controller_ref(&p.metadata).is_none() {
                    self.enqueue_matching(p);
                }
            }
            (Some(_), Some(new)) => {
                if pods::controller_ref(&new.metadata).is_none() {
                    self.enqueue_matching(new);
                }
                if let Some(key) = self.owner(new) {
                    if new.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(&key, &key_of(new));
                    }
                    self.queue.add(key);
                }
            }
            (Some(p), None) => {
                if let Some(key) = self.owner(p) {
                    self.expectations.deletion_observed(&key, &key_of(p));
                    self.queue.add(key);
                }
            }
            (None, None) => {}
        }
    }

    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let Some(ds) = lookup(&self.sets, key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let ns = ds.namespace().unwrap_or_default();
        let Some(sel) = ds
            .spec
            .as_ref()
            .and_then(|s| Selector::from_label_selector(&s.selector).ok())
        else {
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let (hash, revisions) = self.sync_revision(&ds).await?;
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let claim = pods::claim(
            &uid,
            false,
            |l| sel.matches(l),
            self.pods_by_controller.claimable(&ns, &uid),
        );
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let owner = pods::owner_ref(ds.as_ref());
        for pod in &claim.adopt {
            let patch = pods::adopt_patch(&owner, pod.metadata.uid.as_deref().unwrap_or_default());
            let _ = pods_api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await;
        }
        for pod in &claim.release {
            let patch = pods::release_patch(&uid, pod.metadata.uid.as_deref().unwrap_or_default());
            if let Err(e) = pods_api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                tracing::debug!(pod = pod.name_any(), %e, "releasing a pod failed");
            }
        }
        let nodes = self.nodes.state();
        let (actions, status) = plan::plan(&ds, &nodes, &claim.owned, &hash, Timestamp::now());
        let mut result = Ok(());
        if self.expectations.satisfied(key) {
            result = self.perform(key, &ds, &hash, actions).await;
        }
        self.truncate_history(&ds, &hash, &revisions, &claim.owned)
            .await;
        let current = ds.status.clone().unwrap_or_default();
        if current != status {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
            let body = json!({"status": status});
            api.patch_status(&ds.name_any(), &PatchParams::default(), &Patch::Merge(body))
                .await
                .map_err(|e| Error::api(format!("updating status of {key}"), e))?;
        }
        result.map(|_| None)
    }

    /// Finds or creates the revision of the current template; returns its hash and the
    /// daemon set's revisions.
    async fn sync_revision(
        &self,
        ds: &DaemonSet,
    ) -> Result<(String, Vec<ControllerRevision>), Error> {
        let ns = ds.namespace().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let mut revisions: Vec<ControllerRevision> = runtime::in_namespace(&self.revisions, &ns)
            .into_iter()
            .filter(|r| pods::controller_ref(&r.metadata).is_some_and(|o| o.uid == uid))
            .map(|r| r.as_ref().clone())
            .collect();
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut data = serde_json::to_value(&template).unwrap_or_default();
        data["$patch"] = json!("replace");
        let data = json!({"spec": {"template": data}});
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let next = history::next_revision(&revisions);
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let wanted = history::new_revision(ds, data, &labels, next, collisions);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let found = history::find_equal(&revisions, &wanted)
            .last()
            .map(|r| (*r).clone());
        let current = match found {
            Some(cur) if cur.revision + 1 == next => cur,
            Some(cur) => {
                let body = json!({"revision": next});
                api.patch(
                    &cur.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&body),
                )
                .await
                .map_err(|e| Error::api("bumping a controller revision", e))?
            }
            None => match api.create(&PostParams::default(), &wanted).await {
                Ok(r) => r,
                Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 409) => {
                    let existing = api
                        .get(&wanted.name_any())
                        .await
                        .map_err(|e| Error::api("reading a revision", e))?;
                    if !history::equal(&existing, &wanted) {
                        let count = collisions.unwrap_or(0) + 1;
                        let dsapi: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
                        let body = json!({"status": {"collisionCount": count}});
                        let _ = dsapi
                            .patch_status(
                                &ds.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(body),
                            )
                            .await;
                        return Err(Error::Partial("controller revision hash collision".into()));
                    }
                    existing
                }
                Err(e) => return Err(Error::api("creating a controller revision", e)),
            },
        };
        let hash = current
            .labels()
            .get(history::REVISION_HASH_LABEL)
            .cloned()
            .unwrap_or_default();
        revisions.retain(|r| r.metadata.name != current.metadata.name);
        revisions.push(current);
        Ok((hash, revisions))
    }

    async fn truncate_history(
        &self,
        ds: &DaemonSet,
        hash: &str,
        revisions: &[ControllerRevision],
        owned: &[Arc<Pod>],
    ) {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let used: Vec<String> = owned
            .iter()
            .filter_map(|p| p.labels().get(history::REVISION_HASH_LABEL).cloned())
            .chain([hash.to_string()])
            .collect();
        let in_use: Vec<&str> = revisions
            .iter()
            .filter(|r| {
                r.labels()
                    .get(history::REVISION_HASH_LABEL)
                    .is_some_and(|h| used.contains(h))
            })
            .filter_map(|r| r.metadata.name.as_deref())
            .collect();
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        for name in history::to_truncate(revisions, &in_use, limit) {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }

    async fn perform(
        &self,
        key: &str,
        ds: &DaemonSet,
        hash: &str,
        actions: Vec<Action>,
    ) -> Result<(), Error> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let creates: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { node } => Some(node.clone()),
                Action::Delete { .. } => None,
            })
            .collect();
        let deletes: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { pod } => Some(pod.clone()),
                Action::Create { .. } => None,
            })
            .collect();
        let reference = pods::object_ref(ds);
        let mut first_err = None;
        self.expectations.expect(
            key,
            creates.len(),
            deletes.iter().map(|p| format!("{ns}/{p}")),
        );
        for pod in &deletes {
            match api.delete(pod, &DeleteParams::default()).await {
                Ok(_) => self.events.normal(
                    &reference,
                    "SuccessfulDelete",
                    format!("Deleted pod: {pod}"),
                ),
                Err(e) => {
                    self.expectations
                        .deletion_observed(key, &format!("{ns}/{pod}"));
                    if !is_not_found(&e) {
                        self.events.warning(
                            &reference,
                            "FailedDelete",
                            format!("Error deleting: {}", api_message(&e)),
                        );
                        first_err.get_or_insert(Error::api(format!("deleting pod {pod}"), e));
                    }
                }
            }
        }
        let owner = pods::owner_ref(ds);
        for node in &creates {
            let template = plan::pod_template(ds, hash, node);
            let pod = pods::pod_from_template(&template, owner.clone(), &ns);
            match api.create(&PostParams::default(), &pod).await {
                Ok(p) => self.events.normal(
                    &reference,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                ),
                Err(e) => {
                    self.expectations.creation_observed(key);
                    self.events.warning(
                        &reference,
                        "FailedCreate",
                        format!("Error creating: {}", api_message(&e)),
                    );
                    first_err
                        .get_or_insert(Error::api(format!("creating a pod for node {node}"), e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
