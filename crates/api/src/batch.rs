//! batch/v1: Jobs and CronJobs.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::core::pod::{selector_mismatch, template_labels, validate_pod_template};
use crate::core::pod_defaults::default_pod_template;
use crate::cron;
use crate::field::{FieldError, Path, bad_json, bad_map, invalid, not_supported, required};
use crate::meta::{
    bad_selector, immutable, non_negative, selector_matches, semantic_eq, validate_label_selector,
};
use crate::{ApiType, check_meta, check_meta_update};

const LEGACY_UID_LABEL: &str = "controller-uid";
const UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_NAME_LABEL: &str = "job-name";
const NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const MAX_INDEXED_PARALLELISM: i32 = 100_000;

fn set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Generates the selector and pod labels of a Job that did not ask for a manual selector,
/// as upstream's job strategy does once the uid is known. The API server calls it after
/// assigning `metadata.uid` and before [`ApiType::validate`].
pub fn job_generate_selector(job: &mut Job) {
    let (name, uid) = (
        job.metadata.name.clone().unwrap_or_default(),
        job.metadata.uid.clone().unwrap_or_default(),
    );
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.manual_selector == Some(true) {
        return;
    }
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    for key in [LEGACY_NAME_LABEL, NAME_LABEL] {
        labels.entry(key.into()).or_insert_with(|| name.clone());
    }
    for key in [LEGACY_UID_LABEL, UID_LABEL] {
        labels.entry(key.into()).or_insert_with(|| uid.clone());
    }
    let selector = spec.selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .entry(UID_LABEL.into())
        .or_insert(uid);
}

fn default_job_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    set(&mut spec.parallelism, 1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    set(&mut spec.completion_mode, "NonIndexed".into());
    set(&mut spec.suspend, false);
    if let Some(pfp) = spec.pod_failure_policy.as_mut() {
        for c in pfp
            .rules
            .iter_mut()
            .flat_map(|r| r.on_pod_conditions.iter_mut().flatten())
        {
            if c.status.is_empty() {
                c.status = "True".into();
            }
        }
    }
    if spec.pod_replacement_policy.is_none() {
        let policy = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy = Some(policy.into());
    }
    default_pod_template(&mut spec.template);
}

impl ApiType for Job {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        default_job_spec(spec);
        let labels = template_labels(&spec.template).cloned();
        if let Some(labels) = labels
            && self.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty)
        {
            self.metadata.labels = Some(labels);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let spec = self.spec.clone().unwrap_or_default();
        errs.extend(validate_generated_selector(self, &spec));
        errs.extend(validate_job_spec(&spec, &Path::new("spec")));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let (n, o) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        errs.extend(validate_job_spec(&n, &Path::new("spec")));
        errs.extend(validate_job_spec_update(&n, &o, old));
        errs
    }
}

/// `ValidateHasLabel`: the template must carry `key=value`.
fn has_label(t: &PodTemplateSpec, key: &str, value: &str, path: &Path) -> Vec<FieldError> {
    let labels = template_labels(t);
    let p = path.child("labels").key(key);
    match labels.and_then(|l| l.get(key)) {
        None => vec![required(&p, &format!("must be '{value}'"))],
        Some(v) if v != value => vec![invalid(&p, bad_map(labels), &format!("must be '{value}'"))],
        Some(_) => vec![],
    }
}

fn validate_generated_selector(job: &Job, spec: &JobSpec) -> Vec<FieldError> {
    if spec.manual_selector == Some(true) || spec.selector.is_none() {
        return vec![];
    }
    let mut errs = Vec::new();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    if uid.is_empty() {
        errs.push(required(&Path::new("metadata").child("uid"), ""));
    }
    let tp = Path::new("spec").child("template").child("metadata");
    let expected = [
        (LEGACY_UID_LABEL, &uid),
        (LEGACY_NAME_LABEL, &name),
        (UID_LABEL, &uid),
        (NAME_LABEL, &name),
    ];
    for (key, value) in expected {
        errs.extend(has_label(&spec.template, key, value, &tp));
    }
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if selector_matches(spec.selector.as_ref(), Some(&expected)) == Some(false) {
        errs.push(invalid(
            &Path::new("spec").child("selector"),
            bad_selector(spec.selector.as_ref()),
            "`selector` not auto-generated",
        ));
    }
    errs
}

