//! The Job controller, as upstream's `job` controller: pods run to completion, counted through
//! the `batch.kubernetes.io/job-tracking` finalizer, with backoff, deadlines, suspension, the
//! Indexed completion mode and the pod failure and success policies.
//!
//! The shared Job and pod informers queue Job keys; [`claim`] decides which pods the Job
//! controls (adopting orphans its selector matches), [`sync::sync`] decides one sync's writes
//! and this module makes them in order (claims, interim status, finalizers, deletions,
//! creations, final status).

pub mod claim;
mod expectations;
pub mod indexes;
pub mod pods;
pub mod policy;
pub mod sync;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::clock::{self, SharedClock};
use crate::runtime::{self, Index, Queue, Requeue, SharedInformers};
use expectations::{Expect, Expectations};
use sync::{Backoff, Plan, Snapshot};

/// The name events are reported under.
pub const CONTROLLER_NAME: &str = "job-controller";
/// The `spec.managedBy` of Jobs this controller syncs (or none).
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";

/// Settings, upstream's `--concurrent-job-syncs` plus the pod failure backoff.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Jobs synced at once (default 5).
    pub workers: usize,
    /// The first delay before recreating a failed pod (default 10 s), doubled per failure.
    pub backoff_base: Duration,
    /// The longest such delay (default 6 min).
    pub backoff_max: Duration,
    pub clock: SharedClock,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            workers: 5,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(360),
            clock: clock::system(),
        }
    }
}

struct Ctx {
    client: kube::Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    /// Pods by controller: a sync reads its own pods and the orphans, not the namespace.
    pods_by_controller: Index<Pod>,
    expectations: Expectations,
    recorder: Recorder,
    config: JobConfig,
}

/// The `namespace/name` of the Job controlling `pod`.
fn job_key_of(pod: &Pod) -> Option<String> {
    let owner =
        claim::controller_of(pod).filter(|o| o.kind == "Job" && o.api_version == "batch/v1")?;
    Some(format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        owner.name
    ))
}

/// The keys of the Jobs in the pod's namespace whose selector matches it (upstream's
/// `GetPodJobs`): candidates to adopt an orphan.
fn jobs_selecting(jobs: &Store<Job>, pod: &Pod) -> Vec<String> {
    if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Vec::new();
    }
    let namespace = pod.metadata.namespace.as_deref();
    jobs.state()
        .iter()
        .filter(|job| job.metadata.namespace.as_deref() == namespace)
        .filter(|job| claim::selector(job).is_ok_and(|s| claim::matches(&s, pod)))
        .map(|job| runtime::key_of(job.as_ref()))
        .collect()
}

/// The Jobs to sync after a pod change, as upstream's pod handlers: the controlling Job before
/// and after, and for an orphan that was added or whose labels or controller changed, every
/// Job that selects it.
fn jobs_to_sync(jobs: &Store<Job>, old: Option<&Pod>, new: Option<&Pod>) -> HashSet<String> {
    let mut keys: HashSet<String> = old.into_iter().chain(new).filter_map(job_key_of).collect();
    if let Some(pod) = new
        && claim::controller_of(pod).is_none()
    {
        let changed = old.is_none_or(|old| {
            old.metadata.labels != pod.metadata.labels
                || claim::controller_of(old) != claim::controller_of(pod)
        });
        if changed {
            keys.extend(jobs_selecting(jobs, pod));
        }
    }
    keys
}

/// Runs the Job controller until `shutdown`, on the process's shared Job and pod caches.
pub async fn run(
    informers: SharedInformers,
    config: JobConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<String> = Queue::default();
    let jobs = {
        let q = queue.clone();
        informers.subscribe::<Job, _>(move |(old, new)| {
            if let Some(job) = new.or(old) {
                q.add(runtime::key_of(job));
            }
        })
    };
    let pods = {
        let (q, jobs) = (queue.clone(), jobs.clone());
        informers.subscribe::<Pod, _>(move |(old, new)| {
            for key in jobs_to_sync(&jobs, old, new) {
                q.add(key);
            }
        })
    };
    let stores = vec![runtime::ready(&jobs), runtime::ready(&pods)];
    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: None,
    };
    let workers = config.workers;
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        jobs,
        pods,
        pods_by_controller: informers.by_controller(),
        expectations: Expectations::default(),
        config,
    });
    let sync = move |key: String| {
        let ctx = ctx.clone();
        async move { sync_key(&ctx, &key).await }
    };
    runtime::run_synced(CONTROLLER_NAME, stores, queue, workers, shutdown, sync).await?;
    Ok(())
}

