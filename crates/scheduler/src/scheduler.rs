//! The scheduling loop (upstream's `scheduleOne`): pop a pod, find a node on a snapshot, assume
//! it in the cache, and bind in the background while the next pod is scheduled. Failures become
//! a `FailedScheduling` event, a `PodScheduled=False` condition and a requeue whose place depends
//! on the status code; preemption nominates the pod and evicts the victims.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{PodRef, SchedulerEvent, SharedApi};
use crate::cache::Cache;
use crate::framework::{
    ClusterEvent, Code, CycleState, Framework, NominatedPods, PostFilterContext, PostFilterResult,
    QueuedPodInfo, Status,
};
use crate::podinfo::{PodInfo, pod_key};
use crate::queue::SchedulingQueue;
use crate::schedule::{Algorithm, ScheduleError};
use crate::snapshot::Snapshot;

/// Upstream's limit on event notes.
const NOTE_LENGTH_LIMIT: usize = 1024;
/// `PodScheduled` reason when the pod fits nowhere.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// `PodScheduled` reason when the scheduler failed.
pub const REASON_SCHEDULER_ERROR: &str = "SchedulerError";

/// Upstream's `truncateMessage`.
pub fn truncate_message(msg: &str) -> String {
    if msg.len() <= NOTE_LENGTH_LIMIT {
        return msg.to_owned();
    }
    let mut end = NOTE_LENGTH_LIMIT - 4;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &msg[..end])
}

/// What the scheduler shares with its binding tasks.
#[derive(Clone)]
pub struct Handles {
    /// The plugins.
    pub framework: Arc<Framework>,
    /// The cache.
    pub cache: Arc<Cache>,
    /// The queue.
    pub queue: Arc<SchedulingQueue>,
    /// The API.
    pub api: SharedApi,
    /// `spec.schedulerName` this scheduler serves.
    pub scheduler_name: String,
}

/// How a failed attempt is reported.
struct Failure {
    message: String,
    reason: &'static str,
    rejectors: std::collections::BTreeSet<&'static str>,
    /// `Some(node)` sets `status.nominatedNodeName` (`Some("")` clears it).
    nominate: Option<String>,
}

impl Handles {
    fn now() -> Value {
        serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
    }

    /// Records the failure (event, condition patch) and requeues the pod.
    fn fail(&self, mut qp: QueuedPodInfo, f: Failure) {
        let pod = Arc::clone(&qp.pod);
        self.api.record(SchedulerEvent {
            regarding: PodRef::of_info(&pod),
            related: None,
            warning: true,
            reason: "FailedScheduling",
            action: "Scheduling",
            note: truncate_message(&f.message),
        });
        if let Some(patch) = status_patch(&pod.pod, f.reason, &f.message, f.nominate.as_deref()) {
            let call = self.api.patch_pod_status(&PodRef::of_info(&pod), patch);
            tokio::spawn(async move {
                if let Err(e) = call.await {
                    tracing::debug!(pod = %pod_key(&pod.pod), error = %e, "updating PodScheduled condition failed");
                }
            });
        }
        qp.unschedulable_plugins = f.rejectors;
        self.queue.add_unschedulable(qp);
    }

    /// Carries out a preemption: nominate, clear lower nominations, evict the victims.
    fn preempt(&self, preemptor: &Arc<PodInfo>, result: &PostFilterResult) {
        let Some(node) = result.nominated_node.clone().filter(|n| !n.is_empty()) else {
            return;
        };
        self.queue.nominate(Arc::clone(preemptor), &node);
        for p in &result.clear_nominations {
            self.queue.nominate(Arc::clone(p), "");
            let call = self.api.patch_pod_status(
                &PodRef::of_info(p),
                json!({"status": {"nominatedNodeName": null}}),
            );
            tokio::spawn(async move {
                let _ = call.await;
            });
        }
        let victims: Vec<Arc<PodInfo>> = result
            .victims
            .iter()
            .filter(|v| !v.is_terminating())
            .cloned()
            .collect();
        let this = self.clone();
        let preemptor = Arc::clone(preemptor);
        tokio::spawn(async move {
            for v in victims {
                this.evict(&preemptor, &v, &node).await;
            }
        });
    }

