//! One pod's state in the runtime, read from the CRI: its sandboxes and containers, newest
//! first (upstream's `kubecontainer.PodStatus`).

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};

use crate::cri::{self, Cri, CriError, labels};

/// A container's state in the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A sandbox of the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    /// Pod IPs, primary first; empty for host-network pods.
    pub ips: Vec<String>,
}

/// A container of the pod (any sandbox).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: State,
    /// Nanoseconds since the epoch; 0 when not (yet) known.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    pub annotations: HashMap<String, String>,
}

impl RuntimeContainer {
    /// A container in `state` with the rest defaulted (tests, fakes).
    pub fn new(id: &str, sandbox_id: &str, name: &str, attempt: u32, state: State) -> Self {
        RuntimeContainer {
            id: id.into(),
            sandbox_id: sandbox_id.into(),
            name: name.into(),
            attempt,
            state,
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: String::new(),
            image_ref: String::new(),
            annotations: HashMap::new(),
        }
    }
}

/// All of one pod in the runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimePod {
    /// Newest first.
    pub sandboxes: Vec<Sandbox>,
    /// Newest first (by attempt, then creation).
    pub containers: Vec<RuntimeContainer>,
}

impl RuntimePod {
    /// The newest ready sandbox.
    pub fn ready_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.iter().find(|s| s.ready)
    }

    /// The newest container named `name`, in any sandbox.
    pub fn latest(&self, name: &str) -> Option<&RuntimeContainer> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The newest container named `name` in sandbox `sandbox`.
    pub fn latest_in(&self, sandbox: &str, name: &str) -> Option<&RuntimeContainer> {
        self.containers
            .iter()
            .find(|c| c.name == name && c.sandbox_id == sandbox)
    }

    /// The second newest container named `name`: the previous run.
    pub fn previous(&self, name: &str) -> Option<&RuntimeContainer> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    /// Containers that are running (or may be).
    pub fn running(&self) -> impl Iterator<Item = &RuntimeContainer> {
        self.containers
            .iter()
            .filter(|c| matches!(c.state, State::Running | State::Unknown))
    }

    /// Orders sandboxes and containers newest first.
    pub fn sort(&mut self) {
        self.sandboxes
            .sort_by_key(|s| std::cmp::Reverse((s.attempt, s.created_at)));
        self.containers
            .sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
    }
}

fn state(s: i32) -> State {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => State::Created,
        Ok(cri::ContainerState::ContainerRunning) => State::Running,
        Ok(cri::ContainerState::ContainerExited) => State::Exited,
        _ => State::Unknown,
    }
}

async fn read_sandbox(cri: &dyn Cri, s: cri::PodSandbox) -> Result<Sandbox, CriError> {
    let ready = s.state == cri::PodSandboxState::SandboxReady as i32;
    let mut ips = Vec::new();
    if ready {
        let status = cri.pod_sandbox_status(&s.id).await?;
        if let Some(net) = status.network {
            if !net.ip.is_empty() {
                ips.push(net.ip);
            }
            ips.extend(net.additional_ips.into_iter().map(|i| i.ip));
        }
    }
    Ok(Sandbox {
        attempt: s.metadata.map_or(0, |m| m.attempt),
        id: s.id,
        ready,
        created_at: s.created_at,
        ips,
    })
}

/// Converts a CRI container status.
pub fn from_status(sandbox_id: &str, s: cri::ContainerStatus) -> RuntimeContainer {
    let meta = s.metadata.unwrap_or_default();
    RuntimeContainer {
        id: s.id,
        sandbox_id: sandbox_id.to_string(),
        name: meta.name,
        attempt: meta.attempt,
        state: state(s.state),
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
        exit_code: s.exit_code,
        reason: s.reason,
        message: s.message,
        image: s.image.map(|i| i.image).unwrap_or_default(),
        image_ref: s.image_ref,
        annotations: s.annotations,
    }
}

/// How many status calls of one read are in flight at once.
const READ_CONCURRENCY: usize = 8;

/// Reads pod `uid`'s sandboxes and containers: the two lists, then the status of each sandbox
/// and container, are asked concurrently (a few at a time, answers kept in list order).
pub async fn read(cri: &dyn Cri, uid: &str) -> Result<RuntimePod, CriError> {
    let (sandboxes, containers) =
        futures::try_join!(read_sandboxes(cri, uid), read_containers(cri, uid))?;
    let mut pod = RuntimePod {
        sandboxes,
        containers,
    };
    pod.sort();
    Ok(pod)
}

async fn read_sandboxes(cri: &dyn Cri, uid: &str) -> Result<Vec<Sandbox>, CriError> {
    let list = cri.list_pod_sandboxes(cri::pod_filter(uid)).await?;
    futures::stream::iter(list)
        .map(|s| read_sandbox(cri, s))
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

async fn read_containers(cri: &dyn Cri, uid: &str) -> Result<Vec<RuntimeContainer>, CriError> {
    let list = cri.list_containers(cri::pod_filter(uid)).await?;
    let statuses: Vec<Option<RuntimeContainer>> = futures::stream::iter(list)
        .map(|c| async move {
            match cri.container_status(&c.id).await {
                Ok(status) => Ok(Some(from_status(&c.pod_sandbox_id, status))),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(statuses.into_iter().flatten().collect())
}

/// The UIDs of all pods with a sandbox in the runtime (made by a kubelet).
pub async fn pod_uids(cri: &dyn Cri) -> Result<Vec<String>, CriError> {
    let mut uids: Vec<String> = cri
        .list_pod_sandboxes(HashMap::new())
        .await?
        .into_iter()
        .filter_map(|s| s.labels.get(labels::POD_UID).cloned())
        .collect();
    uids.sort();
    uids.dedup();
    Ok(uids)
}
