//! One sync of a Job as a pure function: the Job, its pods and the time in, the writes out.
//!
//! Finished pods are counted crash-safely as upstream does: their UIDs go to
//! `status.uncountedTerminatedPods` first (the interim status), then their tracking finalizers
//! are removed, then the final status moves them into the counters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::indexes;
use super::pods::{self, PodView, State};
use super::policy::{self, Verdict};

/// Pods created or deleted in one sync at most (upstream's `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CHANGES_PER_SYNC: usize = 500;
/// Upstream's default `backoffLimit`.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// The backoff of pod creation after failures: `base` doubled per failure, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 2u32.saturating_pow((failures - 1).min(31));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// An event the sync reports on the Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The writes of one sync, in the order the shell makes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Written first when new finished pods were found (UIDs in `uncountedTerminatedPods`).
    pub interim_status: Option<JobStatus>,
    /// Pods whose tracking finalizer goes.
    pub unfinalize: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// Pods to create.
    pub create: Vec<Pod>,
    /// The final status, when it changed.
    pub status: Option<JobStatus>,
    pub events: Vec<JobEvent>,
    /// Sync again after this long (backoff or deadline).
    pub requeue_after: Option<Duration>,
}

fn event(warning: bool, reason: &str, message: &str) -> JobEvent {
    JobEvent {
        warning,
        reason: reason.into(),
        message: message.into(),
    }
}

/// The condition of `type_` when it is `True`.
pub fn true_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job is finished (Complete or Failed).
pub fn is_finished(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| {
        true_condition(s, "Complete").is_some() || true_condition(s, "Failed").is_some()
    })
}

fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    state: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == state && c.reason.as_deref() == Some(reason) {
            return false;
        }
        c.status = state.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_transition_time = Some(Time(now));
        c.last_probe_time = Some(Time(now));
        return true;
    }
    conditions.push(JobCondition {
        type_: type_.into(),
        status: state.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now)),
        last_probe_time: Some(Time(now)),
    });
    true
}

/// What one sync sees.
pub struct Snapshot<'a> {
    pub job: &'a Job,
    /// The pods the Job controls.
    pub pods: &'a [&'a Pod],
    pub now: Timestamp,
    pub backoff: Backoff,
}

/// The counting part of a sync.
struct Tally<'a> {
    views: Vec<PodView<'a>>,
    status: JobStatus,
    interim: bool,
    unfinalize: Vec<String>,
    completed: BTreeSet<i32>,
    failed_indexes: BTreeSet<i32>,
    fail_job: Option<String>,
}

/// Upstream's `syncJob`.
pub fn sync(snap: &Snapshot<'_>) -> Plan {
    let job = snap.job;
    let spec = job.spec.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let mut tally = tally(snap);
    let finished = is_finished(job);
    let mut status = tally.status.clone();
    if tally.interim {
        plan.interim_status = Some(status.clone());
    }
    plan.unfinalize = std::mem::take(&mut tally.unfinalize);
    move_uncounted(&mut status, &tally, &spec);
    let views = &tally.views;
    let active: Vec<&PodView> = views.iter().filter(|v| v.state == State::Active).collect();
    let terminating = views
        .iter()
        .filter(|v| v.state == State::Terminating)
        .count();
    let new_active;
    if finished {
        plan.delete = active.iter().map(|v| v.name.to_string()).collect();
        new_active = 0;
    } else if let Some((type_, reason, message)) = target(snap, &tally, &status) {
        // Terminate what runs, then finish.
        if type_ == "FailureTarget" && true_condition(&status, "FailureTarget").is_none() {
            set_condition(
                &mut status,
                "FailureTarget",
                "True",
                &reason,
                &message,
                snap.now,
            );
        }
        if type_ == "SuccessCriteriaMet" && true_condition(&status, "SuccessCriteriaMet").is_none()
        {
            set_condition(
                &mut status,
                "SuccessCriteriaMet",
                "True",
                &reason,
                &message,
                snap.now,
            );
        }
        plan.delete = active.iter().map(|v| v.name.to_string()).collect();
        new_active = 0;
        if active.is_empty() && terminating == 0 {
            finish(&mut plan, &mut status, &type_, &reason, &message, snap.now);
        }
    } else if spec.suspend == Some(true) {
        plan.delete = active.iter().map(|v| v.name.to_string()).collect();
        new_active = 0;
        if set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            snap.now,
        ) {
            plan.events.push(event(false, "Suspended", "Job suspended"));
        }
    } else {
        if true_condition(&status, "Suspended").is_some() {
            set_condition(
                &mut status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                snap.now,
            );
            plan.events.push(event(false, "Resumed", "Job resumed"));
            status.start_time = Some(Time(snap.now));
        }
        if status.start_time.is_none() {
            status.start_time = Some(Time(snap.now));
        }
        new_active = manage(snap, &tally, &status, &active, terminating, &mut plan);
        if let Some(deadline) = deadline_left(snap, &status) {
            plan.requeue_after = Some(plan.requeue_after.map_or(deadline, |r| r.min(deadline)));
        }
    }
    status.active = Some(i32::try_from(new_active).unwrap_or(i32::MAX));
    let ready = active.iter().filter(|v| v.ready).count();
    status.ready = Some(if new_active == 0 {
        0
    } else {
        i32::try_from(ready).unwrap_or(0)
    });
    status.terminating = Some(i32::try_from(terminating + plan.delete.len()).unwrap_or(0));
    if job.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// Counts finished pods: the interim status (new UIDs uncounted) and the pods to unfinalize.
