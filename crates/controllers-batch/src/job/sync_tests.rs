use super::*;
use crate::job::pods::{COMPLETION_INDEX, INDEX_ENV, TRACKING_FINALIZER};
use crate::testutil::{JobBuilder, PodBuilder, at};
use serde_json::json;

const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(10),
    max: Duration::from_secs(360),
};

fn run(job: &Job, pods: &[Pod], now: Timestamp) -> Plan {
    let refs: Vec<&Pod> = pods.iter().collect();
    sync(&Snapshot {
        job,
        pods: &refs,
        now,
        backoff: BACKOFF,
    })
}

fn conditions(status: &JobStatus) -> Vec<(String, String, String)> {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            let reason = c.reason.clone().unwrap_or_default();
            (c.type_.clone(), c.status.clone(), reason)
        })
        .collect()
}

fn cond(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    assert_eq!(BACKOFF.delay(0), Duration::ZERO);
    assert_eq!(BACKOFF.delay(1), Duration::from_secs(10));
    assert_eq!(BACKOFF.delay(3), Duration::from_secs(40));
    assert_eq!(BACKOFF.delay(10), Duration::from_secs(360));
}

#[test]
fn new_job_creates_up_to_parallelism_with_finalizer_and_owner() {
    let job = JobBuilder::new("j")
        .spec("completions", json!(3))
        .spec("parallelism", json!(2))
        .build();
    let plan = run(&job, &[], at(0));
    assert_eq!(plan.create.len(), 2);
    let pod = &plan.create[0];
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("j-"));
    let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
    assert_eq!(finalizers, [TRACKING_FINALIZER]);
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Job", "uid-j"));
    assert_eq!(owner.controller, Some(true));
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["batch.kubernetes.io/job-name"], "j");
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], "uid-j");
    assert_eq!(labels["app"], "j");
    assert!(plan.delete.is_empty() && plan.unfinalize.is_empty());
    assert_eq!(plan.interim_status, None);
    let status = plan.status.clone().expect("status");
    assert_eq!(status.active, Some(2));
    assert_eq!(status.start_time, Some(Time(at(0))));
    assert!(plan.events.is_empty());
}

#[test]
fn finished_pods_are_counted_through_uncounted_then_unfinalized() {
    let job = JobBuilder::new("j")
        .spec("completions", json!(2))
        .status(json!({"startTime": at(0).to_string(), "active": 2}))
        .build();
    let done = PodBuilder::of(&job, "j-a").exited(0, at(5)).build();
    let running = PodBuilder::of(&job, "j-b").build();
    let plan = run(&job, &[done, running], at(6));
    let interim = plan.interim_status.clone().expect("interim");
    let uncounted = interim.uncounted_terminated_pods.expect("uncounted");
    assert_eq!(uncounted.succeeded, Some(vec!["uid-j-a".to_string()]));
    assert_eq!(plan.unfinalize, ["j-a"]);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let status = plan.status.clone().expect("status");
    assert_eq!(
        (status.succeeded, status.active, status.ready),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        status.uncounted_terminated_pods,
        Some(UncountedTerminatedPods::default())
    );
}

#[test]
fn reaching_completions_completes_the_job() {
    let job = JobBuilder::new("j")
        .status(json!({"startTime": at(0).to_string(), "active": 1}))
        .build();
    let done = PodBuilder::of(&job, "j-a").exited(0, at(5)).build();
    let plan = run(&job, &[done], at(6));
    let status = plan.status.clone().expect("status");
    assert_eq!(
        conditions(&status),
        [
            cond("SuccessCriteriaMet", "True", "CompletionsReached"),
            cond("Complete", "True", "CompletionsReached"),
        ]
    );
    assert_eq!(status.completion_time, Some(Time(at(6))));
    assert_eq!((status.succeeded, status.active), (Some(1), Some(0)));
    assert_eq!(reasons(&plan), ["Completed"]);
    assert!(plan.create.is_empty());
}

#[test]
fn failures_back_off_before_replacement() {
    let job = JobBuilder::new("j")
        .status(json!({"startTime": at(0).to_string(), "failed": 1, "active": 0}))
        .build();
    let failed = PodBuilder::of(&job, "j-a")
        .exited(1, at(5))
        .untracked()
        .build();
    let waiting = run(&job, std::slice::from_ref(&failed), at(8));
    assert!(waiting.create.is_empty());
    assert_eq!(waiting.requeue_after, Some(Duration::from_secs(7)));
    let after = run(&job, &[failed], at(15));
    assert_eq!(after.create.len(), 1);
    assert_eq!(after.requeue_after, None);
}

