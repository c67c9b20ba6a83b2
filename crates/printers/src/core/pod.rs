//! The pod printer: READY `n/m`, the STATUS reason logic (init progress, container waiting and
//! terminated reasons, Terminating, Unknown for lost nodes) and RESTARTS with the last restart's
//! age.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::TablePrinter;
use crate::descriptions::{
    POD_SPEC_NODE_NAME, POD_SPEC_READINESS_GATES, POD_STATUS_NOMINATED_NODE_NAME, POD_STATUS_POD_IP,
};
use crate::format::{
    age, age_column, arr_at, bool_at, col, int_at, is_deleting, name, name_column, obj_at, or_none,
    since, str_at, time_at, wide,
};

pub(crate) static POD: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        age_column(),
        wide("IP", "string", POD_STATUS_POD_IP),
        wide("Node", "string", POD_SPEC_NODE_NAME),
        wide("Nominated Node", "string", POD_STATUS_NOMINATED_NODE_NAME),
        wide("Readiness Gates", "string", POD_SPEC_READINESS_GATES),
    ],
    row: pod_row,
};

/// The reason kubelet gives a pod whose node stopped reporting.
const NODE_LOST: &str = "NodeLost";

fn pod_row(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let summary = Summary::of(pod);
    vec![
        name(pod),
        Value::from(format!("{}/{}", summary.ready, summary.total)),
        Value::from(summary.reason),
        Value::from(summary.restarts.text(now)),
        age(pod, now),
        Value::from(pod_ip(pod)),
        Value::from(or_none(str_at(pod, "/spec/nodeName"))),
        Value::from(or_none(str_at(pod, "/status/nominatedNodeName"))),
        Value::from(readiness_gates(pod)),
    ]
}

/// Restart count and the time of the latest restart (a container's last termination).
#[derive(Debug, Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<DateTime<Utc>>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, "/restartCount");
        let finished = time_at(status, "/lastState/terminated/finishedAt");
        if finished > self.last {
            self.last = finished;
        }
    }

    /// `5`, or `5 (3m ago)` when the last restart time is known.
    fn text(&self, now: DateTime<Utc>) -> String {
        match self.last {
            Some(t) if self.count != 0 => format!("{} ({} ago)", self.count, since(Some(t), now)),
            _ => self.count.to_string(),
        }
    }
}

/// What the pod row shows, computed as upstream's `printPod`.
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: Restarts,
}

impl Summary {
    fn of(pod: &Value) -> Self {
        let sidecars = restartable_init_containers(pod);
        let mut summary = Summary {
            ready: 0,
            total: arr_at(pod, "/spec/containers").len() + sidecars.len(),
            reason: initial_reason(pod),
            restarts: Restarts::default(),
        };
        let (initializing, sidecar_restarts) = summary.scan_init_containers(pod, &sidecars);
        if !initializing || condition_true(pod, "Initialized") {
            summary.restarts = sidecar_restarts;
            summary.scan_containers(pod);
        }
        summary.apply_deletion(pod);
        summary
    }

    /// Walks the init container statuses until the first one still initializing (or failed),
    /// which sets the reason. Returns whether the pod is initializing and the restarts of the
    /// restartable (sidecar) init containers.
    fn scan_init_containers(&mut self, pod: &Value, sidecars: &HashSet<&str>) -> (bool, Restarts) {
        let statuses = arr_at(pod, "/status/initContainerStatuses");
        let declared = arr_at(pod, "/spec/initContainers").len();
        let mut sidecar_restarts = Restarts::default();
        for (i, status) in statuses.iter().enumerate() {
            self.restarts.add(status);
            let is_sidecar = sidecars.contains(str_at(status, "/name"));
            if is_sidecar {
                sidecar_restarts.add(status);
            }
            let terminated = obj_at(status, "/state/terminated").is_some();
            if terminated && int_at(status, "/state/terminated/exitCode") == 0 {
                continue;
            }
            if is_sidecar && bool_at(status, "/started") {
                if bool_at(status, "/ready") {
                    self.ready += 1;
                }
                continue;
            }
            self.reason = init_reason(status, i, declared);
            return (true, sidecar_restarts);
        }
        (false, sidecar_restarts)
    }

