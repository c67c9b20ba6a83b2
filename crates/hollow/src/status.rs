//! What a hollow kubelet reports for a pod: the fake run of its containers ([`PodRun`]) and the
//! `status` a real kubelet would write for it, running, restarted or exited. No IO.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::images;
use crate::node::time;

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub container_id: String,
}

impl Terminated {
    fn reason(&self) -> &'static str {
        if self.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }

    fn to_json(&self) -> Value {
        json!({"exitCode": self.exit_code, "reason": self.reason(),
               "startedAt": time(self.started_at), "finishedAt": time(self.finished_at),
               "containerID": self.container_id})
    }
}

/// One container of the fake run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub container_id: String,
    pub started_at: DateTime<Utc>,
    pub restart_count: i32,
    /// Set once the container has exited for good.
    pub terminated: Option<Terminated>,
    /// The previous run, after a restart.
    pub last: Option<Terminated>,
}

impl ContainerRun {
    fn start(name: &str, image: &str, now: DateTime<Utc>) -> ContainerRun {
        ContainerRun {
            name: name.to_string(),
            image: image.to_string(),
            container_id: container_id(),
            started_at: now,
            restart_count: 0,
            terminated: None,
            last: None,
        }
    }

    fn end(&self, exit_code: i32, now: DateTime<Utc>) -> Terminated {
        Terminated {
            exit_code,
            started_at: self.started_at,
            finished_at: now,
            container_id: self.container_id.clone(),
        }
    }

    fn to_json(&self) -> Value {
        let running = self.terminated.is_none();
        let state = match &self.terminated {
            None => json!({"running": {"startedAt": time(self.started_at)}}),
            Some(t) => json!({"terminated": t.to_json()}),
        };
        let last = match &self.last {
            None => json!({}),
            Some(t) => json!({"terminated": t.to_json()}),
        };
        json!({"name": self.name, "image": images::normalize(&self.image),
               "imageID": images::image_id(&self.image), "containerID": self.container_id,
               "ready": running, "started": running, "restartCount": self.restart_count,
               "state": state, "lastState": last})
    }
}

/// `containerd://` and 64 random hex digits.
pub fn container_id() -> String {
    let words: [u64; 4] = rand::random();
    let hex: String = words.iter().map(|w| format!("{w:016x}")).collect();
    format!("containerd://{hex}")
}

/// An init container: a sidecar (restartPolicy Always) keeps running, the others ran to
/// completion before the pod's containers started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitRun {
    pub run: ContainerRun,
    pub sidecar: bool,
}

/// What a hollow kubelet needs of a pod's spec, taken when it first sees the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodShape {
    /// Name and image of each container.
    pub containers: Vec<(String, String)>,
    /// Name, image and whether it is a sidecar (restartPolicy Always), of each init container.
    pub init_containers: Vec<(String, String, bool)>,
    pub host_network: bool,
    /// `Always`, `OnFailure` or `Never`.
    pub restart_policy: String,
    /// When the scheduler's binding set `PodScheduled`, if it did.
    pub scheduled_at: Option<DateTime<Utc>>,
}

impl PodShape {
    pub fn of(pod: &Pod) -> PodShape {
        let Some(spec) = pod.spec.as_ref() else {
            return PodShape::default();
        };
        let image = |c: &k8s_openapi::api::core::v1::Container| {
            (c.name.clone(), c.image.clone().unwrap_or_default())
        };
        PodShape {
            containers: spec.containers.iter().map(image).collect(),
            init_containers: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| {
                    let (name, image) = image(c);
                    (name, image, c.restart_policy.as_deref() == Some("Always"))
                })
                .collect(),
            host_network: spec.host_network == Some(true),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            scheduled_at: scheduled_at(pod),
        }
    }

    /// Whether containers that exited with `exit_code` start again.
    pub fn restarts_after(&self, exit_code: i32) -> bool {
        match self.restart_policy.as_str() {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => true,
        }
    }
}

/// The fake run of a pod's containers on a hollow node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRun {
    pub host_ip: Ipv4Addr,
    pub pod_ip: Ipv4Addr,
    pub start_time: DateTime<Utc>,
    pub scheduled_at: DateTime<Utc>,
    /// When the pod last became ready or stopped being ready.
    pub transition: DateTime<Utc>,
    pub init_containers: Vec<InitRun>,
    pub containers: Vec<ContainerRun>,
}

impl PodRun {
    /// Starts every container of `shape` now.
    pub fn start(
        shape: &PodShape,
        host_ip: Ipv4Addr,
        pod_ip: Ipv4Addr,
        now: DateTime<Utc>,
    ) -> PodRun {
        let containers = shape
            .containers
            .iter()
            .map(|(name, image)| ContainerRun::start(name, image, now))
            .collect();
        let init_containers = shape
            .init_containers
            .iter()
            .map(|(name, image, sidecar)| {
                let mut run = ContainerRun::start(name, image, now);
                if !sidecar {
                    run.terminated = Some(run.end(0, now));
                }
                InitRun {
                    run,
                    sidecar: *sidecar,
                }
            })
            .collect();
        PodRun {
            host_ip,
            pod_ip,
            start_time: now,
            scheduled_at: shape.scheduled_at.unwrap_or(now),
            transition: now,
            init_containers,
            containers,
        }
    }

