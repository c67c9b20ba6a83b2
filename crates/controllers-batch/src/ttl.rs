//! The TTL-after-finished controller, as upstream's `ttlafterfinished` controller: a finished
//! Job with `spec.ttlSecondsAfterFinished` is deleted (background propagation) that long after
//! it finished.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::clock::{self, SharedClock};
use crate::job::sync::true_condition;
use crate::runtime::{self, Queue, Requeue, SharedInformers};

/// The controller's name in logs, as upstream's.
pub const CONTROLLER_NAME: &str = "ttl-after-finished-controller";

/// Settings, upstream's `--concurrent-ttl-after-finished-syncs`.
#[derive(Clone, Debug)]
pub struct TtlConfig {
    /// Jobs checked at once (default 5).
    pub workers: usize,
    pub clock: SharedClock,
}

impl Default for TtlConfig {
    fn default() -> Self {
        TtlConfig {
            workers: 5,
            clock: clock::system(),
        }
    }
}

/// What to do with a Job now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not finished, no TTL, or already being deleted.
    Nothing,
    /// Check again after this long.
    Wait(Duration),
    /// Delete it.
    Delete,
}

/// When the Job finished: its Complete or Failed condition's transition time.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let cond = true_condition(status, "Complete").or_else(|| true_condition(status, "Failed"))?;
    cond.last_transition_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| status.completion_time.as_ref().map(|t| t.0))
}

/// Upstream's `processTTL` decision.
pub fn decide(job: &Job, now: Timestamp) -> Decision {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), None) = (ttl, job.metadata.deletion_timestamp.as_ref()) else {
        return Decision::Nothing;
    };
    let Some(finished) = finish_time(job) else {
        return Decision::Nothing;
    };
    let Ok(expire) = finished.checked_add(SignedDuration::from_secs(ttl.into())) else {
        return Decision::Nothing;
    };
    match Duration::try_from(now.duration_until(expire)) {
        Ok(left) if !left.is_zero() => Decision::Wait(left),
        _ => Decision::Delete,
    }
}

struct Ctx {
    client: kube::Client,
    jobs: Store<Job>,
    clock: SharedClock,
}

/// Runs the TTL-after-finished controller until `shutdown`, on the process's shared Job cache.
pub async fn run(
    informers: SharedInformers,
    config: TtlConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<String> = Queue::default();
    let jobs = {
        let q = queue.clone();
        informers.subscribe::<Job, _>(move |(_, new)| {
            if let Some(job) = new
                && job
                    .spec
                    .as_ref()
                    .and_then(|s| s.ttl_seconds_after_finished)
                    .is_some()
            {
                q.add(runtime::key_of(job));
            }
        })
    };
    let stores = vec![runtime::ready(&jobs)];
    let ctx = Arc::new(Ctx {
        client,
        jobs,
        clock: config.clock,
    });
    let sync = move |key: String| {
        let ctx = ctx.clone();
        async move { sync_key(&ctx, &key).await }
    };
    runtime::run_synced(
        CONTROLLER_NAME,
        stores,
        queue,
        config.workers,
        shutdown,
        sync,
    )
    .await?;
    Ok(())
}

async fn sync_key(ctx: &Ctx, key: &str) -> Result<Requeue, Error> {
    let Some(job) = runtime::lookup(&ctx.jobs, key) else {
        return Ok(None);
    };
    match decide(&job, ctx.clock.now()) {
        Decision::Nothing => Ok(None),
        Decision::Wait(left) => Ok(Some(left)),
        Decision::Delete => {
            let (namespace, name) = runtime::split_key(key);
            let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: job.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
                Err(source) => Err(Error::Write {
                    verb: "delete",
                    kind: "Job",
                    key: key.to_string(),
                    source,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{JobBuilder, at};
    use serde_json::json;

    #[test]
    fn deletes_ttl_after_the_finish() {
        let finished = json!({"conditions": [{"type": "Complete", "status": "True",
                                               "lastTransitionTime": at(10).to_string()}]});
        let job = JobBuilder::new("j")
            .spec("ttlSecondsAfterFinished", json!(30))
            .status(finished.clone())
            .build();
        assert_eq!(
            decide(&job, at(20)),
            Decision::Wait(Duration::from_secs(20))
        );
        assert_eq!(decide(&job, at(40)), Decision::Delete);
        let running = JobBuilder::new("j")
            .spec("ttlSecondsAfterFinished", json!(0))
            .build();
        assert_eq!(decide(&running, at(40)), Decision::Nothing);
        let no_ttl = JobBuilder::new("j").status(finished).build();
        assert_eq!(decide(&no_ttl, at(40)), Decision::Nothing);
    }
}