#[test]
fn backoff_limit_exceeded_fails_the_job() {
    let job = JobBuilder::new("j")
        .spec("backoffLimit", json!(1))
        .status(json!({"startTime": at(0).to_string(), "failed": 1, "active": 1}))
        .build();
    let failed = PodBuilder::of(&job, "j-b").exited(1, at(5)).build();
    let plan = run(&job, &[failed], at(6));
    let interim = plan.interim_status.clone().expect("interim");
    let uncounted = interim.uncounted_terminated_pods.expect("uncounted");
    assert_eq!(uncounted.failed, Some(vec!["uid-j-b".to_string()]));
    let status = plan.status.clone().expect("status");
    assert_eq!(status.failed, Some(2));
    assert_eq!(
        conditions(&status),
        [
            cond("FailureTarget", "True", "BackoffLimitExceeded"),
            cond("Failed", "True", "BackoffLimitExceeded"),
        ]
    );
    assert_eq!(reasons(&plan), ["BackoffLimitExceeded"]);
    assert!(plan.events[0].warning);
    assert!(plan.create.is_empty());
}

#[test]
fn active_deadline_terminates_pods_then_fails() {
    let job = JobBuilder::new("j")
        .spec("activeDeadlineSeconds", json!(30))
        .status(json!({"startTime": at(0).to_string(), "active": 1}))
        .build();
    let running = PodBuilder::of(&job, "j-a").build();
    let early = run(&job, std::slice::from_ref(&running), at(10));
    assert_eq!(early.requeue_after, Some(Duration::from_secs(20)));
    assert!(early.delete.is_empty() && early.create.is_empty());
    let late = run(&job, &[running], at(31));
    assert_eq!(late.delete, ["j-a"]);
    let status = late.status.expect("status");
    assert_eq!(
        conditions(&status),
        [cond("FailureTarget", "True", "DeadlineExceeded")]
    );
    assert_eq!((status.active, status.terminating), (Some(0), Some(1)));
    // Once the pod is gone the Job fails.
    let mut failing = job.clone();
    failing.status = Some(status);
    let done = run(&failing, &[], at(32));
    let status = done.status.clone().expect("status");
    assert!(conditions(&status).contains(&cond("Failed", "True", "DeadlineExceeded")));
    assert_eq!(reasons(&done), ["DeadlineExceeded"]);
}

#[test]
fn suspend_deletes_pods_and_resume_restarts_the_clock() {
    let job = JobBuilder::new("j")
        .spec("suspend", json!(true))
        .status(json!({"startTime": at(0).to_string(), "active": 1}))
        .build();
    let running = PodBuilder::of(&job, "j-a").build();
    let plan = run(&job, &[running], at(5));
    assert_eq!(plan.delete, ["j-a"]);
    let status = plan.status.clone().expect("status");
    assert_eq!(
        conditions(&status),
        [cond("Suspended", "True", "JobSuspended")]
    );
    assert_eq!(reasons(&plan), ["Suspended"]);
    let mut resumed = job.clone();
    resumed.spec.as_mut().expect("spec").suspend = Some(false);
    resumed.status = Some(status);
    let plan = run(&resumed, &[], at(50));
    let status = plan.status.clone().expect("status");
    assert_eq!(
        conditions(&status),
        [cond("Suspended", "False", "JobResumed")]
    );
    assert_eq!(status.start_time, Some(Time(at(50))));
    assert_eq!(plan.create.len(), 1);
    assert_eq!(reasons(&plan), ["Resumed"]);
}

