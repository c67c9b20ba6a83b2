//! The pod's status from its runtime state, as upstream's `generateAPIPodStatus` and
//! `getPhase`: phase, conditions, container statuses, IPs. A pure function.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::actions::{ProbeView, is_sidecar, restart_policy};
use super::qos::qos_class;
use super::runtime::{RuntimeContainer, RuntimePod, State};
use crate::node::to_ts;

/// What a sync learned besides the runtime state.
#[derive(Clone, Debug, Default)]
pub struct StatusInput<'a> {
    /// Waiting reasons and messages from the last sync, by container name (`ErrImagePull`,
    /// `CrashLoopBackOff`, `CreateContainerConfigError`, ...).
    pub waiting: HashMap<String, (String, String)>,
    /// Termination messages by container ID.
    pub messages: HashMap<String, String>,
    /// The runtime's name, the scheme of container IDs (`containerd`).
    pub runtime_name: &'a str,
    pub node_ip: &'a str,
    /// When the kubelet first saw the pod, if the pod's status does not say yet.
    pub start_time: Option<Time>,
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Time(to_ts(DateTime::from_timestamp_nanos(nanos))))
}

fn terminated(c: &RuntimeContainer, input: &StatusInput) -> ContainerState {
    let reason = match (c.reason.as_str(), c.exit_code) {
        ("", 0) => "Completed".to_string(),
        ("", _) => "Error".to_string(),
        (r, _) => r.to_string(),
    };
    let message = input
        .messages
        .get(&c.id)
        .cloned()
        .or_else(|| (!c.message.is_empty()).then(|| c.message.clone()));
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: c.exit_code,
            reason: Some(reason),
            message,
            started_at: time(c.started_at),
            finished_at: time(c.finished_at),
            container_id: Some(format!("{}://{}", input.runtime_name, c.id)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    }
}

fn container_status(
    spec: &Container,
    rt: &RuntimePod,
    probes: &ProbeView,
    input: &StatusInput,
    default_reason: &str,
) -> ContainerStatus {
    let latest = rt.latest(&spec.name);
    let override_ = input.waiting.get(&spec.name);
    let previous = rt
        .previous(&spec.name)
        .map(|p| terminated(p, input))
        .filter(|_| latest.is_some());
    let (state, last_state) = match (latest, override_) {
        (Some(c), _) if c.state == State::Running => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(c.started_at),
                }),
                ..Default::default()
            },
            previous,
        ),
        (Some(c), Some((r, m))) => (waiting(r, m), Some(terminated(c, input))),
        (Some(c), None) if c.state == State::Created => (waiting(default_reason, ""), previous),
        (Some(c), None) => (terminated(c, input), previous),
        (None, Some((r, m))) => (waiting(r, m), None),
        (None, None) => (waiting(default_reason, ""), None),
    };
    let running = latest.filter(|c| c.state == State::Running);
    ContainerStatus {
        name: spec.name.clone(),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready: running.is_some_and(|c| probes.ready.contains(&c.id)),
        started: Some(running.is_some_and(|c| probes.started.contains(&c.id))),
        restart_count: latest.map_or(0, |c| i32::try_from(c.attempt).unwrap_or(i32::MAX)),
        image: spec.image.clone().unwrap_or_default(),
        image_id: latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|c| format!("{}://{}", input.runtime_name, c.id)),
        ..Default::default()
    }
}

fn term(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref()?.terminated.as_ref()
}

fn last_term(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref()?.terminated.as_ref()
}

fn is_waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

/// Init containers not yet done (sidecars: not yet started), and whether one failed.
fn init_progress(inits: &[Container], statuses: &[ContainerStatus]) -> (Vec<String>, bool) {
    let mut pending = Vec::new();
    let mut failed = false;
    for (c, s) in inits.iter().zip(statuses) {
        if is_sidecar(c) {
            if s.started != Some(true) {
                pending.push(c.name.clone());
            }
            continue;
        }
        match (term(s), last_term(s)) {
            (Some(t), _) if t.exit_code == 0 => {}
            (Some(_), _) => {
                failed = true;
                pending.push(c.name.clone());
            }
            (None, Some(t)) if is_waiting(s) && t.exit_code != 0 => {
                failed = true;
                pending.push(c.name.clone());
            }
            _ => pending.push(c.name.clone()),
        }
    }
    (pending, failed)
}

