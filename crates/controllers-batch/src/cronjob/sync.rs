//! One sync of a CronJob as a pure function (upstream's `syncCronJob`): the CronJob, its Jobs
//! and the time in; Job deletions, at most one Job creation, the status and events out.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::schedule::{self, Schedule};
use crate::job::sync::true_condition;

/// The annotation holding the time a Job was scheduled for (RFC 3339, in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream's limit past which missed start times are reported.
pub const TOO_MANY_MISSED: i64 = 100;

/// An event the sync reports on the CronJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

fn event(warning: bool, reason: &str, message: String) -> CronEvent {
    CronEvent {
        warning,
        reason: reason.into(),
        message,
    }
}

/// The writes of one sync, in the order the shell makes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Jobs to delete (background propagation): history beyond the limits, or replaced ones.
    pub delete: Vec<String>,
    /// The Job to create; on success the shell adds it to `status.active`.
    pub create: Option<Job>,
    /// The status to write (the shell writes it when it differs from the current one).
    pub status: CronJobStatus,
    pub events: Vec<CronEvent>,
    pub requeue_after: Option<Duration>,
}

/// What one sync sees.
pub struct Snapshot<'a> {
    pub cronjob: &'a CronJob,
    /// The Jobs the CronJob controls.
    pub jobs: &'a [&'a Job],
    pub now: Timestamp,
    /// The zone of schedules that name none (the controller's local zone upstream).
    pub local: &'a TimeZone,
}

fn finished_type(job: &Job) -> Option<&'static str> {
    let status = job.status.as_ref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|t| true_condition(status, t).is_some())
}

/// The schedule with its zone, or the warning event that stops the sync.
pub fn schedule_of(cj: &CronJob, local: &TimeZone) -> Result<Schedule, CronEvent> {
    let spec = cj
        .spec
        .as_ref()
        .map(|s| s.schedule.as_str())
        .unwrap_or_default();
    let zone = cj
        .spec
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .or_else(|| schedule::prefix_time_zone(spec));
    let tz = match zone {
        Some(name) => TimeZone::get(name).map_err(|_| {
            event(
                true,
                "UnknownTimeZone",
                format!("invalid timeZone: {name:?}: unknown time zone {name}"),
            )
        })?,
        None => local.clone(),
    };
    let parsed = k8rs_api::cron::parse(spec).map_err(|err| {
        event(
            true,
            "UnparseableSchedule",
            format!("unparseable schedule: {spec:?} : {err}"),
        )
    })?;
    Ok(Schedule { spec: parsed, tz })
}

/// Upstream's `syncCronJob`.
pub fn sync(snap: &Snapshot<'_>) -> Plan {
    let cj = snap.cronjob;
    let mut plan = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    reconcile_active(snap, &mut plan);
    if cj.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    cleanup_history(snap, &mut plan);
    let spec = cj.spec.clone().unwrap_or_default();
    if spec.suspend == Some(true) {
        return plan;
    }
    let sched = match schedule_of(cj, snap.local) {
        Ok(s) => s,
        Err(e) => {
            plan.events.push(e);
            return plan;
        }
    };
    plan.requeue_after = sched.until_next(snap.now);
    let Some(scheduled) = unmet_time(snap, &sched, &mut plan) else {
        return plan;
    };
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled
            .checked_add(SignedDuration::from_secs(deadline))
            .is_ok_and(|end| end < snap.now)
    {
        let when = scheduled
            .to_zoned(sched.tz.clone())
            .strftime("%a, %d %b %Y %T %z");
        plan.events.push(event(
            true,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {when}"),
        ));
        return plan;
    }
    let name = job_name(cj, scheduled);
    let already = plan
        .status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(&name))
        || plan
            .status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled);
    if already {
        return plan;
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    let active = plan.status.active.as_ref().map_or(0, Vec::len);
    if policy == "Forbid" && active > 0 {
        plan.events.push(event(
            false,
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        ));
        return plan;
    }
    if policy == "Replace" {
        for r in plan.status.active.take().unwrap_or_default() {
            let job = r.name.unwrap_or_default();
            plan.events.push(event(
                false,
                "SuccessfulDelete",
                format!("Deleted job {job}"),
            ));
            plan.delete.push(job);
        }
    }
    plan.create = Some(new_job(cj, &name, scheduled, &sched.tz));
    plan.status.last_schedule_time = Some(Time(scheduled));
    plan
}

