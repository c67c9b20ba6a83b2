use super::*;
use crate::testutil::{CronJobBuilder, at, cron_child};
use serde_json::json;

fn run(cj: &CronJob, jobs: &[Job], now: Timestamp) -> Plan {
    let refs: Vec<&Job> = jobs.iter().collect();
    sync(&Snapshot {
        cronjob: cj,
        jobs: &refs,
        now,
        local: &TimeZone::UTC,
    })
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

fn active_ref(job: &Job) -> serde_json::Value {
    json!({"kind": "Job", "apiVersion": "batch/v1", "namespace": "default",
           "name": job.metadata.name, "uid": job.metadata.uid})
}

#[test]
fn creates_the_job_of_the_latest_schedule_time() {
    let cj = CronJobBuilder::new("cj", "*/5 * * * *").build();
    let plan = run(&cj, &[], at(310));
    let job = plan.create.expect("job");
    assert_eq!(job.metadata.name.as_deref(), Some("cj-28401125"));
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations[SCHEDULED_TIMESTAMP], "2024-01-01T00:05:00Z");
    let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("CronJob", "uid-cj")
    );
    assert_eq!(plan.status.last_schedule_time, Some(Time(at(300))));
    assert_eq!(plan.requeue_after, Some(Duration::from_millis(290_100)));
    assert!(plan.delete.is_empty() && plan.events.is_empty());
}

#[test]
fn waits_for_the_first_schedule_time() {
    let cj = CronJobBuilder::new("cj", "*/5 * * * *").build();
    let plan = run(&cj, &[], at(100));
    assert_eq!(plan.create, None);
    assert_eq!(plan.requeue_after, Some(Duration::from_millis(200_100)));
}

#[test]
fn a_processed_schedule_time_is_not_run_twice() {
    let cj = CronJobBuilder::new("cj", "*/5 * * * *")
        .status(json!({"lastScheduleTime": at(300).to_string()}))
        .build();
    assert_eq!(run(&cj, &[], at(310)).create, None);
}

fn with_policy(policy: &str, status: serde_json::Value) -> CronJob {
    CronJobBuilder::new("cj", "*/5 * * * *")
        .spec("concurrencyPolicy", json!(policy))
        .status(status)
        .build()
}

#[test]
fn forbid_skips_while_a_job_runs_and_replace_deletes_it() {
    let running = cron_child(&with_policy("Allow", json!({})), at(300), None);
    let status = json!({"lastScheduleTime": at(300).to_string(), "active": [active_ref(&running)]});
    let forbid = with_policy("Forbid", status.clone());
    let plan = run(&forbid, std::slice::from_ref(&running), at(610));
    assert_eq!(plan.create, None);
    assert_eq!(reasons(&plan), ["JobAlreadyActive"]);
    let replace = with_policy("Replace", status.clone());
    let plan = run(&replace, std::slice::from_ref(&running), at(610));
    assert_eq!(plan.delete, ["cj-28401125"]);
    assert_eq!(reasons(&plan), ["SuccessfulDelete"]);
    assert_eq!(
        plan.create.and_then(|j| j.metadata.name).as_deref(),
        Some("cj-28401130")
    );
    assert_eq!(plan.status.active, None);
    let allow = with_policy("Allow", status);
    let plan = run(&allow, &[running], at(610));
    assert!(plan.create.is_some() && plan.delete.is_empty());
    assert_eq!(plan.status.active.map(|a| a.len()), Some(1));
}

#[test]
fn starting_deadline_skips_missed_times_and_suspend_stops_all() {
    let cj = CronJobBuilder::new("cj", "*/5 * * * *")
        .spec("startingDeadlineSeconds", json!(10))
        .build();
    assert_eq!(run(&cj, &[], at(330)).create, None);
    assert!(run(&cj, &[], at(305)).create.is_some());
    let suspended = CronJobBuilder::new("cj", "*/5 * * * *")
        .spec("suspend", json!(true))
        .build();
    let plan = run(&suspended, &[], at(310));
    assert_eq!((plan.create, plan.requeue_after), (None, None));
}

#[test]
fn too_many_missed_start_times_warns_and_runs_the_latest() {
    let cj = CronJobBuilder::new("cj", "* * * * *").build();
    let plan = run(&cj, &[], at(3 * 3600 + 30));
    assert_eq!(reasons(&plan), ["TooManyMissedTimes"]);
    assert_eq!(
        plan.events[0].message,
        "too many missed start times: 180. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
    );
    assert_eq!(plan.status.last_schedule_time, Some(Time(at(3 * 3600))));
}

