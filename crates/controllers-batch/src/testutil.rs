//! Test builders for Jobs, their pods and CronJobs.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::job::pods::{COMPLETION_INDEX, TRACKING_FINALIZER};

/// `2024-01-01T00:00:00Z` plus `secs`.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_704_067_200 + secs).expect("timestamp")
}

pub struct JobBuilder(Value);

impl JobBuilder {
    pub fn new(name: &str) -> JobBuilder {
        JobBuilder(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "1",
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 6,
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "busybox"}]}}},
        }))
    }

    pub fn spec(mut self, key: &str, value: Value) -> Self {
        self.0["spec"][key] = value;
        self
    }

    pub fn status(mut self, status: Value) -> Self {
        self.0["status"] = status;
        self
    }

    pub fn build(self) -> Job {
        serde_json::from_value(self.0).expect("job fixture")
    }
}

pub struct PodBuilder(Value);

impl PodBuilder {
    /// A running, ready pod of `job`, tracked by the finalizer.
    pub fn of(job: &Job, name: &str) -> PodBuilder {
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        PodBuilder(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2024-01-01T00:00:00Z",
                         "finalizers": [TRACKING_FINALIZER],
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                              "name": job_name, "uid": uid, "controller": true}]},
            "spec": {"nodeName": "node-1", "restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }

    pub fn index(mut self, i: i32) -> Self {
        self.0["metadata"]["annotations"][COMPLETION_INDEX] = json!(i.to_string());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = json!(value);
        self
    }

    /// Ended with `code` at `finished` (`Succeeded` when 0).
    pub fn exited(mut self, code: i32, finished: Timestamp) -> Self {
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        self.0["status"] = json!({
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false,
                                   "restartCount": 0,
                                   "state": {"terminated": {"exitCode": code,
                                                            "finishedAt": finished.to_string()}}}],
        });
        self
    }

    pub fn condition(mut self, type_: &str) -> Self {
        if let Some(list) = self.0["status"]["conditions"].as_array_mut() {
            list.push(json!({"type": type_, "status": "True"}));
        }
        self
    }

    pub fn untracked(mut self) -> Self {
        self.0["metadata"]["finalizers"] = json!([]);
        self
    }

    pub fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:30Z");
        self
    }

    pub fn build(self) -> Pod {
        serde_json::from_value(self.0).expect("pod fixture")
    }
}

pub struct CronJobBuilder(Value);

impl CronJobBuilder {
    pub fn new(name: &str, schedule: &str) -> CronJobBuilder {
        CronJobBuilder(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "1",
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"schedule": schedule,
                     "jobTemplate": {"spec": {"template": {"spec": {
                         "restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox"}]}}}}},
        }))
    }

    pub fn spec(mut self, key: &str, value: Value) -> Self {
        self.0["spec"][key] = value;
        self
    }

    pub fn status(mut self, status: Value) -> Self {
        self.0["status"] = status;
        self
    }

    pub fn build(self) -> CronJob {
        serde_json::from_value(self.0).expect("cronjob fixture")
    }
}

/// A Job created by `cj` for the schedule time `scheduled`.
pub fn cron_child(cj: &CronJob, scheduled: Timestamp, finished: Option<&str>) -> Job {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let minutes = scheduled.as_second() / 60;
    let mut job = json!({
        "metadata": {"name": format!("{name}-{minutes}"), "namespace": "default",
                     "uid": format!("uid-{name}-{minutes}"),
                     "creationTimestamp": scheduled.to_string(),
                     "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp":
                                     scheduled.to_string()},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                          "name": name, "uid": cj.metadata.uid.clone(),
                                          "controller": true}]},
        "spec": {"template": {"spec": {"containers": []}}},
    });
    if let Some(type_) = finished {
        job["status"] = json!({"conditions": [{"type": type_, "status": "True",
                                               "lastTransitionTime": scheduled.to_string()}],
                               "completionTime": scheduled.to_string()});
    }
    serde_json::from_value(job).expect("job fixture")
}