async fn sync_key(ctx: &Ctx, key: &str) -> Result<Requeue, Error> {
    let (namespace, _) = runtime::split_key(key);
    let Some(job) = runtime::lookup(&ctx.jobs, key) else {
        ctx.expectations.forget(key);
        return release_orphans(ctx, key).await.map(|()| None);
    };
    if job.metadata.deletion_timestamp.is_some() {
        return release_orphans(ctx, key).await.map(|()| None);
    }
    let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
    if managed_by.is_some_and(|m| m != MANAGED_BY) {
        return Ok(None);
    }
    let cached_pod = |name: &str| runtime::lookup(&ctx.pods, &format!("{namespace}/{name}"));
    if !ctx.expectations.satisfied(key, &job, cached_pod) {
        return Ok(Some(Duration::from_millis(50)));
    }
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let candidates: Vec<Arc<Pod>> = ctx.pods_by_controller.claimable(namespace, uid);
    let candidates: Vec<&Pod> = candidates.iter().map(Arc::as_ref).collect();
    let (owned, adopted) = claim_pods(ctx, key, &job, &candidates).await?;
    let pods: Vec<&Pod> = owned.into_iter().chain(adopted.iter()).collect();
    let snap = Snapshot {
        job: &job,
        pods: &pods,
        now: ctx.config.clock.now(),
        backoff: Backoff {
            base: ctx.config.backoff_base,
            max: ctx.config.backoff_max,
        },
    };
    let plan = sync::sync(&snap);
    perform(ctx, key, &job, plan).await
}

/// Upstream's `getPodsForJob` claims: releases the Job's pods its selector no longer matches
/// and adopts the orphans it matches (after a fresh read shows the Job is not being deleted):
/// the pods it kept, and those it adopted as they now are, for the rest of the sync.
async fn claim_pods<'a>(
    ctx: &Ctx,
    key: &str,
    job: &Job,
    candidates: &[&'a Pod],
) -> Result<(Vec<&'a Pod>, Vec<Pod>), Error> {
    let selector = claim::selector(job).map_err(|err| Error::Invalid(key.to_string(), err))?;
    let claims = claim::claim(job, &selector, candidates);
    for pod in &claims.release {
        patch_claim(ctx, key, pod, &claim::release_patch(job, pod), "release").await?;
    }
    if claims.adopt.is_empty() {
        return Ok((claims.owned, Vec::new()));
    }
    recheck_deletion(ctx, key, job).await?;
    let mut adopted = Vec::new();
    for pod in claims.adopt {
        if patch_claim(ctx, key, pod, &claim::adopt_patch(job, pod), "adopt").await? {
            adopted.push(claim::adopted(job, pod));
        }
    }
    Ok((claims.owned, adopted))
}

/// Upstream's `RecheckDeletionTimestamp`: the Job, read from the API server rather than the
/// cache, is still the same Job and not being deleted.
async fn recheck_deletion(ctx: &Ctx, key: &str, job: &Job) -> Result<(), Error> {
    let (namespace, name) = runtime::split_key(key);
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let fresh = api
        .get(name)
        .await
        .map_err(|err| write_err("get", "Job", key, err))?;
    if fresh.metadata.uid != job.metadata.uid {
        let reason = format!(
            "original Job {key} is gone: got uid {}, wanted {}",
            fresh.metadata.uid.unwrap_or_default(),
            job.metadata.uid.as_deref().unwrap_or_default()
        );
        return Err(Error::CannotAdopt(key.to_string(), reason));
    }
    if let Some(at) = fresh.metadata.deletion_timestamp {
        let reason = format!("{key} has just been deleted at {}", at.0);
        return Err(Error::CannotAdopt(key.to_string(), reason));
    }
    Ok(())
}

/// Patches a pod's controller reference; whether the pod was there to patch (a pod that is
/// gone, or was recreated under the same name, is skipped as upstream does).
async fn patch_claim(
    ctx: &Ctx,
    key: &str,
    pod: &Pod,
    patch: &serde_json::Value,
    verb: &'static str,
) -> Result<bool, Error> {
    let (namespace, _) = runtime::split_key(key);
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 422 && verb == "release" => Ok(false),
        Err(err) => Err(write_err(verb, "Pod", &format!("{namespace}/{name}"), err)),
    }
}