#[test]
fn indexed_pods_carry_index_env_and_hostname() {
    let job = JobBuilder::new("j")
        .spec("completionMode", json!("Indexed"))
        .spec("completions", json!(3))
        .spec("parallelism", json!(3))
        .status(json!({"startTime": at(0).to_string(), "active": 1, "completedIndexes": "0"}))
        .build();
    let running = PodBuilder::of(&job, "j-1-x").index(1).build();
    let plan = run(&job, &[running], at(5));
    assert_eq!(plan.create.len(), 1);
    let pod = &plan.create[0];
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("j-2-"));
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations[COMPLETION_INDEX], "2");
    assert_eq!(
        pod.metadata.labels.clone().unwrap_or_default()[COMPLETION_INDEX],
        "2"
    );
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("j-2"));
    let env = spec.containers[0].env.clone().unwrap_or_default();
    assert_eq!(env[0].name, INDEX_ENV);
    let field = env[0]
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref());
    assert_eq!(
        field.map(|f| f.field_path.as_str()),
        Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
    );
}

#[test]
fn indexed_completion_tracks_completed_indexes() {
    let job = JobBuilder::new("j")
        .spec("completionMode", json!("Indexed"))
        .spec("completions", json!(2))
        .spec("parallelism", json!(2))
        .status(json!({"startTime": at(0).to_string(), "active": 2, "completedIndexes": "0"}))
        .build();
    let done = PodBuilder::of(&job, "j-1-x")
        .index(1)
        .exited(0, at(5))
        .build();
    let plan = run(&job, &[done], at(6));
    let interim = plan.interim_status.clone().expect("interim");
    assert_eq!(interim.completed_indexes.as_deref(), Some("0-1"));
    let status = plan.status.clone().expect("status");
    assert_eq!(status.succeeded, Some(2));
    assert!(conditions(&status).contains(&cond("Complete", "True", "CompletionsReached")));
}

#[test]
fn backoff_limit_per_index_fails_indexes_then_the_job() {
    let job = JobBuilder::new("j")
        .spec("completionMode", json!("Indexed"))
        .spec("completions", json!(2))
        .spec("parallelism", json!(2))
        .spec("backoffLimitPerIndex", json!(0))
        .status(json!({"startTime": at(0).to_string(), "active": 2, "completedIndexes": "1"}))
        .build();
    let failed = PodBuilder::of(&job, "j-0-x")
        .index(0)
        .annotation("batch.kubernetes.io/job-index-failure-count", "0")
        .exited(1, at(5))
        .build();
    let plan = run(&job, &[failed], at(6));
    let status = plan.status.clone().expect("status");
    assert_eq!(status.failed_indexes.as_deref(), Some("0"));
    assert_eq!(status.failed, Some(1));
    assert!(conditions(&status).contains(&cond("Failed", "True", "FailedIndexes")));
    assert!(plan.create.is_empty());
}

#[test]
fn pod_failure_policy_fail_job_and_ignore() {
    let policy = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]});
    let job = JobBuilder::new("j")
        .spec("podFailurePolicy", policy)
        .status(json!({"startTime": at(0).to_string(), "active": 1}))
        .build();
    let fatal = PodBuilder::of(&job, "j-a").exited(42, at(5)).build();
    let plan = run(&job, &[fatal], at(6));
    let status = plan.status.clone().expect("status");
    let failed = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed")
        .expect("failed");
    assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "Container c for pod default/j-a failed with exit code 42 matching FailJob rule at index 0"
        )
    );
    let disrupted = PodBuilder::of(&job, "j-b")
        .exited(1, at(5))
        .condition("DisruptionTarget")
        .build();
    let plan = run(&job, &[disrupted], at(6));
    let status = plan.status.clone().expect("status");
    assert_eq!(status.failed, Some(0));
    assert_eq!(plan.unfinalize, ["j-b"]);
    assert_eq!(
        plan.create.len(),
        1,
        "ignored failures are replaced at once"
    );
}

#[test]
fn success_policy_meets_criteria_and_terminates_the_rest() {
    let job = JobBuilder::new("j")
        .spec("completionMode", json!("Indexed"))
        .spec("completions", json!(3))
        .spec("parallelism", json!(3))
        .spec(
            "successPolicy",
            json!({"rules": [{"succeededIndexes": "0"}]}),
        )
        .status(json!({"startTime": at(0).to_string(), "active": 3}))
        .build();
    let leader = PodBuilder::of(&job, "j-0-x")
        .index(0)
        .exited(0, at(5))
        .build();
    let worker = PodBuilder::of(&job, "j-1-x").index(1).build();
    let plan = run(&job, &[leader, worker], at(6));
    assert_eq!(plan.delete, ["j-1-x"]);
    let status = plan.status.clone().expect("status");
    assert_eq!(
        conditions(&status),
        [cond("SuccessCriteriaMet", "True", "SuccessPolicy")]
    );
}