/// The most recent unmet schedule time; warns when too many were missed.
fn unmet_time(snap: &Snapshot<'_>, sched: &Schedule, plan: &mut Plan) -> Option<Timestamp> {
    let cj = snap.cronjob;
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(snap.now, |t| t.0);
    let mut earliest = plan
        .status
        .last_schedule_time
        .as_ref()
        .map_or(created, |t| t.0);
    if let Some(deadline) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds)
        && let Ok(start) = snap.now.checked_sub(SignedDuration::from_secs(deadline))
        && start > earliest
    {
        earliest = start;
    }
    let (scheduled, missed) = sched.most_recent(earliest, snap.now);
    if missed > TOO_MANY_MISSED {
        plan.events.push(event(
            true,
            "TooManyMissedTimes",
            format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        ));
    }
    scheduled
}

/// Drops finished and vanished Jobs from `status.active` (`SawCompletedJob`, `MissingJob`),
/// and moves `lastSuccessfulTime` forward.
fn reconcile_active(snap: &Snapshot<'_>, plan: &mut Plan) {
    let status = &mut plan.status;
    for job in snap.jobs {
        let uid = job.metadata.uid.as_deref();
        let name = job.metadata.name.clone().unwrap_or_default();
        let in_active = status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid.as_deref() == uid);
        match finished_type(job) {
            None if !in_active => plan.events.push(event(
                true,
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            )),
            None => {}
            Some(type_) => {
                if in_active {
                    remove_active(status, uid);
                    plan.events.push(event(
                        false,
                        "SawCompletedJob",
                        format!("Saw completed job: {name}, condition: {type_}"),
                    ));
                }
                if type_ == "Complete" {
                    let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.as_ref().is_some_and(|d| {
                        status
                            .last_successful_time
                            .as_ref()
                            .is_none_or(|l| d.0 > l.0)
                    }) {
                        status.last_successful_time = done;
                    }
                }
            }
        }
    }
    let known: Vec<Option<&str>> = snap
        .jobs
        .iter()
        .map(|j| j.metadata.uid.as_deref())
        .collect();
    let missing: Vec<ObjectReference> = status
        .active
        .iter()
        .flatten()
        .filter(|r| !known.contains(&r.uid.as_deref()))
        .cloned()
        .collect();
    for r in missing {
        remove_active(status, r.uid.as_deref());
        let name = r.name.clone().unwrap_or_default();
        plan.events.push(event(
            false,
            "MissingJob",
            format!("Active job went missing: {name}"),
        ));
    }
}

fn remove_active(status: &mut CronJobStatus, uid: Option<&str>) {
    if let Some(list) = status.active.as_mut() {
        list.retain(|r| r.uid.as_deref() != uid);
    }
}

/// Deletes the oldest finished Jobs beyond `successfulJobsHistoryLimit` (default 3) and
/// `failedJobsHistoryLimit` (default 1).
fn cleanup_history(snap: &Snapshot<'_>, plan: &mut Plan) {
    let spec = snap.cronjob.spec.clone().unwrap_or_default();
    let limits = [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ];
    for (type_, limit) in limits {
        let mut done: Vec<&Job> = snap
            .jobs
            .iter()
            .copied()
            .filter(|j| finished_type(j) == Some(type_))
            .collect();
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        if done.len() <= keep {
            continue;
        }
        done.sort_by(|a, b| oldest_first(a).cmp(&oldest_first(b)));
        let extra = done.len() - keep;
        for job in done.into_iter().take(extra) {
            let name = job.metadata.name.clone().unwrap_or_default();
            plan.events.push(event(
                false,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            ));
            plan.delete.push(name);
        }
    }
}

/// Upstream's `byJobStartTime` order: by start time (the creation time if none), Jobs that
/// never started last, equal times by name (so that Jobs started in the same second are
/// trimmed in schedule order, whatever order the cache lists them in).
fn oldest_first(job: &Job) -> (bool, Option<Timestamp>, Option<&str>) {
    let start = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0);
    (start.is_none(), start, job.metadata.name.as_deref())
}

/// Upstream's `getJobName`: `<cronjob>-<minutes since the epoch of the schedule time>`.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    format!("{name}-{}", scheduled.as_second().div_euclid(60))
}

/// Upstream's `getJobFromTemplate2`.
pub fn new_job(cj: &CronJob, name: &str, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let stamp = scheduled
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let stamp = stamp.replace("+00:00", "Z");
    annotations.insert(SCHEDULED_TIMESTAMP.into(), stamp);
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.metadata.name.clone().unwrap_or_default(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
