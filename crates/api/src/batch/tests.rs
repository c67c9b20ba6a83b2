use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Value, json};

use crate::{ApiType, job_generate_selector};

fn job(patch: Value) -> Job {
    let mut v = json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "u-1", "resourceVersion": "1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}
    });
    json_patch::merge(&mut v, &patch);
    let mut j: Job = serde_json::from_value(v).unwrap_or_default();
    j.set_defaults();
    job_generate_selector(&mut j);
    j
}

fn errs(e: Vec<crate::FieldError>) -> Vec<String> {
    e.iter().map(ToString::to_string).collect()
}

#[test]
fn job_defaults_and_generated_selector() {
    let j = job(json!({}));
    let v = serde_json::to_value(&j).unwrap_or_default();
    let spec = &v["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert!(spec.get("manualSelector").is_none());
    assert_eq!(
        spec["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"})
    );
    assert!(j.validate().is_empty(), "{:?}", errs(j.validate()));
}

#[test]
fn job_table() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"spec": {"parallelism": -1}}),
            vec!["spec.parallelism: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            json!({"spec": {"completions": -1}}),
            vec!["spec.completions: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            json!({"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ],
        ),
        (
            json!({"spec": {"completionMode": "Indexed", "completions": null, "parallelism": 2}}),
            vec!["spec.completions: Required value: when completion mode is Indexed"],
        ),
    ];
    for (patch, want) in cases {
        assert_eq!(errs(job(patch.clone()).validate()), want, "{patch}");
    }
}

#[test]
fn job_template_is_immutable() {
    let old = job(json!({}));
    let mut new = old.clone();
    if let Some(c) = new
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|s| s.containers.first_mut())
    {
        c.image = Some("perl:2".into());
    }
    let got = errs(new.validate_update(&old));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("spec.template: Invalid value: ")
            && got[0].ends_with(": field is immutable"),
        "{got:?}"
    );
    let mut scaled = old.clone();
    if let Some(s) = scaled.spec.as_mut() {
        s.parallelism = Some(3);
    }
    assert!(scaled.validate_update(&old).is_empty());
}

fn cron(patch: Value) -> CronJob {
    let mut v = json!({
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}
    });
    json_patch::merge(&mut v, &patch);
    let mut c: CronJob = serde_json::from_value(v).unwrap_or_default();
    c.set_defaults();
    c
}

#[test]
fn cronjob_defaults_and_schedule() {
    let c = cron(json!({}));
    let v = serde_json::to_value(&c).unwrap_or_default();
    assert_eq!(v["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(v["spec"]["suspend"], false);
    assert_eq!(v["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(v["spec"]["failedJobsHistoryLimit"], 1);
    assert!(c.validate().is_empty(), "{:?}", errs(c.validate()));
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"spec": {"schedule": "bogus"}}),
            vec![
                "spec.schedule: Invalid value: \"bogus\": expected exactly 5 fields, found 1: [bogus]",
            ],
        ),
        (
            json!({"spec": {"schedule": "TZ=UTC 0 * * * *"}}),
            vec![
                "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ],
        ),
        (
            json!({"spec": {"concurrencyPolicy": "Sometimes"}}),
            vec![
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            ],
        ),
        (
            json!({"metadata": {"name": "a-very-long-cronjob-name-that-goes-on-and-on-past-limit"}}),
            vec![
                "metadata.name: Invalid value: \"a-very-long-cronjob-name-that-goes-on-and-on-past-limit\": must be no more than 52 characters",
            ],
        ),
    ];
    for (patch, want) in cases {
        assert_eq!(errs(cron(patch.clone()).validate()), want, "{patch}");
    }
}
