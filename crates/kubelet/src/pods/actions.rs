//! The decision of one sync, as upstream's `computePodActions`: from the pod's spec and its
//! state in the runtime, what to kill and what to start. A pure function; the worker executes.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::runtime::{RuntimeContainer, RuntimePod, State};
use super::spec::container_hash;
use crate::backoff::Backoff;
use crate::cri::labels;

/// Which list of the spec a container is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Init,
    Regular,
}

/// A container of the spec: its list and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: Kind,
    pub index: usize,
}

/// A container to stop, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    pub reason: String,
}

/// What one sync does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and sandbox of the pod (before a new sandbox, or for good).
    pub kill_pod: bool,
    /// Make a new sandbox (with this attempt number) and start from there.
    pub create_sandbox: Option<u32>,
    /// The sandbox to start containers in, when not creating one.
    pub sandbox_id: Option<String>,
    /// Containers to start, in order.
    pub start: Vec<Target>,
    /// Containers to stop.
    pub kill: Vec<Kill>,
    /// Containers held back by crash-loop back-off: name and time left.
    pub backoff: Vec<(String, Duration)>,
    /// An init container failed and will not be restarted: the pod fails.
    pub init_failed: bool,
}

/// What the probes say, by container ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeView {
    pub liveness_failed: HashSet<String>,
    pub startup_failed: HashSet<String>,
    /// Containers whose startup probe passed (or that have none and are running).
    pub started: HashSet<String>,
    pub ready: HashSet<String>,
}

/// The pod's restart policy (default Always).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The back-off key of a pod's container.
pub fn backoff_key(uid: &str, name: &str) -> String {
    format!("{uid}/{name}")
}

/// Upstream's `ShouldContainerBeRestarted` for an exited container.
fn should_restart(policy: &str, c: &RuntimeContainer) -> bool {
    match c.state {
        State::Running => false,
        State::Created | State::Unknown => true,
        State::Exited => match policy {
            "Never" => false,
            "OnFailure" => c.exit_code != 0,
            _ => true,
        },
    }
}

fn time_of(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

struct Ctx<'a> {
    uid: &'a str,
    now: DateTime<Utc>,
    backoff: &'a Backoff,
    probes: &'a ProbeView,
}

impl Ctx<'_> {
    /// Start `target` now or record its back-off.
    fn restart(&self, a: &mut PodActions, target: Target, last: &RuntimeContainer) {
        let since = time_of(last.finished_at.max(last.created_at));
        let key = backoff_key(self.uid, &last.name);
        match self.backoff.remaining(&key, since, self.now) {
            Some(left) => a.backoff.push((last.name.clone(), left)),
            None => a.start.push(target),
        }
    }
}

fn kill(c: &RuntimeContainer, reason: &str) -> Kill {
    Kill {
        id: c.id.clone(),
        name: c.name.clone(),
        reason: reason.to_string(),
    }
}