    async fn evict(&self, preemptor: &PodInfo, victim: &PodInfo, node: &str) {
        let target = PodRef::of_info(victim);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{}: preempting to accommodate a higher priority pod", self.scheduler_name),
            "lastTransitionTime": Self::now(),
        }]}});
        if let Err(e) = self.api.patch_pod_status(&target, condition).await {
            if !e.is_not_found() {
                tracing::warn!(victim = %pod_key(&victim.pod), error = %e, "adding DisruptionTarget condition failed");
            }
            return;
        }
        if let Err(e) = self.api.delete_pod(&target).await {
            if !e.is_not_found() {
                tracing::warn!(victim = %pod_key(&victim.pod), error = %e, "deleting preemption victim failed");
            }
            return;
        }
        self.api.record(SchedulerEvent {
            regarding: target,
            related: Some(PodRef::of_info(preemptor)),
            warning: false,
            reason: "Preempted",
            action: "Preempting",
            note: format!("Preempted by pod {} on node {}", preemptor.uid, node),
        });
    }

    /// The binding cycle: Permit wait, PreBind, Bind, PostBind.
    async fn bind(
        self,
        qp: QueuedPodInfo,
        mut state: CycleState,
        assumed: Arc<PodInfo>,
        node: String,
        permit: (Status, std::time::Duration),
    ) {
        let fw = Arc::clone(&self.framework);
        let (permit_status, timeout) = permit;
        let mut status = if permit_status.code == Code::Wait {
            // No in-tree plugin waits; a waiting pod is rejected at its timeout.
            tokio::time::sleep(timeout).await;
            Status::unschedulable(format!(
                "rejected due to timeout after waiting {timeout:?} at plugin {}",
                permit_status.plugin
            ))
            .with_plugin(permit_status.plugin)
        } else {
            Status::success()
        };
        let mut phase = "Permit";
        if status.is_success() {
            phase = "PreBind";
            status = fw.run_pre_bind(&state, &assumed, &node).await;
        }
        if status.is_success() {
            phase = "Bind";
            status = fw.run_bind(&state, &assumed, &node).await;
        }
        if status.is_success() {
            fw.run_post_bind(&state, &assumed, &node);
            self.queue.done(&assumed.uid);
            self.api.record(SchedulerEvent {
                regarding: PodRef::of_info(&assumed),
                related: None,
                warning: false,
                reason: "Scheduled",
                action: "Binding",
                note: format!("Successfully assigned {} to {node}", pod_key(&assumed.pod)),
            });
            return;
        }
        fw.run_unreserve(&mut state, &assumed, &node);
        self.cache.forget_pod(&assumed.uid);
        self.queue.move_all(ClusterEvent::ASSIGNED_POD_DELETE);
        let message = match status.code {
            Code::Error => format!(
                "running {phase} plugin {:?}: {}",
                status.plugin,
                status.message()
            ),
            _ => status.message(),
        };
        let rejected = status.is_rejected();
        self.fail(
            qp,
            Failure {
                message,
                reason: if rejected {
                    REASON_UNSCHEDULABLE
                } else {
                    REASON_SCHEDULER_ERROR
                },
                rejectors: if rejected {
                    [status.plugin].into()
                } else {
                    Default::default()
                },
                nominate: None,
            },
        );
    }
}