/// Everything of `ValidateJobSpec` that also applies to CronJob job templates.
fn validate_job_spec_body(spec: &JobSpec, sp: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let numbers = [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        (
            "ttlSecondsAfterFinished",
            spec.ttl_seconds_after_finished.map(i64::from),
        ),
    ];
    for (field, v) in numbers {
        if let Some(v) = v {
            errs.extend(non_negative(v, &sp.child(field)));
        }
    }
    let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
    if mode != "NonIndexed" && mode != "Indexed" {
        errs.push(not_supported(
            &sp.child("completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    if mode == "Indexed" {
        if spec.completions.is_none() {
            errs.push(required(
                &sp.child("completions"),
                "when completion mode is Indexed",
            ));
        }
        if let Some(p) = spec.parallelism.filter(|p| *p > MAX_INDEXED_PARALLELISM) {
            errs.push(invalid(
                &sp.child("parallelism"),
                p,
                "must be less than or equal to 100000 when completion mode is Indexed",
            ));
        }
    } else if spec.backoff_limit_per_index.is_some() {
        errs.push(invalid(
            &sp.child("backoffLimitPerIndex"),
            spec.backoff_limit_per_index,
            "requires indexed completion mode",
        ));
    }
    if let Some(p) = spec.pod_replacement_policy.as_deref() {
        let valid: &[&str] = if spec.pod_failure_policy.is_some() {
            &["Failed"]
        } else {
            &["Failed", "TerminatingOrFailed"]
        };
        if !valid.contains(&p) {
            errs.push(not_supported(&sp.child("podReplacementPolicy"), p, valid));
        }
    }
    let tp = sp.child("template");
    errs.extend(validate_pod_template(&spec.template, &tp));
    let rp = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("");
    if spec.pod_failure_policy.is_some() && rp != "Never" {
        errs.push(invalid(
            &tp.child("spec").child("restartPolicy"),
            rp,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    } else if rp != "OnFailure" && rp != "Never" {
        errs.push(not_supported(
            &tp.child("spec").child("restartPolicy"),
            rp,
            &["OnFailure", "Never"],
        ));
    }
    errs
}

fn validate_job_spec(spec: &JobSpec, sp: &Path) -> Vec<FieldError> {
    let mut errs = validate_job_spec_body(spec, sp);
    match &spec.selector {
        None => errs.push(required(&sp.child("selector"), "")),
        Some(s) => errs.extend(validate_label_selector(Some(s), &sp.child("selector"))),
    }
    if selector_matches(spec.selector.as_ref(), template_labels(&spec.template)) == Some(false)
        && spec.selector.is_some()
    {
        errs.push(selector_mismatch(
            &spec.template,
            &sp.child("template").child("metadata").child("labels"),
        ));
    }
    errs
}

fn validate_job_spec_update(n: &JobSpec, o: &JobSpec, old_job: &Job) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let elastic = n.completion_mode.as_deref() == Some("Indexed") && n.completions == n.parallelism;
    if n.completions != o.completions && !elastic {
        errs.push(immutable(&sp.child("completions"), n.completions));
    }
    if !semantic_eq(&n.selector, &o.selector) {
        errs.push(immutable(
            &sp.child("selector"),
            bad_selector(n.selector.as_ref()),
        ));
    }
    let never_started = old_job
        .status
        .as_ref()
        .is_none_or(|s| s.start_time.is_none());
    let (mut nt, mut ot) = (n.template.clone(), o.template.clone());
    if n.suspend == Some(true) && never_started {
        mask_scheduling_directives(&mut nt);
        mask_scheduling_directives(&mut ot);
    }
    if !semantic_eq(&nt, &ot) {
        errs.push(immutable(&sp.child("template"), bad_json(&n.template)));
    }
    let simple = [
        (
            "completionMode",
            n.completion_mode != o.completion_mode,
            bad_json(&n.completion_mode),
        ),
        (
            "podFailurePolicy",
            !semantic_eq(&n.pod_failure_policy, &o.pod_failure_policy),
            bad_json(&n.pod_failure_policy),
        ),
        (
            "backoffLimitPerIndex",
            n.backoff_limit_per_index != o.backoff_limit_per_index,
            bad_json(&n.backoff_limit_per_index),
        ),
        (
            "managedBy",
            n.managed_by != o.managed_by,
            bad_json(&n.managed_by),
        ),
    ];
    for (field, changed, bad) in simple {
        if changed {
            errs.push(immutable(&sp.child(field), bad));
        }
    }
    errs
}

/// Fields of a suspended, never-started Job's template that may change.
fn mask_scheduling_directives(t: &mut PodTemplateSpec) {
    if let Some(m) = t.metadata.as_mut() {
        m.labels = None;
        m.annotations = None;
    }
    if let Some(s) = t.spec.as_mut() {
        s.node_selector = None;
        s.tolerations = None;
        s.affinity = None;
        s.scheduling_gates = None;
    }
}

// ---- CronJob -------------------------------------------------------------------------------

impl ApiType for CronJob {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if spec.concurrency_policy.as_deref().unwrap_or("").is_empty() {
            spec.concurrency_policy = Some("Allow".into());
        }
        set(&mut spec.suspend, false);
        set(&mut spec.successful_jobs_history_limit, 3);
        set(&mut spec.failed_jobs_history_limit, 1);
        if let Some(js) = spec.job_template.spec.as_mut() {
            default_pod_template(&mut js.template);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let name = self.metadata.name.as_deref().unwrap_or("");
        if name.len() > 52 {
            errs.push(invalid(
                &Path::new("metadata").child("name"),
                name,
                "must be no more than 52 characters",
            ));
        }
        errs.extend(validate_cron_job_spec(
            &self.spec.clone().unwrap_or_default(),
            false,
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let old_tz = old.spec.as_ref().is_some_and(|s| s.schedule.contains("TZ"));
        errs.extend(validate_cron_job_spec(
            &self.spec.clone().unwrap_or_default(),
            old_tz,
        ));
        errs
    }
}

fn validate_cron_job_spec(spec: &CronJobSpec, allow_tz_in_schedule: bool) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let schp = sp.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(required(&schp, ""));
    } else {
        if let Err(e) = cron::parse(&spec.schedule) {
            errs.push(invalid(&schp, &spec.schedule, &e.to_string()));
        }
        let has_tz = spec.schedule.contains("TZ");
        if allow_tz_in_schedule && has_tz && spec.time_zone.is_some() {
            errs.push(invalid(
                &schp,
                &spec.schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz_in_schedule && has_tz {
            errs.push(invalid(
                &schp,
                &spec.schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(tz) = &spec.time_zone {
        errs.extend(validate_time_zone(tz, &sp.child("timeZone")));
    }
    if let Some(s) = spec.starting_deadline_seconds {
        errs.extend(non_negative(s, &sp.child("startingDeadlineSeconds")));
    }
    match spec.concurrency_policy.as_deref().unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required(&sp.child("concurrencyPolicy"), "")),
        other => errs.push(not_supported(
            &sp.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jp = sp.child("jobTemplate");
    let js = spec.job_template.spec.clone().unwrap_or_default();
    errs.extend(validate_job_spec_body(&js, &jp.child("spec")));
    if let Some(sel) = &js.selector {
        errs.push(invalid(
            &jp.child("spec").child("selector"),
            bad_selector(Some(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if js.manual_selector == Some(true) {
        errs.push(not_supported(
            &jp.child("spec").child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    for (field, v) in [
        (
            "successfulJobsHistoryLimit",
            spec.successful_jobs_history_limit,
        ),
        ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
    ] {
        if let Some(v) = v {
            errs.extend(non_negative(i64::from(v), &sp.child(field)));
        }
    }
    errs
}

/// Time-zone names must be explicit IANA names (checked by shape: no tz database here).
fn validate_time_zone(tz: &str, path: &Path) -> Vec<FieldError> {
    if tz.eq_ignore_ascii_case("local") {
        return vec![invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        )];
    }
    let plausible = !tz.is_empty()
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
        && !tz.starts_with('/')
        && !tz.contains("..");
    if plausible {
        vec![]
    } else {
        vec![invalid(path, tz, &format!("unknown time zone {tz}"))]
    }
}

#[cfg(test)]
mod tests;
