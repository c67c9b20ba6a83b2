//! Printers for `batch/v1`: jobs (STATUS, COMPLETIONS, DURATION) and cronjobs.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{
    CRONJOB_SPEC_SCHEDULE, CRONJOB_SPEC_SUSPEND, CRONJOB_SPEC_TIME_ZONE, CRONJOB_STATUS_ACTIVE,
    CRONJOB_STATUS_LAST_SCHEDULE, JOB_SPEC_SELECTOR, JOB_STATUS_SUCCEEDED,
};
use crate::format::{
    CONTAINERS_DESC, IMAGES_DESC, age, age_column, arr_at, bool_ptr, col, format_label_selector,
    human_duration, int_at, is_deleting, name, name_column, opt_bool, opt_int, opt_str, since,
    str_at, template_cells, time_at, wide,
};
use crate::{Printer, TablePrinter};

/// The printer for a `batch` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    let p: &'static dyn Printer = match resource {
        "jobs" => &JOB,
        "cronjobs" => &CRON_JOB,
        _ => return None,
    };
    Some(p)
}

static JOB: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Status", "string", "Status of the job."),
        col("Completions", "string", JOB_STATUS_SUCCEEDED),
        col("Duration", "string", "Time required to complete the job."),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
        wide("Selector", "string", JOB_SPEC_SELECTOR),
    ],
    row: job_row,
};

fn job_row(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [names, images] = template_cells(job, "/spec/template/spec");
    vec![
        name(job),
        Value::from(job_status(job)),
        Value::from(completions(job)),
        Value::from(job_duration(job, now)),
        age(job, now),
        names,
        images,
        Value::from(format_label_selector(job.pointer("/spec/selector"))),
    ]
}

/// `succeeded/completions`, or for a work queue `succeeded/1` (`of <parallelism>` when
/// parallel).
fn completions(job: &Value) -> String {
    let succeeded = int_at(job, "/status/succeeded");
    if let Some(completions) = opt_int(job, "/spec/completions") {
        return format!("{succeeded}/{completions}");
    }
    match int_at(job, "/spec/parallelism") {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

/// From start to completion, or to `now` while running; empty before the job starts.
fn job_duration(job: &Value, now: DateTime<Utc>) -> String {
    let Some(start) = time_at(job, "/status/startTime") else {
        return String::new();
    };
    let end = time_at(job, "/status/completionTime").unwrap_or(now);
    human_duration(end - start)
}

/// Complete, Failed, Terminating, Suspended, FailureTarget or Running, in that precedence.
fn job_status(job: &Value) -> &'static str {
    let has = |type_: &str| job_condition(job, type_);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// Whether the job's first condition of `type_` is `True`.
fn job_condition(job: &Value, type_: &str) -> bool {
    arr_at(job, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == type_)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

static CRON_JOB: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Schedule", "string", CRONJOB_SPEC_SCHEDULE),
        col("Timezone", "string", CRONJOB_SPEC_TIME_ZONE),
        col("Suspend", "boolean", CRONJOB_SPEC_SUSPEND),
        col("Active", "integer", CRONJOB_STATUS_ACTIVE),
        col("Last Schedule", "string", CRONJOB_STATUS_LAST_SCHEDULE),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
        wide("Selector", "string", JOB_SPEC_SELECTOR),
    ],
    row: cron_job_row,
};

fn cron_job_row(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = match cj.pointer("/status/lastScheduleTime") {
        Some(t) if !t.is_null() => since(time_at(cj, "/status/lastScheduleTime"), now),
        _ => "<none>".to_string(),
    };
    let [names, images] = template_cells(cj, "/spec/jobTemplate/spec/template/spec");
    vec![
        name(cj),
        Value::from(str_at(cj, "/spec/schedule")),
        Value::from(opt_str(cj, "/spec/timeZone").unwrap_or("<none>")),
        Value::from(bool_ptr(opt_bool(cj, "/spec/suspend"))),
        Value::from(arr_at(cj, "/status/active").len()),
        Value::from(last_schedule),
        age(cj, now),
        names,
        images,
        Value::from(format_label_selector(
            cj.pointer("/spec/jobTemplate/spec/selector"),
        )),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, columns, print};

    fn job(spec: serde_json::Value, status: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "pi", "creationTimestamp": ago(600)},
               "spec": spec, "status": status})
    }

    fn template() -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}})
    }

    #[test]
    fn completed_job_with_duration() {
        let j = job(
            json!({"completions": 1, "parallelism": 1, "template": template(),
                   "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}}),
            json!({"succeeded": 1, "startTime": ago(590), "completionTime": ago(590 - 42),
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                  {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            print("batch", "jobs", &j),
            json!([
                "pi",
                "Complete",
                "1/1",
                "42s",
                "10m",
                "pi",
                "perl:5.34",
                "batch.kubernetes.io/controller-uid=u1"
            ])
        );
        assert_eq!(
            columns("batch", "jobs")[..5],
            [
                ("Name", 0),
                ("Status", 0),
                ("Completions", 0),
                ("Duration", 0),
                ("Age", 0)
            ]
        );
    }

    #[test]
    fn job_statuses_and_completions() {
        let cases = [
            (
                json!({"parallelism": 3}),
                json!({"startTime": ago(200)}),
                "Running",
                "0/1 of 3",
                "3m20s",
            ),
            (json!({}), json!({}), "Running", "0/1", ""),
            (
                json!({"completions": 5}),
                json!({"succeeded": 2, "startTime": ago(60),
                    "conditions": [{"type": "Failed", "status": "True"}]}),
                "Failed",
                "2/5",
                "60s",
            ),
            (
                json!({"completions": 5}),
                json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                "Suspended",
                "0/5",
                "",
            ),
            (
                json!({"completions": 5}),
                json!({"conditions": [{"type": "FailureTarget", "status": "True"},
                                   {"type": "Complete", "status": "False"}]}),
                "FailureTarget",
                "0/5",
                "",
            ),
        ];
        for (spec, status, want_status, want_completions, want_duration) in cases {
            let row = print("batch", "jobs", &job(spec, status));
            assert_eq!(
                (&row[1], &row[2], &row[3]),
                (
                    &json!(want_status),
                    &json!(want_completions),
                    &json!(want_duration)
                )
            );
        }
        let mut deleting = job(json!({}), json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(print("batch", "jobs", &deleting)[1], "Terminating");
    }

    #[test]
    fn cron_job_schedule_and_last_schedule() {
        let cj = json!({"metadata": {"name": "backup", "creationTimestamp": ago(86400 * 2)},
            "spec": {"schedule": "*/5 * * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": template()}}},
            "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(150)}});
        assert_eq!(
            print("batch", "cronjobs", &cj),
            json!([
                "backup",
                "*/5 * * * *",
                "<none>",
                "False",
                1,
                "2m30s",
                "2d",
                "pi",
                "perl:5.34",
                "<none>"
            ])
        );
        let never = json!({"metadata": {"name": "nightly", "creationTimestamp": ago(30)},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Paris"}});
        assert_eq!(
            print("batch", "cronjobs", &never),
            json!([
                "nightly",
                "0 3 * * *",
                "Europe/Paris",
                "<unset>",
                0,
                "<none>",
                "30s",
                "",
                "",
                "<none>"
            ])
        );
    }
}