/// What to do for `pod` given its runtime state, at `now`.
pub fn compute(
    pod: &Pod,
    rt: &RuntimePod,
    backoff: &Backoff,
    probes: &ProbeView,
    now: DateTime<Utc>,
) -> PodActions {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let ctx = Ctx {
        uid,
        now,
        backoff,
        probes,
    };
    let mut a = PodActions::default();
    let Some(spec) = pod.spec.as_ref() else {
        return a;
    };
    let policy = restart_policy(pod);
    let Some(sandbox) = rt.ready_sandbox() else {
        return new_sandbox(pod, rt, policy);
    };
    a.sandbox_id = Some(sandbox.id.clone());
    let sid = sandbox.id.as_str();
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    if !init_phase(&ctx, &mut a, rt, sid, inits, policy) {
        return a;
    }
    for (index, c) in spec.containers.iter().enumerate() {
        let target = Target {
            kind: Kind::Regular,
            index,
        };
        match rt.latest_in(sid, &c.name) {
            None => a.start.push(target),
            Some(rc) if rc.state == State::Running => {
                let hash = rc.annotations.get(labels::CONTAINER_HASH);
                if hash.is_some_and(|h| *h != container_hash(c)) {
                    a.kill.push(kill(rc, "definition changed"));
                    a.start.push(target);
                } else if probes.liveness_failed.contains(&rc.id) {
                    a.kill.push(kill(rc, "liveness probe failed"));
                } else if probes.startup_failed.contains(&rc.id) {
                    a.kill.push(kill(rc, "startup probe failed"));
                }
            }
            Some(rc) if should_restart(policy, rc) => ctx.restart(&mut a, target, rc),
            Some(_) => {}
        }
    }
    let nothing_left = a.start.is_empty()
        && a.backoff.is_empty()
        && !rt.containers.iter().any(|c| {
            c.sandbox_id == sid && c.state == State::Running && !is_sidecar_name(pod, &c.name)
        });
    if nothing_left && policy != "Always" {
        // Every container has exited for good: the pod is done, stop its sandbox.
        a.kill_pod = true;
    }
    a
}

fn is_sidecar_name(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == name && is_sidecar(c)))
}

/// No ready sandbox: kill what is left and start over, unless a `Never` pod already ran.
fn new_sandbox(pod: &Pod, rt: &RuntimePod, policy: &str) -> PodActions {
    let mut a = PodActions {
        kill_pod: rt.running().next().is_some(),
        ..Default::default()
    };
    let Some(spec) = pod.spec.as_ref() else {
        return a;
    };
    let all_succeeded = spec.containers.iter().all(|c| {
        rt.latest(&c.name)
            .is_some_and(|rc| rc.state == State::Exited && rc.exit_code == 0)
    });
    if (policy == "Never" && !rt.containers.is_empty()) || (policy == "OnFailure" && all_succeeded)
    {
        return a;
    }
    let attempt = rt
        .sandboxes
        .iter()
        .map(|s| s.attempt + 1)
        .max()
        .unwrap_or(0);
    a.create_sandbox = Some(attempt);
    if spec.init_containers.as_ref().is_some_and(|v| !v.is_empty()) {
        a.start.push(Target {
            kind: Kind::Init,
            index: 0,
        });
    } else {
        a.start
            .extend((0..spec.containers.len()).map(|index| Target {
                kind: Kind::Regular,
                index,
            }));
    }
    a
}

/// Steps through the init containers in order; `true` when all are done (or, for sidecars,
/// started) so that the regular containers may run.
fn init_phase(
    ctx: &Ctx,
    a: &mut PodActions,
    rt: &RuntimePod,
    sid: &str,
    inits: &[Container],
    policy: &str,
) -> bool {
    for (index, c) in inits.iter().enumerate() {
        let target = Target {
            kind: Kind::Init,
            index,
        };
        let Some(rc) = rt.latest_in(sid, &c.name) else {
            a.start.push(target);
            return false;
        };
        if is_sidecar(c) {
            match rc.state {
                State::Running if ctx.probes.startup_failed.contains(&rc.id) => {
                    a.kill.push(kill(rc, "startup probe failed"));
                    return false;
                }
                State::Running if ctx.probes.liveness_failed.contains(&rc.id) => {
                    a.kill.push(kill(rc, "liveness probe failed"));
                    return false;
                }
                State::Running if ctx.probes.started.contains(&rc.id) => continue,
                State::Running => return false,
                _ => {
                    ctx.restart(a, target, rc);
                    return false;
                }
            }
        }
        match rc.state {
            State::Exited if rc.exit_code == 0 => continue,
            State::Exited if policy == "Never" => {
                a.init_failed = true;
                a.kill_pod = true;
                return false;
            }
            State::Running => return false,
            _ => {
                ctx.restart(a, target, rc);
                return false;
            }
        }
    }
    true
}