fn tally<'a>(snap: &Snapshot<'a>) -> Tally<'a> {
    let job = snap.job;
    let spec = job.spec.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(0);
    let mut status = job.status.clone().unwrap_or_default();
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut succ: Vec<String> = uncounted.succeeded.take().unwrap_or_default();
    let mut fail: Vec<String> = uncounted.failed.take().unwrap_or_default();
    let completed = indexes::parse(status.completed_indexes.as_deref(), completions);
    let failed_indexes = indexes::parse(status.failed_indexes.as_deref(), completions);
    let per_index = spec.backoff_limit_per_index;
    let mut t = Tally {
        views: snap.pods.iter().map(|p| pods::view(p, job)).collect(),
        status: JobStatus::default(),
        interim: false,
        unfinalize: Vec::new(),
        completed,
        failed_indexes,
        fail_job: None,
    };
    let finished = is_finished(job);
    for v in &t.views {
        if !v.tracked {
            continue;
        }
        let uid = v.uid.to_string();
        match v.state {
            State::Succeeded => {
                let valid_index = v.index.filter(|i| *i < completions);
                if indexed {
                    if let Some(i) = valid_index {
                        t.interim |= t.completed.insert(i);
                    }
                } else if !succ.contains(&uid) && !fail.contains(&uid) {
                    succ.push(uid);
                    t.interim = true;
                }
                t.unfinalize.push(v.name.to_string());
            }
            State::Failed => {
                let verdict = policy::judge_failure(job, v.pod);
                if verdict != Verdict::Ignore && !fail.contains(&uid) && !succ.contains(&uid) {
                    fail.push(uid);
                    t.interim = true;
                }
                if let (Some(limit), Some(i)) = (per_index, v.index)
                    && (verdict == Verdict::FailIndex
                        || (verdict == Verdict::Count && v.index_failures + 1 > limit))
                {
                    t.interim |= t.failed_indexes.insert(i);
                }
                if let Verdict::FailJob(message) = verdict {
                    t.fail_job.get_or_insert(message);
                }
                t.unfinalize.push(v.name.to_string());
            }
            State::Terminating if finished => t.unfinalize.push(v.name.to_string()),
            State::Active | State::Terminating => {}
        }
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(succ),
        failed: Some(fail),
    });
    if indexed {
        status.completed_indexes = indexes::format(&t.completed);
        status.succeeded = Some(i32::try_from(t.completed.len()).unwrap_or(i32::MAX));
        if per_index.is_some() {
            status.failed_indexes = Some(indexes::format(&t.failed_indexes).unwrap_or_default());
        }
    }
    t.status = status;
    t
}

/// Moves the uncounted UIDs into the counters (after their finalizers are gone).
fn move_uncounted(
    status: &mut JobStatus,
    tally: &Tally<'_>,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
) {
    let uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let succ = uncounted.succeeded.unwrap_or_default().len();
    let fail = uncounted.failed.unwrap_or_default().len();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    if spec.completion_mode.as_deref() != Some("Indexed") {
        status.succeeded = Some(status.succeeded.unwrap_or(0).saturating_add(count(succ)));
    } else {
        status.succeeded = Some(count(tally.completed.len()));
    }
    status.failed = Some(status.failed.unwrap_or(0).saturating_add(count(fail)));
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
}

