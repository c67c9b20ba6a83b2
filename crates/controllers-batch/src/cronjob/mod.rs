//! The CronJob controller, as upstream's `cronjob` controller (v2): Jobs created on a cron
//! schedule in a time zone, with the concurrency policy, the starting deadline, suspension and
//! the history limits.
//!
//! The shared CronJob and Job informers queue CronJob keys; [`sync::sync`] decides one sync and this
//! module makes its writes, then requeues the key for the next schedule time.

pub mod schedule;
pub mod sync;

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::tz::TimeZone;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::clock::{self, SharedClock};
use crate::runtime::{self, Queue, Requeue, SharedInformers};
use sync::{Plan, Snapshot};

/// The name events are reported under.
pub const CONTROLLER_NAME: &str = "cronjob-controller";

/// Settings, upstream's `--concurrent-cron-job-syncs`.
#[derive(Clone, Debug)]
pub struct CronJobConfig {
    /// CronJobs synced at once (default 5).
    pub workers: usize,
    /// The zone of schedules that name none (default: the system's, as upstream's `time.Local`).
    pub local_time_zone: TimeZone,
    pub clock: SharedClock,
}

impl Default for CronJobConfig {
    fn default() -> Self {
        CronJobConfig {
            workers: 5,
            local_time_zone: TimeZone::system(),
            clock: clock::system(),
        }
    }
}

struct Ctx {
    client: kube::Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    recorder: Recorder,
    config: CronJobConfig,
}

/// The `namespace/name` of the CronJob controlling `job`.
fn cronjob_key_of(job: &Job) -> Option<String> {
    let owner = job
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "CronJob")?;
    let ns = job.metadata.namespace.as_deref().unwrap_or_default();
    Some(format!("{ns}/{}", owner.name))
}

/// Runs the CronJob controller until `shutdown`, on the process's shared CronJob and Job
/// caches.
pub async fn run(
    informers: SharedInformers,
    config: CronJobConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<String> = Queue::default();
    let cronjobs = {
        let q = queue.clone();
        informers.subscribe::<CronJob, _>(move |(old, new)| {
            if let Some(cj) = new.or(old) {
                q.add(runtime::key_of(cj));
            }
        })
    };
    let jobs = {
        let q = queue.clone();
        informers.subscribe::<Job, _>(move |(old, new)| {
            for key in old.into_iter().chain(new).filter_map(cronjob_key_of) {
                q.add(key);
            }
        })
    };
    let stores = vec![runtime::ready(&cronjobs), runtime::ready(&jobs)];
    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: None,
    };
    let workers = config.workers;
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        cronjobs,
        jobs,
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
    let Some(cj) = runtime::lookup(&ctx.cronjobs, key) else {
        return Ok(None);
    };
    let jobs = children(ctx, &cj).await?;
    let jobs: Vec<&Job> = jobs.iter().map(Arc::as_ref).collect();
    let snap = Snapshot {
        cronjob: &cj,
        jobs: &jobs,
        now: ctx.config.clock.now(),
        local: &ctx.config.local_time_zone,
    };
    let plan = sync::sync(&snap);
    perform(ctx, key, &cj, plan).await
}

/// The CronJob's Jobs from the cache, plus those of `status.active` the cache does not show
/// yet but the API server has (upstream checks them live before calling them missing).
async fn children(ctx: &Ctx, cj: &CronJob) -> Result<Vec<Arc<Job>>, Error> {
    let uid = cj.metadata.uid.as_deref();
    let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
    let mut jobs: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns))
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        })
        .collect();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let active = cj.status.iter().flat_map(|s| s.active.iter().flatten());
    for r in active {
        if jobs.iter().any(|j| j.metadata.uid == r.uid) {
            continue;
        }
        let name = r.name.clone().unwrap_or_default();
        match api.get_opt(&name).await {
            Ok(Some(job)) if job.metadata.uid == r.uid => jobs.push(Arc::new(job)),
            Ok(_) => {}
            Err(source) => {
                return Err(Error::Write {
                    verb: "get",
                    kind: "Job",
                    key: format!("{ns}/{name}"),
                    source,
                });
            }
        }
    }
    Ok(jobs)
}

async fn perform(ctx: &Ctx, key: &str, cj: &CronJob, mut plan: Plan) -> Result<Requeue, Error> {
    let (namespace, name) = runtime::split_key(key);
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let write = |verb, source| Error::Write {
        verb,
        kind: "Job",
        key: key.to_string(),
        source,
    };
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    for job in &plan.delete {
        match api.delete(job, &background).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(write("delete", err)),
        }
    }
    let mut events = std::mem::take(&mut plan.events);
    if let Some(job) = &plan.create {
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let created = match api.create(&PostParams::default(), job).await {
            Ok(created) => {
                events.push(sync::CronEvent {
                    warning: false,
                    reason: "SuccessfulCreate".into(),
                    message: format!("Created job {job_name}"),
                });
                Some(created)
            }
            // Created by an earlier sync whose status write was lost: adopt it.
            Err(kube::Error::Api(s)) if s.code == 409 => api
                .get_opt(&job_name)
                .await
                .map_err(|e| write("get", e))?
                .filter(|j| owned_by(j, cj)),
            Err(err) => {
                let note = format!("Error creating job: {err}");
                publish(ctx, cj, true, "FailedCreate", &note).await;
                return Err(write("create", err));
            }
        };
        if let Some(created) = created {
            plan.status
                .active
                .get_or_insert_with(Vec::new)
                .push(reference(&created));
        }
    }
    if cj.status.as_ref() != Some(&plan.status) {
        let mut body = cj.clone();
        body.status = Some(plan.status);
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), namespace);
        api.replace_status(name, &PostParams::default(), &body)
            .await
            .map_err(|source| Error::Write {
                verb: "update status",
                kind: "CronJob",
                key: key.to_string(),
                source,
            })?;
    }
    for e in &events {
        publish(ctx, cj, e.warning, &e.reason, &e.message).await;
    }
    Ok(plan.requeue_after)
}

fn owned_by(job: &Job, cj: &CronJob) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == cj.metadata.uid.as_ref())
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

async fn publish(ctx: &Ctx, cj: &CronJob, warning: bool, reason: &str, note: &str) {
    let reference = ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("CronJob".into()),
        namespace: cj.metadata.namespace.clone(),
        name: cj.metadata.name.clone(),
        uid: cj.metadata.uid.clone(),
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
