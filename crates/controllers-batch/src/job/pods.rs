//! What the Job controller reads of its pods, and the pods it creates from the template.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The completion index of an Indexed Job's pod (annotation and label).
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// How many times the pod's index failed before (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The env var a pod's index is exposed as.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Where a pod is in its life, for the Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not terminal and not being deleted.
    Active,
    /// Being deleted, not terminal.
    Terminating,
    Succeeded,
    Failed,
}

/// A pod as the Job controller sees it.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    pub pod: &'a Pod,
    pub name: &'a str,
    pub uid: &'a str,
    pub state: State,
    pub ready: bool,
    pub tracked: bool,
    pub index: Option<i32>,
    /// When it finished (or started being deleted).
    pub finished_at: Option<Timestamp>,
    /// `INDEX_FAILURE_COUNT` of the pod.
    pub index_failures: i32,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Upstream's `isPodFailed`: a pod being deleted counts as failed unless the Job waits for
/// terminal phases (a pod failure policy, or `podReplacementPolicy: Failed`).
fn state_of(pod: &Pod, waits_for_terminal: bool) -> State {
    match phase(pod) {
        "Succeeded" => State::Succeeded,
        "Failed" => State::Failed,
        _ if pod.metadata.deletion_timestamp.is_some() => {
            if waits_for_terminal {
                State::Terminating
            } else {
                State::Failed
            }
        }
        _ => State::Active,
    }
}

/// Classifies `pod` for `job`.
pub fn view<'a>(pod: &'a Pod, job: &Job) -> PodView<'a> {
    let spec = job.spec.as_ref();
    let waits = spec.is_some_and(|s| {
        s.pod_failure_policy.is_some() || s.pod_replacement_policy.as_deref() == Some("Failed")
    });
    let state = state_of(pod, waits);
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let annotation = |key: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(|v| v.parse::<i32>().ok())
    };
    PodView {
        pod,
        name: pod.metadata.name.as_deref().unwrap_or_default(),
        uid: pod.metadata.uid.as_deref().unwrap_or_default(),
        state,
        ready,
        tracked: pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == TRACKING_FINALIZER),
        index: annotation(COMPLETION_INDEX).filter(|i| *i >= 0),
        finished_at: finished_at(pod),
        index_failures: annotation(INDEX_FAILURE_COUNT).unwrap_or(0).max(0),
    }
}

fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_ref());
    let latest = containers
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    latest.or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

/// Whether `pod` is controlled by `job`.
pub fn owned_by(pod: &Pod, job_uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == job_uid)
}

/// The pod the Job creates (for `index` when Indexed), upstream's `GetPodFromTemplate` plus
/// the Job's labels, annotations and finalizer.
pub fn new_pod(job: &Job, index: Option<i32>, index_failures: i32) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    for (key, value) in [
        (CONTROLLER_UID_LABEL, &uid),
        (JOB_NAME_LABEL, &name),
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (LEGACY_JOB_NAME_LABEL, &name),
    ] {
        labels.entry(key.into()).or_insert_with(|| value.clone());
    }
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let generate_name = match index {
        Some(i) => {
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            if has_per_index_limit(job) {
                annotations.insert(INDEX_FAILURE_COUNT.into(), index_failures.to_string());
            }
            add_index_env(&mut spec);
            if spec.hostname.as_deref().is_none_or(str::is_empty) {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether the Job limits failures per index.
pub fn has_per_index_limit(job: &Job) -> bool {
    job.spec
        .as_ref()
        .is_some_and(|s| s.backoff_limit_per_index.is_some())
}

/// Upstream's `addCompletionIndexEnvVariables`: every container (and init container) gets
/// `JOB_COMPLETION_INDEX` from the pod's index annotation.
fn add_index_env(spec: &mut PodSpec) {
    let var = EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    };
    let inits = spec.init_containers.iter_mut().flatten();
    for container in spec.containers.iter_mut().chain(inits) {
        let env = container.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.name == INDEX_ENV) {
            env.push(var.clone());
        }
    }
}

/// Exit codes of the pod's terminated containers (name, code).
pub fn exit_codes(pod: &Pod) -> Vec<(String, i32)> {
    let status = pod.status.as_ref();
    let mut out = Vec::new();
    let lists = [
        status.and_then(|s| s.init_container_statuses.as_ref()),
        status.and_then(|s| s.container_statuses.as_ref()),
    ];
    for list in lists.into_iter().flatten() {
        for c in list {
            if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
                out.push((c.name.clone(), t.exit_code));
            }
        }
    }
    out
}

/// The pod's conditions as (type, status).
pub fn conditions(pod: &Pod) -> BTreeMap<String, String> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect()
}