/// Upstream's `getPhase`.
pub fn phase(pod: &Pod, inits: &[ContainerStatus], containers: &[ContainerStatus]) -> String {
    let policy = restart_policy(pod);
    let spec_inits = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let (pending, failed) = init_progress(spec_inits, inits);
    if failed && policy == "Never" {
        return "Failed".into();
    }
    if !pending.is_empty() {
        return "Pending".into();
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            succeeded += usize::from(t.exit_code == 0);
        } else if let Some(t) = last_term(s) {
            stopped += 1;
            succeeded += usize::from(t.exit_code == 0);
        } else {
            waiting += 1;
        }
    }
    let phase = if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    };
    phase.into()
}

fn condition(kind: &str, ok: bool, reason: &str, message: String) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: (!ok && !reason.is_empty()).then(|| reason.to_string()),
        message: (!ok && !message.is_empty()).then_some(message),
        ..Default::default()
    }
}

fn names(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

fn conditions(
    pod: &Pod,
    phase: &str,
    sandbox_ready: bool,
    pending_init: &[String],
    containers: &[ContainerStatus],
) -> Vec<PodCondition> {
    let unready: Vec<String> = containers
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let done = phase == "Succeeded";
    let ready_reason = if done {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let ready_msg = if done {
        String::new()
    } else {
        format!("containers with unready status: {}", names(&unready))
    };
    let init_msg = format!("containers with incomplete status: {}", names(pending_init));
    let init_ok = pending_init.is_empty() || done;
    let mut out = vec![
        condition(
            "PodReadyToStartContainers",
            sandbox_ready,
            "",
            String::new(),
        ),
        condition("Initialized", init_ok, "ContainersNotInitialized", init_msg),
        condition(
            "Ready",
            unready.is_empty() && !done,
            ready_reason,
            ready_msg.clone(),
        ),
        condition(
            "ContainersReady",
            unready.is_empty() && !done,
            ready_reason,
            ready_msg,
        ),
    ];
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .cloned()
        .unwrap_or_else(|| condition("PodScheduled", true, "", String::new()));
    out.push(scheduled);
    out
}

/// Keeps `lastTransitionTime` of conditions whose status did not change; stamps the others.
fn stamp(conds: &mut [PodCondition], previous: &[PodCondition], now: DateTime<Utc>) {
    for c in conds.iter_mut() {
        if c.last_transition_time.is_some() {
            continue;
        }
        c.last_transition_time = match previous.iter().find(|p| p.type_ == c.type_) {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(Time(to_ts(now))),
        };
    }
}

/// The pod's status at `now`.
pub fn pod_status(
    pod: &Pod,
    rt: &RuntimePod,
    probes: &ProbeView,
    input: &StatusInput,
    now: DateTime<Utc>,
) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let default_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let status_of = |c: &Container| container_status(c, rt, probes, input, default_reason);
    let init_statuses: Vec<ContainerStatus> = inits.iter().map(status_of).collect();
    let statuses: Vec<ContainerStatus> = spec.containers.iter().map(status_of).collect();
    let mut phase = phase(pod, &init_statuses, &statuses);
    if matches!(old.phase.as_deref(), Some("Succeeded" | "Failed")) {
        phase = old.phase.clone().unwrap_or_default();
    }
    let (pending, _) = init_progress(&inits, &init_statuses);
    let sandbox = rt.ready_sandbox();
    let host_network = spec.host_network == Some(true);
    let mut conds = conditions(pod, &phase, sandbox.is_some(), &pending, &statuses);
    stamp(
        &mut conds,
        old.conditions.as_deref().unwrap_or_default(),
        now,
    );
    let ips: Vec<String> = match sandbox {
        Some(_) if host_network => vec![input.node_ip.to_string()],
        Some(s) => s.ips.clone(),
        None => old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect(),
    };
    PodStatus {
        phase: Some(phase),
        conditions: Some(conds),
        host_ip: Some(input.node_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: input.node_ip.to_string(),
        }]),
        pod_ip: ips.first().cloned(),
        pod_ips: (!ips.is_empty()).then(|| ips.into_iter().map(|ip| PodIP { ip }).collect()),
        start_time: old
            .start_time
            .clone()
            .or_else(|| input.start_time.clone())
            .or_else(|| Some(Time(to_ts(now)))),
        qos_class: Some(qos_class(pod).to_string()),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        reason: old.reason.clone(),
        message: old.message.clone(),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

/// The status with conditions' times blanked: whether a write is due.
pub fn comparable(status: &PodStatus) -> PodStatus {
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_transition_time = None;
        c.last_probe_time = None;
    }
    s
}