#[test]
fn replacement_policy_failed_waits_for_terminating_pods() {
    let job = JobBuilder::new("j")
        .spec("podReplacementPolicy", json!("Failed"))
        .status(json!({"startTime": at(0).to_string(), "active": 1}))
        .build();
    let going = PodBuilder::of(&job, "j-a").deleting().build();
    let plan = run(&job, std::slice::from_ref(&going), at(40));
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.expect("status").terminating, Some(1));
    // Without the policy a deleted pod counts as failed and is replaced.
    let eager = JobBuilder::new("j")
        .status(json!({"startTime": at(0).to_string(), "active": 1}))
        .build();
    let plan = run(&eager, &[going], at(40));
    assert_eq!(plan.status.expect("status").failed, Some(1));
}

#[test]
fn finished_job_releases_pods_and_writes_nothing_else() {
    let job = JobBuilder::new("j")
        .status(
            json!({"startTime": at(0).to_string(), "succeeded": 1, "active": 0, "ready": 0,
                       "terminating": 0, "failed": 0, "uncountedTerminatedPods": {},
                       "conditions": [{"type": "Complete", "status": "True"}]}),
        )
        .build();
    let plan = run(&job, &[], at(100));
    assert_eq!(plan, Plan::default());
}

fn per_index_job(policy: Option<serde_json::Value>) -> Job {
    let mut b = JobBuilder::new("j")
        .spec("completionMode", json!("Indexed"))
        .spec("completions", json!(3))
        .spec("parallelism", json!(3))
        .spec("backoffLimitPerIndex", json!(1))
        .spec("maxFailedIndexes", json!(0))
        .status(json!({"startTime": at(0).to_string(), "active": 3}));
    if let Some(p) = policy {
        b = b.spec("podFailurePolicy", p);
    }
    b.build()
}

#[test]
fn per_index_failures_retry_the_index_with_its_count() {
    let job = per_index_job(None);
    let failed = PodBuilder::of(&job, "j-0-x")
        .index(0)
        .annotation("batch.kubernetes.io/job-index-failure-count", "0")
        .exited(1, at(5))
        .build();
    let others = [1, 2].map(|i| PodBuilder::of(&job, &format!("j-{i}-x")).index(i).build());
    let pods = [vec![failed], others.to_vec()].concat();
    let plan = run(&job, &pods, at(100));
    assert_eq!(plan.create.len(), 1);
    let annotations = plan.create[0]
        .metadata
        .annotations
        .clone()
        .unwrap_or_default();
    assert_eq!(annotations[COMPLETION_INDEX], "0");
    assert_eq!(
        annotations["batch.kubernetes.io/job-index-failure-count"],
        "1"
    );
    let status = plan.status.expect("status");
    assert_eq!(status.failed_indexes.as_deref(), Some(""));
    assert_eq!(status.failed, Some(1));
}

#[test]
fn max_failed_indexes_fails_the_job_and_fail_index_skips_retries() {
    let job = per_index_job(None);
    let failed = PodBuilder::of(&job, "j-1-x")
        .index(1)
        .annotation("batch.kubernetes.io/job-index-failure-count", "1")
        .exited(1, at(5))
        .build();
    let running = PodBuilder::of(&job, "j-0-x").index(0).build();
    let plan = run(&job, &[failed, running], at(6));
    assert_eq!(plan.delete, ["j-0-x"]);
    let status = plan.status.expect("status");
    assert_eq!(status.failed_indexes.as_deref(), Some("1"));
    assert_eq!(
        conditions(&status),
        [cond("FailureTarget", "True", "MaxFailedIndexesExceeded")]
    );
    let policy = json!({"rules": [
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}}]});
    let job = per_index_job(Some(policy));
    let failed = PodBuilder::of(&job, "j-2-x")
        .index(2)
        .annotation("batch.kubernetes.io/job-index-failure-count", "0")
        .exited(7, at(5))
        .build();
    let plan = run(&job, &[failed], at(6));
    let status = plan.status.expect("status");
    assert_eq!(status.failed_indexes.as_deref(), Some("2"));
    assert!(conditions(&status).contains(&cond("Failed", "True", "MaxFailedIndexesExceeded")));
}