/// The `pods/status` strategic merge patch setting `PodScheduled=False` and the nomination, or
/// `None` when the pod already shows exactly that (upstream's `updatePod`).
pub fn status_patch(
    pod: &Pod,
    reason: &str,
    message: &str,
    nominate: Option<&str>,
) -> Option<Value> {
    let status = pod.status.as_ref();
    let current = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let same = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    let current_nnn = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or_default();
    let nnn_changes = nominate.is_some_and(|n| n != current_nnn);
    if same && !nnn_changes {
        return None;
    }
    let mut patch = json!({"status": {}});
    if !same {
        let transition = match current {
            Some(c) if c.status == "False" => c
                .last_transition_time
                .clone()
                .map(|t| serde_json::to_value(t).unwrap_or(Value::Null)),
            _ => None,
        }
        .unwrap_or_else(Handles::now);
        patch["status"]["conditions"] = json!([{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]);
    }
    if let Some(n) = nominate.filter(|_| nnn_changes) {
        patch["status"]["nominatedNodeName"] = if n.is_empty() {
            Value::Null
        } else {
            Value::from(n)
        };
    }
    Some(patch)
}

/// The scheduling loop's state.
pub struct Scheduler {
    /// Shared parts.
    pub handles: Handles,
    /// The algorithm with its rotating start index.
    pub algorithm: Algorithm,
}

impl Scheduler {
    /// Schedules pods until `cancel` or until the queue closes.
    pub async fn run(mut self, cancel: CancellationToken) {
        let queue = Arc::clone(&self.handles.queue);
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return,
                qp = queue.pop() => qp,
            };
            let Some(qp) = next else {
                return;
            };
            self.schedule_one(qp);
            tokio::task::yield_now().await;
        }
    }

    /// One scheduling cycle; returns the binding task when the pod was assumed.
    pub fn schedule_one(&mut self, qp: QueuedPodInfo) -> Option<JoinHandle<()>> {
        let h = self.handles.clone();
        let pod = Arc::clone(&qp.pod);
        if pod.is_terminating() || h.cache.contains_pod(&pod.uid) {
            h.queue.done(&pod.uid);
            return None;
        }
        let snapshot = h.cache.snapshot();
        let nominated = h.queue.nominated_pods();
        let mut state = CycleState::new();
        match self
            .algorithm
            .schedule(&h.framework, &mut state, &pod, &snapshot, &nominated)
        {
            Ok(r) => self.assume_and_bind(qp, state, r.node),
            Err(e) => {
                self.handle_error(qp, &state, e, &snapshot, &nominated);
                None
            }
        }
    }

    fn handle_error(
        &self,
        qp: QueuedPodInfo,
        state: &CycleState,
        e: ScheduleError,
        snapshot: &Snapshot,
        nominated: &NominatedPods,
    ) {
        let h = &self.handles;
        let failure = match e {
            ScheduleError::NoNodes => Failure {
                message: "no nodes available to schedule pods".into(),
                reason: REASON_UNSCHEDULABLE,
                rejectors: Default::default(),
                nominate: Some(String::new()),
            },
            ScheduleError::Internal(s) => Failure {
                message: s.message(),
                reason: REASON_SCHEDULER_ERROR,
                rejectors: Default::default(),
                nominate: None,
            },
            ScheduleError::Fit(mut fit) => {
                let ctx = PostFilterContext {
                    framework: &h.framework,
                    snapshot,
                    nominated,
                };
                let (result, status) = h.framework.run_post_filter(
                    &ctx,
                    state,
                    &qp.pod,
                    &fit.diagnosis.node_to_status,
                );
                if status.code == Code::Error {
                    tracing::warn!(pod = %pod_key(&qp.pod.pod), error = %status.message(), "preemption failed");
                } else {
                    fit.diagnosis.post_filter_msg = status.message();
                }
                let nominate = result.as_ref().and_then(|r| r.nominated_node.clone());
                if let (Some(result), true) = (&result, status.is_success()) {
                    h.preempt(&qp.pod, result);
                }
                Failure {
                    message: fit.to_string(),
                    reason: REASON_UNSCHEDULABLE,
                    rejectors: fit.diagnosis.unschedulable_plugins,
                    nominate,
                }
            }
        };
        h.fail(qp, failure);
    }

    fn assume_and_bind(
        &mut self,
        qp: QueuedPodInfo,
        mut state: CycleState,
        node: String,
    ) -> Option<JoinHandle<()>> {
        let h = self.handles.clone();
        let assumed = match h.cache.assume_pod(&qp.pod, &node) {
            Ok(a) => a,
            Err(e) => {
                let failure = Failure {
                    message: e.to_string(),
                    reason: REASON_SCHEDULER_ERROR,
                    rejectors: Default::default(),
                    nominate: None,
                };
                h.fail(qp, failure);
                return None;
            }
        };
        h.queue.nominate(Arc::clone(&qp.pod), "");
        let reserve = h.framework.run_reserve(&mut state, &assumed, &node);
        let permit = if reserve.is_success() {
            h.framework.run_permit(&state, &assumed, &node)
        } else {
            (reserve, Default::default())
        };
        if !permit.0.is_success() && permit.0.code != Code::Wait {
            let status = permit.0;
            h.framework.run_unreserve(&mut state, &assumed, &node);
            h.cache.forget_pod(&assumed.uid);
            h.queue.move_all(ClusterEvent::ASSIGNED_POD_DELETE);
            let rejected = status.is_rejected();
            h.fail(
                qp,
                Failure {
                    message: status.message(),
                    reason: if rejected {
                        REASON_UNSCHEDULABLE
                    } else {
                        REASON_SCHEDULER_ERROR
                    },
                    rejectors: if rejected {
                        [status.plugin].into()
                    } else {
                        Default::default()
                    },
                    nominate: None,
                },
            );
            return None;
        }
        Some(tokio::spawn(h.bind(qp, state, assumed, node, permit)))
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