/// The terminal condition the Job has reached (already or now): `(FailureTarget |
/// SuccessCriteriaMet, reason, message)`.
fn target(
    snap: &Snapshot<'_>,
    tally: &Tally<'_>,
    status: &JobStatus,
) -> Option<(String, String, String)> {
    let mk = |t: &str, r: &str, m: &str| Some((t.to_string(), r.to_string(), m.to_string()));
    for type_ in ["FailureTarget", "SuccessCriteriaMet"] {
        if let Some(c) = true_condition(status, type_) {
            return mk(
                type_,
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default(),
            );
        }
    }
    let spec = snap.job.spec.clone().unwrap_or_default();
    if let Some(message) = &tally.fail_job {
        return mk("FailureTarget", "PodFailurePolicy", message);
    }
    let restarts = restarts_of_active(snap, tally);
    let failures = status.failed.unwrap_or(0).saturating_add(restarts);
    let limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    if spec.backoff_limit_per_index.is_none() && failures > limit {
        return mk(
            "FailureTarget",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
    }
    if spec.suspend != Some(true) && deadline_left(snap, status) == Some(Duration::ZERO) {
        return mk(
            "FailureTarget",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        );
    }
    let completions = spec.completions;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if spec.backoff_limit_per_index.is_some() {
        let failed = tally.failed_indexes.len();
        if spec
            .max_failed_indexes
            .is_some_and(|m| failed > usize::try_from(m).unwrap_or(usize::MAX))
        {
            return mk(
                "FailureTarget",
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            );
        }
        let all = usize::try_from(completions.unwrap_or(0)).unwrap_or(0);
        if failed > 0 && tally.completed.union(&tally.failed_indexes).count() >= all {
            return mk("FailureTarget", "FailedIndexes", "Job has failed indexes");
        }
    }
    if indexed && let Some(message) = policy::success_policy_met(snap.job, &tally.completed) {
        return mk("SuccessCriteriaMet", "SuccessPolicy", &message);
    }
    let succeeded = status.succeeded.unwrap_or(0);
    let active = tally.views.iter().any(|v| v.state == State::Active);
    let complete = match completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && !active,
    };
    if complete {
        return mk(
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
    }
    None
}

fn restarts_of_active(snap: &Snapshot<'_>, tally: &Tally<'_>) -> i32 {
    let on_failure = snap
        .job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return 0;
    }
    tally
        .views
        .iter()
        .filter(|v| v.state == State::Active)
        .flat_map(|v| {
            v.pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum()
}

/// Time left before `activeDeadlineSeconds` (zero once passed); `None` without a deadline.
fn deadline_left(snap: &Snapshot<'_>, status: &JobStatus) -> Option<Duration> {
    let secs = snap.job.spec.as_ref()?.active_deadline_seconds?;
    let start = status.start_time.as_ref()?.0;
    let end = start.checked_add(SignedDuration::from_secs(secs)).ok()?;
    let left = snap.now.duration_until(end);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// Adds the final condition once nothing runs any more.
fn finish(
    plan: &mut Plan,
    status: &mut JobStatus,
    type_: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    if type_ == "SuccessCriteriaMet" {
        set_condition(status, "Complete", "True", reason, message, now);
        status.completion_time = Some(Time(now));
        plan.events.push(event(false, "Completed", "Job completed"));
    } else {
        set_condition(status, "Failed", "True", reason, message, now);
        plan.events.push(event(true, reason, message));
    }
}

/// Creates and deletes pods towards the wanted parallelism; returns the new active count.
fn manage(
    snap: &Snapshot<'_>,
    tally: &Tally<'_>,
    status: &JobStatus,
    active: &[&PodView<'_>],
    terminating: usize,
    plan: &mut Plan,
) -> usize {
    let job = snap.job;
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1).max(0)).unwrap_or(0);
    let wait_terminating = spec.pod_failure_policy.is_some()
        || spec.pod_replacement_policy.as_deref() == Some("Failed");
    let busy = active.len() + if wait_terminating { terminating } else { 0 };
    if let Some(wait) = backoff_left(snap, tally) {
        plan.requeue_after = Some(wait);
        return active.len();
    }
    if spec.completion_mode.as_deref() == Some("Indexed") {
        return manage_indexed(snap, tally, active, busy, parallelism, plan);
    }
    let succeeded = usize::try_from(status.succeeded.unwrap_or(0).max(0)).unwrap_or(0);
    let want = match spec.completions {
        Some(c) => parallelism.min(
            usize::try_from(c.max(0))
                .unwrap_or(0)
                .saturating_sub(succeeded),
        ),
        None if succeeded > 0 => 0,
        None => parallelism,
    };
    if active.len() > want {
        let mut victims: Vec<&&PodView> = active.iter().collect();
        victims.sort_by_key(|v| deletion_rank(v));
        let n = (active.len() - want).min(MAX_POD_CHANGES_PER_SYNC);
        plan.delete
            .extend(victims.into_iter().take(n).map(|v| v.name.to_string()));
        return active.len() - n;
    }
    let n = want.saturating_sub(busy).min(MAX_POD_CHANGES_PER_SYNC);
    plan.create
        .extend((0..n).map(|_| pods::new_pod(job, None, 0)));
    active.len() + n
}

/// Upstream's deletion preference: unscheduled, then not ready, then the newest.
fn deletion_rank(v: &PodView<'_>) -> (bool, bool, std::cmp::Reverse<Option<Timestamp>>) {
    let scheduled = v
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let created = v.pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (scheduled, v.ready, std::cmp::Reverse(created))
}

fn manage_indexed(
    snap: &Snapshot<'_>,
    tally: &Tally<'_>,
    active: &[&PodView<'_>],
    busy: usize,
    parallelism: usize,
    plan: &mut Plan,
) -> usize {
    let job = snap.job;
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let mut seen: BTreeSet<i32> = BTreeSet::new();
    let mut kept = 0;
    for v in active {
        let keep = v.index.is_some_and(|i| {
            i < completions
                && !tally.completed.contains(&i)
                && !tally.failed_indexes.contains(&i)
                && seen.insert(i)
        });
        if keep {
            kept += 1;
        } else {
            plan.delete.push(v.name.to_string());
        }
    }
    let terminating: BTreeSet<i32> = tally
        .views
        .iter()
        .filter(|v| v.state == State::Terminating)
        .filter_map(|v| v.index)
        .collect();
    let busy = busy - (active.len() - kept);
    let room = parallelism
        .saturating_sub(busy)
        .min(MAX_POD_CHANGES_PER_SYNC);
    // Indexes without a pod, skipping those still terminating when the Job waits for them.
    let waits_terminating = busy > kept;
    let missing = (0..completions).filter(|i| {
        let taken = seen.contains(i) || tally.completed.contains(i);
        let blocked = waits_terminating && terminating.contains(i);
        !(taken || tally.failed_indexes.contains(i) || blocked)
    });
    let mut failures: BTreeMap<i32, i32> = BTreeMap::new();
    for v in tally.views.iter().filter(|v| v.state == State::Failed) {
        if let Some(i) = v.index {
            let counted = policy::judge_failure(job, v.pod) != Verdict::Ignore;
            let n = v.index_failures + i32::from(counted);
            let e = failures.entry(i).or_insert(0);
            *e = (*e).max(n);
        }
    }
    let mut created = 0;
    for i in missing.take(room) {
        plan.create.push(pods::new_pod(
            job,
            Some(i),
            failures.get(&i).copied().unwrap_or(0),
        ));
        created += 1;
    }
    kept + created
}

/// How long pod creation still waits after recent failures (failures since the last success).
fn backoff_left(snap: &Snapshot<'_>, tally: &Tally<'_>) -> Option<Duration> {
    let last_success = tally
        .views
        .iter()
        .filter(|v| v.state == State::Succeeded)
        .filter_map(|v| v.finished_at)
        .max();
    let failed: Vec<Timestamp> = tally
        .views
        .iter()
        .filter(|v| {
            v.state == State::Failed && policy::judge_failure(snap.job, v.pod) != Verdict::Ignore
        })
        .filter_map(|v| v.finished_at)
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = failed.iter().max()?;
    let delay = snap
        .backoff
        .delay(u32::try_from(failed.len()).unwrap_or(u32::MAX));
    let end = last
        .checked_add(SignedDuration::try_from(delay).ok()?)
        .ok()?;
    let left = Duration::try_from(snap.now.duration_until(end)).ok()?;
    (!left.is_zero()).then_some(left)
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