#[test]
fn finished_jobs_leave_active_and_history_is_trimmed() {
    let cj = CronJobBuilder::new("cj", "0 0 1 1 *").build();
    let done: Vec<Job> = (1..=5)
        .map(|m| cron_child(&cj, at(m * 60), Some("Complete")))
        .chain((1..=2).map(|m| cron_child(&cj, at(600 + m * 60), Some("Failed"))))
        .collect();
    let status = json!({"active": [active_ref(&done[4])]});
    let cj = CronJobBuilder::new("cj", "0 0 1 1 *")
        .status(status)
        .build();
    let plan = run(&cj, &done, at(3600));
    assert_eq!(plan.status.active, Some(vec![]));
    assert_eq!(plan.status.last_successful_time, Some(Time(at(300))));
    assert_eq!(plan.delete, ["cj-28401121", "cj-28401122", "cj-28401131"]);
    assert_eq!(
        reasons(&plan),
        [
            "SawCompletedJob",
            "SuccessfulDelete",
            "SuccessfulDelete",
            "SuccessfulDelete"
        ]
    );
    assert_eq!(
        plan.events[0].message,
        "Saw completed job: cj-28401125, condition: Complete"
    );
}

#[test]
fn history_started_in_the_same_second_is_trimmed_in_name_order() {
    let cj = CronJobBuilder::new("cj", "0 0 1 1 *")
        .status(json!({}))
        .build();
    let mut done: Vec<Job> = (1..=2)
        .map(|m| cron_child(&cj, at(m * 60), Some("Complete")))
        .collect();
    for job in &mut done {
        let status = job.status.get_or_insert_default();
        status.start_time = Some(Time(at(600)));
        job.metadata.creation_timestamp = Some(Time(at(600)));
    }
    done.reverse();
    let cj = CronJobBuilder::new("cj", "0 0 1 1 *")
        .spec("successfulJobsHistoryLimit", json!(1))
        .build();
    let plan = run(&cj, &done, at(3600));
    assert_eq!(plan.delete, ["cj-28401121"], "the older schedule goes");
}

#[test]
fn missing_and_unexpected_jobs_are_reported() {
    let cj = CronJobBuilder::new("cj", "0 0 1 1 *").build();
    let gone = cron_child(&cj, at(60), None);
    let stray = cron_child(&cj, at(120), None);
    let cj = CronJobBuilder::new("cj", "0 0 1 1 *")
        .status(json!({"active": [active_ref(&gone)]}))
        .build();
    let plan = run(&cj, &[stray], at(3600));
    assert_eq!(reasons(&plan), ["UnexpectedJob", "MissingJob"]);
    assert_eq!(
        plan.events[1].message,
        "Active job went missing: cj-28401121"
    );
    assert_eq!(plan.status.active, Some(vec![]));
}

#[test]
fn time_zones_shift_the_schedule_and_the_annotation() {
    let cj = CronJobBuilder::new("cj", "0 9 * * *")
        .spec("timeZone", json!("Asia/Tokyo"))
        .build();
    let job = run(&cj, &[], at(86_400 + 60)).create.expect("job");
    let annotations = job.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations[SCHEDULED_TIMESTAMP],
        "2024-01-02T09:00:00+09:00"
    );
    let prefixed = CronJobBuilder::new("cj", "CRON_TZ=Asia/Tokyo 0 9 * * *").build();
    assert!(run(&prefixed, &[], at(86_400 + 60)).create.is_some());
    assert!(run(&prefixed, &[], at(86_400 - 60)).create.is_none());
}

#[test]
fn bad_zones_and_schedules_are_reported() {
    let cj = CronJobBuilder::new("cj", "*/5 * * * *")
        .spec("timeZone", json!("Mars/Olympus"))
        .build();
    let plan = run(&cj, &[], at(310));
    assert_eq!(reasons(&plan), ["UnknownTimeZone"]);
    assert_eq!(plan.create, None);
    let cj = CronJobBuilder::new("cj", "61 * * * *").build();
    let plan = run(&cj, &[], at(310));
    assert_eq!(
        plan.events[0].message,
        "unparseable schedule: \"61 * * * *\" : end of range (61) above maximum (59): 61"
    );
    assert_eq!(plan.requeue_after, None);
}