    /// Takes over a pod a previous run of this process started (its status says Running), so
    /// its address and container IDs stay; `None` when the status lacks what is needed.
    pub fn adopt(pod: &Pod, shape: &PodShape) -> Option<PodRun> {
        let status = pod.status.as_ref()?;
        if status.phase.as_deref() != Some("Running") {
            return None;
        }
        let host_ip = status.host_ip.as_ref()?.parse().ok()?;
        let pod_ip = status.pod_ip.as_ref()?.parse().ok()?;
        let start_time = to_chrono(&status.start_time.as_ref()?.0)?;
        let statuses = status.container_statuses.as_ref()?;
        let containers = shape
            .containers
            .iter()
            .map(|(name, image)| {
                let s = statuses.iter().find(|s| &s.name == name)?;
                let running = s.state.as_ref()?.running.as_ref()?;
                Some(ContainerRun {
                    name: name.clone(),
                    image: image.clone(),
                    container_id: s.container_id.clone()?,
                    started_at: to_chrono(&running.started_at.as_ref()?.0)?,
                    restart_count: s.restart_count,
                    terminated: None,
                    last: None,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let mut run = PodRun::start(shape, host_ip, pod_ip, start_time);
        run.containers = containers;
        Some(run)
    }

    /// Whether the containers have exited for good.
    pub fn finished(&self) -> bool {
        self.containers.iter().all(|c| c.terminated.is_some())
    }

    /// The containers exited with `exit_code` and start again (restartPolicy Always, or
    /// OnFailure with a non-zero code).
    pub fn restart(&mut self, exit_code: i32, now: DateTime<Utc>) {
        for c in &mut self.containers {
            c.last = Some(c.end(exit_code, now));
            c.container_id = container_id();
            c.started_at = now;
            c.restart_count += 1;
        }
        self.transition = now;
    }

    /// The containers exited for good with `exit_code`; sidecars are stopped with them.
    pub fn exit(&mut self, exit_code: i32, now: DateTime<Utc>) {
        for c in &mut self.containers {
            c.terminated = Some(c.end(exit_code, now));
        }
        for init in self.init_containers.iter_mut().filter(|i| i.sidecar) {
            init.run.terminated = Some(init.run.end(0, now));
        }
        self.transition = now;
    }

    /// `Succeeded`, `Failed` or `Running`.
    pub fn phase(&self) -> &'static str {
        if !self.finished() {
            "Running"
        } else if self
            .containers
            .iter()
            .all(|c| c.terminated.as_ref().is_some_and(|t| t.exit_code == 0))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    }

    /// The whole `status` a kubelet writes for this run.
    pub fn status(&self) -> Value {
        let pod_ip = self.pod_ip;
        let mut status = json!({
            "phase": self.phase(),
            "conditions": self.conditions(),
            "hostIP": self.host_ip.to_string(), "hostIPs": [{"ip": self.host_ip.to_string()}],
            "podIP": pod_ip.to_string(), "podIPs": [{"ip": pod_ip.to_string()}],
            "startTime": time(self.start_time),
            "containerStatuses": self.containers.iter().map(ContainerRun::to_json).collect::<Vec<_>>(),
        });
        if !self.init_containers.is_empty() {
            status["initContainerStatuses"] = self
                .init_containers
                .iter()
                .map(|i| i.run.to_json())
                .collect();
        }
        status
    }

    fn conditions(&self) -> Value {
        let running = !self.finished();
        let since = time(self.transition);
        let start = time(self.start_time);
        let cond = |kind: &str, ok: bool, at: &str| {
            let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                               "lastProbeTime": null, "lastTransitionTime": at});
            if !ok || (kind == "Initialized" && !running) {
                c["reason"] = "PodCompleted".into();
            }
            c
        };
        json!([
            cond("PodReadyToStartContainers", running, &since),
            cond("Initialized", true, &start),
            cond("Ready", running, &since),
            cond("ContainersReady", running, &since),
            {"type": "PodScheduled", "status": "True", "lastProbeTime": null,
             "lastTransitionTime": time(self.scheduled_at)},
        ])
    }
}

/// When the scheduler's binding set `PodScheduled`, if it did.
fn scheduled_at(pod: &Pod) -> Option<DateTime<Utc>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    to_chrono(&c.last_transition_time.as_ref()?.0)
}

fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "nodeName": "hollow-node-0",
                "initContainers": [{"name": "setup", "image": "busybox"},
                                   {"name": "proxy", "image": "envoy:v1", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "nginx:1.27"},
                               {"name": "log", "image": "registry.k8s.io/pause:3.10"}],
            },
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
        }))
        .expect("a pod")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    fn run() -> PodRun {
        PodRun::start(
            &PodShape::of(&pod()),
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(10, 42, 0, 2),
            at(0),
        )
    }

    fn condition(status: &Value, kind: &str) -> Value {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn running_status_is_what_a_kubelet_writes() {
        let s = run().status();
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.0.2");
        assert_eq!(s["podIPs"], json!([{"ip": "10.42.0.2"}]));
        assert_eq!(s["hostIP"], "198.18.0.1");
        assert_eq!(s["hostIPs"], json!([{"ip": "198.18.0.1"}]));
        assert_eq!(s["startTime"], "2023-11-14T22:13:20Z");
        for kind in [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
            "PodScheduled",
        ] {
            assert_eq!(condition(&s, kind)["status"], "True", "{kind}");
        }
        assert_eq!(
            condition(&s, "PodScheduled")["lastTransitionTime"],
            "2024-01-01T00:00:00Z",
            "the scheduler's time is kept"
        );
        let app = &s["containerStatuses"][0];
        assert_eq!(app["name"], "app");
        assert_eq!(app["image"], "docker.io/library/nginx:1.27");
        assert!(
            app["imageID"]
                .as_str()
                .is_some_and(|i| i.starts_with("docker.io/library/nginx@sha256:"))
        );
        let id = app["containerID"].as_str().unwrap_or_default();
        assert!(id.starts_with("containerd://") && id.len() == "containerd://".len() + 64);
        assert_eq!(
            (app["ready"].as_bool(), app["started"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(app["restartCount"], 0);
        assert_eq!(app["state"]["running"]["startedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(s["containerStatuses"][1]["name"], "log");
    }

    #[test]
    fn init_containers_completed_and_sidecars_running() {
        let s = run().status();
        let setup = &s["initContainerStatuses"][0];
        assert_eq!(setup["state"]["terminated"]["reason"], "Completed");
        assert_eq!(setup["ready"], false);
        let proxy = &s["initContainerStatuses"][1];
        assert!(proxy["state"]["running"].is_object());
        assert_eq!(proxy["ready"], true);
    }

    #[test]
    fn restart_policy_decides_restarts() {
        let shape = |policy: &str| PodShape {
            restart_policy: policy.into(),
            ..PodShape::default()
        };
        assert!(!shape("Never").restarts_after(0));
        assert!(!shape("Never").restarts_after(1));
        assert!(!shape("OnFailure").restarts_after(0));
        assert!(shape("OnFailure").restarts_after(1));
        assert!(shape("Always").restarts_after(0));
        assert_eq!(PodShape::of(&pod()).restart_policy, "Always");
        assert!(PodShape::of(&pod()).init_containers[1].2);
    }

    #[test]
    fn exit_zero_succeeds() {
        let mut r = run();
        r.exit(0, at(5));
        let s = r.status();
        assert_eq!(s["phase"], "Succeeded");
        let t = &s["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(t["exitCode"], 0);
        assert_eq!(t["reason"], "Completed");
        assert_eq!(t["finishedAt"], "2023-11-14T22:13:25Z");
        assert_eq!(t["containerID"], s["containerStatuses"][0]["containerID"]);
        assert_eq!(s["containerStatuses"][0]["ready"], false);
        assert_eq!(condition(&s, "Ready")["status"], "False");
        assert_eq!(condition(&s, "Ready")["reason"], "PodCompleted");
        assert_eq!(condition(&s, "Initialized")["status"], "True");
        assert_eq!(
            condition(&s, "PodReadyToStartContainers")["status"],
            "False"
        );
        assert!(s["initContainerStatuses"][1]["state"]["terminated"].is_object());
    }

    #[test]
    fn adopts_a_running_pod_from_its_status() {
        let r = run();
        let mut pod = pod();
        pod.status = serde_json::from_value(r.status()).ok();
        let adopted = PodRun::adopt(&pod, &PodShape::of(&pod)).expect("adopted");
        assert_eq!(adopted.pod_ip, r.pod_ip);
        assert_eq!(adopted.start_time, r.start_time);
        assert_eq!(adopted.containers, r.containers);
        pod.status = None;
        assert_eq!(PodRun::adopt(&pod, &PodShape::of(&pod)), None);
    }

    #[test]
    fn exit_non_zero_fails() {
        let mut r = run();
        r.exit(3, at(5));
        let s = r.status();
        assert_eq!(s["phase"], "Failed");
        let t = &s["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            (t["exitCode"].as_i64(), t["reason"].as_str()),
            (Some(3), Some("Error"))
        );
    }

    #[test]
    fn restart_counts_and_keeps_the_last_state() {
        let mut r = run();
        let first_id = r.containers[0].container_id.clone();
        r.restart(1, at(5));
        let s = r.status();
        assert_eq!(s["phase"], "Running");
        let app = &s["containerStatuses"][0];
        assert_eq!(app["restartCount"], 1);
        assert_eq!(app["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(
            app["lastState"]["terminated"]["containerID"],
            first_id.as_str()
        );
        assert_ne!(app["containerID"], first_id.as_str());
        assert_eq!(app["state"]["running"]["startedAt"], "2023-11-14T22:13:25Z");
        assert_eq!(condition(&s, "Ready")["status"], "True");
    }
}