    /// Walks the container statuses from last to first: the first container with a waiting or
    /// terminated reason gives the pod's reason; ready running containers are counted.
    fn scan_containers(&mut self, pod: &Value) {
        let mut has_running = false;
        for status in arr_at(pod, "/status/containerStatuses").iter().rev() {
            self.restarts.add(status);
            if let Some(reason) = container_reason(status) {
                self.reason = reason;
            } else if bool_at(status, "/ready") && obj_at(status, "/state/running").is_some() {
                has_running = true;
                self.ready += 1;
            }
        }
        if self.reason == "Completed" && has_running {
            self.reason = if condition_true(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    /// A pod being deleted shows `Terminating` (or `Unknown` when its node was lost).
    fn apply_deletion(&mut self, pod: &Value) {
        if !is_deleting(pod) {
            return;
        }
        if str_at(pod, "/status/reason") == NODE_LOST {
            self.reason = "Unknown".to_string();
        } else if !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
            self.reason = "Terminating".to_string();
        }
    }
}

/// The status reason before looking at containers: the pod's reason, else its phase;
/// `SchedulingGated` while scheduling gates hold it.
fn initial_reason(pod: &Value) -> String {
    let gated = arr_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated");
    if gated {
        return "SchedulingGated".to_string();
    }
    match str_at(pod, "/status/reason") {
        "" => str_at(pod, "/status/phase").to_string(),
        reason => reason.to_string(),
    }
}

/// The names of the init containers with `restartPolicy: Always` (sidecars).
fn restartable_init_containers(pod: &Value) -> HashSet<&str> {
    arr_at(pod, "/spec/initContainers")
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .map(|c| str_at(c, "/name"))
        .collect()
}

/// The reason shown for the `index`th init container, which has not completed.
fn init_reason(status: &Value, index: usize, declared: usize) -> String {
    if obj_at(status, "/state/terminated").is_some() {
        return match str_at(status, "/state/terminated/reason") {
            "" => format!("Init:{}", exit_text(status)),
            reason => format!("Init:{reason}"),
        };
    }
    match str_at(status, "/state/waiting/reason") {
        "" | "PodInitializing" => format!("Init:{index}/{declared}"),
        reason => format!("Init:{reason}"),
    }
}

/// `Signal:9` or `ExitCode:1` for a container terminated without a reason.
fn exit_text(status: &Value) -> String {
    match int_at(status, "/state/terminated/signal") {
        0 => format!("ExitCode:{}", int_at(status, "/state/terminated/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

/// The reason a container contributes: its waiting reason, its terminated reason, or its exit.
fn container_reason(status: &Value) -> Option<String> {
    let waiting = str_at(status, "/state/waiting/reason");
    if !waiting.is_empty() {
        return Some(waiting.to_string());
    }
    obj_at(status, "/state/terminated")?;
    match str_at(status, "/state/terminated/reason") {
        "" => Some(exit_text(status)),
        reason => Some(reason.to_string()),
    }
}

/// Whether the pod has the condition `type_` with status `True`.
fn condition_true(pod: &Value, type_: &str) -> bool {
    arr_at(pod, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == type_)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

/// The first pod IP, or `<none>`.
fn pod_ip(pod: &Value) -> String {
    let first = arr_at(pod, "/status/podIPs")
        .first()
        .map(|ip| str_at(ip, "/ip"))
        .unwrap_or_else(|| str_at(pod, "/status/podIP"));
    or_none(first)
}

/// `true/declared` readiness gates, or `<none>`.
fn readiness_gates(pod: &Value) -> String {
    let gates = arr_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let met = gates
        .iter()
        .filter(|g| condition_true(pod, str_at(g, "/conditionType")))
        .count();
    format!("{met}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::tests::{ago, columns, print};

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": ago(3600)},
               "spec": spec, "status": status})
    }

    fn two_containers() -> Value {
        json!({"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "proxy"}]})
    }

    fn running(name: &str) -> Value {
        json!({"name": name, "ready": true, "restartCount": 0,
               "state": {"running": {"startedAt": ago(3000)}}})
    }

    /// Only the READY, STATUS and RESTARTS cells.
    fn status_cells(p: &Value) -> Value {
        let row = print("", "pods", p);
        json!([row[1], row[2], row[3]])
    }

    #[test]
    fn columns_match_upstream() {
        assert_eq!(
            columns("", "pods"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
        );
    }

    #[test]
    fn crash_looping_container_with_recent_restarts() {
        let crashing = json!({"name": "app", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                         "finishedAt": ago(300)}}});
        let p = json!({
            "metadata": {"name": "web-1", "creationTimestamp": ago(2 * 3600 + 180)},
            "spec": two_containers(),
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                       "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [crashing, running("proxy")]}});
        assert_eq!(
            print("", "pods", &p),
            json!([
                "web-1",
                "1/2",
                "CrashLoopBackOff",
                "2 (5m ago)",
                "123m",
                "10.0.0.5",
                "node-a",
                "<none>",
                "<none>"
            ])
        );
    }

    #[test]
    fn terminating_pod() {
        let mut p = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Running", "containerStatuses": [running("app")]}),
        );
        p["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(status_cells(&p), json!(["1/1", "Terminating", "0"]));
    }

    #[test]
    fn deleted_pod_on_a_lost_node_is_unknown() {
        let mut p = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Running", "reason": "NodeLost",
                   "containerStatuses": [running("app")]}),
        );
        assert_eq!(status_cells(&p), json!(["1/1", "NodeLost", "0"]));
        p["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(status_cells(&p), json!(["1/1", "Unknown", "0"]));
    }

    #[test]
    fn completed_job_pod() {
        let done = json!({"name": "job", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                     "finishedAt": ago(60)}}});
        let mut p = pod(
            json!({"containers": [{"name": "job"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [done]}),
        );
        assert_eq!(status_cells(&p), json!(["0/1", "Completed", "0"]));
        // A finished pod being deleted keeps its final status.
        p["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(status_cells(&p), json!(["0/1", "Completed", "0"]));
    }

    #[test]
    fn container_terminated_without_reason_shows_signal_or_exit_code() {
        let killed = json!({"name": "app", "state": {"terminated": {"exitCode": 137,
                                                                    "signal": 9}}});
        let p = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Failed", "containerStatuses": [killed]}),
        );
        assert_eq!(status_cells(&p), json!(["0/1", "Signal:9", "0"]));
        let exited = json!({"name": "app", "state": {"terminated": {"exitCode": 2}}});
        let p = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Failed", "containerStatuses": [exited]}),
        );
        assert_eq!(status_cells(&p), json!(["0/1", "ExitCode:2", "0"]));
    }

    #[test]
    fn completed_container_beside_a_running_one() {
        let done = json!({"name": "app", "state": {"terminated": {"exitCode": 0,
                                                                 "reason": "Completed"}}});
        let status = |ready: &str| {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}],
                   "containerStatuses": [done, running("proxy")]})
        };
        let p = pod(two_containers(), status("True"));
        assert_eq!(status_cells(&p), json!(["1/2", "Running", "0"]));
        let p = pod(two_containers(), status("False"));
        assert_eq!(status_cells(&p), json!(["1/2", "NotReady", "0"]));
    }

    #[test]
    fn init_containers_in_progress_and_failing() {
        let spec = json!({"initContainers": [{"name": "a"}, {"name": "b"}],
                          "containers": [{"name": "app"}]});
        let done = json!({"name": "a", "restartCount": 0,
                          "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let waiting = |reason: &str| {
            json!({"name": "b", "restartCount": 3, "state": {"waiting": {"reason": reason}},
                   "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}}})
        };
        let app = json!({"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}});
        let cases = [
            (waiting("PodInitializing"), "Init:1/2"),
            (waiting("CrashLoopBackOff"), "Init:CrashLoopBackOff"),
            (
                json!({"name": "b", "restartCount": 3,
                       "state": {"terminated": {"exitCode": 3}},
                       "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}}}),
                "Init:ExitCode:3",
            ),
            (
                json!({"name": "b", "restartCount": 3,
                       "state": {"terminated": {"exitCode": 1, "reason": "OOMKilled"}},
                       "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}}}),
                "Init:OOMKilled",
            ),
        ];
        for (second, want) in cases {
            let p = pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [done, second],
                       "containerStatuses": [app]}),
            );
            assert_eq!(
                status_cells(&p),
                json!(["0/1", want, "3 (90s ago)"]),
                "{want}"
            );
        }
    }

    #[test]
    fn sidecar_init_container_counts_as_a_container() {
        let spec = json!({"initContainers": [{"name": "mesh", "restartPolicy": "Always"}],
                          "containers": [{"name": "app"}]});
        let mesh = json!({"name": "mesh", "ready": true, "started": true, "restartCount": 1,
                          "state": {"running": {}},
                          "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}});
        let p = pod(
            spec,
            json!({"phase": "Running",
                   "conditions": [{"type": "Initialized", "status": "True"}],
                   "initContainerStatuses": [mesh], "containerStatuses": [running("app")]}),
        );
        assert_eq!(status_cells(&p), json!(["2/2", "Running", "1 (10m ago)"]));
    }

    #[test]
    fn scheduling_gated_pending_pod() {
        let p = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(status_cells(&p), json!(["0/1", "SchedulingGated", "0"]));
    }

    #[test]
    fn evicted_pod_shows_its_reason() {
        let p = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Failed", "reason": "Evicted"}),
        );
        assert_eq!(status_cells(&p), json!(["0/1", "Evicted", "0"]));
    }

    #[test]
    fn wide_cells() {
        let p = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(30)},
            "spec": {"containers": [{"name": "app"}],
                     "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
            "status": {"phase": "Pending", "podIP": "10.1.0.9", "nominatedNodeName": "n2",
                       "conditions": [{"type": "a", "status": "True"},
                                      {"type": "b", "status": "False"}]}});
        assert_eq!(
            print("", "pods", &p),
            json!([
                "web", "0/1", "Pending", "0", "30s", "10.1.0.9", "<none>", "n2", "1/2"
            ])
        );
    }

    #[test]
    fn empty_pod() {
        assert_eq!(
            print("", "pods", &json!({})),
            json!([
                "",
                "0/0",
                "",
                "0",
                "<unknown>",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ])
        );
    }
}