/// Removes the tracking finalizer of the pods of a Job that is gone (or going).
async fn release_orphans(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (namespace, _) = runtime::split_key(key);
    let names: Vec<String> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| job_key_of(p).as_deref() == Some(key))
        .filter(|p| has_tracking_finalizer(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for name in names {
        unfinalize(ctx, namespace, &name).await?;
    }
    Ok(())
}

fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == pods::TRACKING_FINALIZER)
}

async fn perform(ctx: &Ctx, key: &str, job: &Job, plan: Plan) -> Result<Requeue, Error> {
    let (namespace, _) = runtime::split_key(key);
    let mut job = job.clone();
    if let Some(status) = plan.interim_status {
        job = write_status(ctx, key, &job, status).await?;
    }
    for pod in &plan.unfinalize {
        release(ctx, key, pod).await?;
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let mut deleted = Vec::new();
    for pod in &plan.delete {
        // Upstream's `deleteJobPods`: released first, so that the deletion is not counted.
        release(ctx, key, pod).await?;
        match pods_api.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {
                deleted.push(pod.clone());
                let note = format!("Deleted pod: {pod}");
                event(ctx, &job, false, "SuccessfulDelete", &note).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(write_err("delete", "Pod", key, err)),
        }
    }
    for name in deleted {
        ctx.expectations.expect(key, Expect::Deleted(name));
    }
    let mut created = Vec::new();
    let mut create_err = None;
    for pod in &plan.create {
        match pods_api.create(&PostParams::default(), pod).await {
            Ok(p) => {
                let pod_name = p.metadata.name.clone().unwrap_or_default();
                let note = format!("Created pod: {pod_name}");
                event(ctx, &job, false, "SuccessfulCreate", &note).await;
                created.push(pod_name);
            }
            Err(err) => {
                let note = format!("Error creating: {err}");
                event(ctx, &job, true, "FailedCreate", &note).await;
                create_err = Some(write_err("create", "Pod", key, err));
                break;
            }
        }
    }
    for name in created {
        ctx.expectations.expect(key, Expect::Created(name));
    }
    if let Some(err) = create_err {
        return Err(err);
    }
    if let Some(status) = plan.status {
        write_status(ctx, key, &job, status).await?;
    }
    for e in &plan.events {
        event(ctx, &job, e.warning, &e.reason, &e.message).await;
    }
    Ok(plan.requeue_after)
}

fn write_err(verb: &'static str, kind: &'static str, key: &str, source: kube::Error) -> Error {
    Error::Write {
        verb,
        kind,
        key: key.to_string(),
        source,
    }
}

/// Replaces the Job's status (optimistically, at the cached resourceVersion).
async fn write_status(ctx: &Ctx, key: &str, job: &Job, status: JobStatus) -> Result<Job, Error> {
    let (namespace, name) = runtime::split_key(key);
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let mut body = job.clone();
    body.status = Some(status);
    let written = api
        .replace_status(name, &PostParams::default(), &body)
        .await
        .map_err(|err| write_err("update status", "Job", key, err))?;
    if let Some(over) = job.metadata.resource_version.clone() {
        ctx.expectations.expect(key, Expect::StatusWritten { over });
    }
    Ok(written)
}

/// Removes the tracking finalizer of one of the Job's pods, expecting the cache to show it.
async fn release(ctx: &Ctx, key: &str, pod: &str) -> Result<(), Error> {
    let (namespace, _) = runtime::split_key(key);
    if unfinalize(ctx, namespace, pod).await? {
        ctx.expectations
            .expect(key, Expect::Unfinalized(pod.to_string()));
    }
    Ok(())
}

/// Removes the tracking finalizer of one pod; whether there was one to remove.
async fn unfinalize(ctx: &Ctx, namespace: &str, pod: &str) -> Result<bool, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(current) = runtime::lookup(&ctx.pods, &format!("{namespace}/{pod}")) else {
        return Ok(false);
    };
    let Some(i) = current
        .metadata
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == pods::TRACKING_FINALIZER)
    else {
        return Ok(false);
    };
    // At the cached resourceVersion, so that a concurrent change of the list fails instead
    // of being overwritten.
    let mut rest: Vec<String> = current.metadata.finalizers.clone().unwrap_or_default();
    rest.remove(i);
    let patch = json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": current.metadata.resource_version,
    }});
    match api
        .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(err) => Err(write_err(
            "remove finalizer",
            "Pod",
            &format!("{namespace}/{pod}"),
            err,
        )),
    }
}

async fn event(ctx: &Ctx, job: &Job, warning: bool, reason: &str, note: &str) {
    let reference = ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note.into()),
        action: reason.into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(%err, "recording an event failed");
    }
}
