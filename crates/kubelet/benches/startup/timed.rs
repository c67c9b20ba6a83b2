//! A CRI client that records when each pod-related call started and ended, keyed by the pod's
//! UID where the call names one (directly, or through a sandbox or container ID it handed out).
//! Both sides of the bench go through it, so its cost (a mutex and two `Instant::now`) is paid
//! equally; it lets the bench split a k8rs pod's startup into phases without touching the
//! kubelet's code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use k8rs_kubelet::cri::{
    AuthConfig, Container, ContainerConfig, ContainerStatus, Cri, ExecSyncResponse, GrpcCri, Image,
    PodSandbox, PodSandboxConfig, PodSandboxStatus, Result, VersionResponse, labels,
};

/// The CRI operations the bench times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    RunSandbox,
    SandboxStatus,
    ListSandboxes,
    ImageStatus,
    CreateContainer,
    StartContainer,
    ListContainers,
    ContainerStatus,
}

/// One timed call.
#[derive(Clone, Debug)]
pub struct Call {
    pub op: Op,
    /// The pod's UID, when the call could be tied to one.
    pub uid: Option<String>,
    pub start: Instant,
    pub end: Instant,
}

#[derive(Default)]
struct Log {
    calls: Vec<Call>,
    /// Sandbox and container IDs to their pod's UID.
    owners: HashMap<String, String>,
    /// The first sandbox and container configuration sent for each pod UID, while capturing.
    configs: HashMap<String, (Option<PodSandboxConfig>, Option<ContainerConfig>)>,
    /// Whether configurations are kept (only for the warm-up, so that the bench's own memory
    /// does not grow with the pods it runs).
    capture: bool,
}

/// A [`GrpcCri`] that records its pod-related calls.
#[derive(Clone)]
pub struct Timed {
    inner: GrpcCri,
    log: Arc<Mutex<Log>>,
}

impl Timed {
    pub fn new(inner: GrpcCri) -> Timed {
        let log = Log {
            capture: true,
            ..Log::default()
        };
        Timed {
            inner,
            log: Arc::new(Mutex::new(log)),
        }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, op: Op, uid: Option<String>, start: Instant) {
        let end = Instant::now();
        self.log().calls.push(Call {
            op,
            uid,
            start,
            end,
        });
    }

    fn owner(&self, id: &str) -> Option<String> {
        self.log().owners.get(id).cloned()
    }

    fn own(&self, id: &str, uid: &str) {
        self.log().owners.insert(id.to_string(), uid.to_string());
    }

    /// The calls recorded so far; forgets them and the IDs seen (call between phases, with
    /// no pod in flight).
    pub fn take_calls(&self) -> Vec<Call> {
        let mut log = self.log();
        log.owners.clear();
        std::mem::take(&mut log.calls)
    }

    /// Stops capturing configurations and forgets those captured.
    pub fn stop_capture(&self) {
        let mut log = self.log();
        log.capture = false;
        log.configs.clear();
    }

    /// The sandbox and container configuration first sent for pod `uid`; stops capturing.
    pub fn configs(&self, uid: &str) -> (Option<PodSandboxConfig>, Option<ContainerConfig>) {
        let mut log = self.log();
        log.capture = false;
        std::mem::take(&mut log.configs)
            .remove(uid)
            .unwrap_or_default()
    }
}

fn uid_of(l: &HashMap<String, String>) -> Option<String> {
    l.get(labels::POD_UID).cloned()
}

#[async_trait]
impl Cri for Timed {
    async fn version(&self) -> Result<VersionResponse> {
        self.inner.version().await
    }

    async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String> {
        let uid = config.metadata.as_ref().map(|m| m.uid.clone());
        if let Some(u) = &uid {
            let mut log = self.log();
            if log.capture {
                let entry = log.configs.entry(u.clone()).or_default();
                entry.0.get_or_insert_with(|| config.clone());
            }
        }
        let t = Instant::now();
        let r = self.inner.run_pod_sandbox(config).await;
        self.record(Op::RunSandbox, uid.clone(), t);
        if let (Ok(id), Some(u)) = (&r, &uid) {
            self.own(id, u);
        }
        r
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.inner.stop_pod_sandbox(id).await
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.inner.remove_pod_sandbox(id).await
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let t = Instant::now();
        let r = self.inner.pod_sandbox_status(id).await;
        self.record(Op::SandboxStatus, self.owner(id), t);
        r
    }

    async fn list_pod_sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<PodSandbox>> {
        let uid = uid_of(&labels);
        let t = Instant::now();
        let r = self.inner.list_pod_sandboxes(labels).await;
        self.record(Op::ListSandboxes, uid, t);
        r
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox: PodSandboxConfig,
    ) -> Result<String> {
        let uid = self.owner(sandbox_id);
        if let Some(u) = &uid {
            let mut log = self.log();
            if log.capture {
                let entry = log.configs.entry(u.clone()).or_default();
                entry.1.get_or_insert_with(|| config.clone());
            }
        }
        let t = Instant::now();
        let r = self
            .inner
            .create_container(sandbox_id, config, sandbox)
            .await;
        self.record(Op::CreateContainer, uid.clone(), t);
        if let (Ok(id), Some(u)) = (&r, &uid) {
            self.own(id, u);
        }
        r
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.start_container(id).await;
        self.record(Op::StartContainer, self.owner(id), t);
        r
    }

    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        self.inner.stop_container(id, timeout).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.inner.remove_container(id).await
    }

    async fn list_containers(&self, labels: HashMap<String, String>) -> Result<Vec<Container>> {
        let uid = uid_of(&labels);
        let t = Instant::now();
        let r = self.inner.list_containers(labels).await;
        self.record(Op::ListContainers, uid, t);
        r
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let t = Instant::now();
        let r = self.inner.container_status(id).await;
        self.record(Op::ContainerStatus, self.owner(id), t);
        r
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        self.inner.exec_sync(id, cmd, timeout).await
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        self.inner.list_images().await
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let t = Instant::now();
        let r = self.inner.image_status(image).await;
        self.record(Op::ImageStatus, None, t);
        r
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.inner.remove_image(image).await
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.inner.reopen_container_log(id).await
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<AuthConfig>,
        sandbox: Option<PodSandboxConfig>,
    ) -> Result<String> {
        self.inner.pull_image(image, auth, sandbox).await
    }

    async fn list_container_stats(&self) -> Result<Vec<k8rs_kubelet::cri::ContainerStats>> {
        self.inner.list_container_stats().await
    }

    async fn list_pod_sandbox_stats(&self) -> Result<Vec<k8rs_kubelet::cri::PodSandboxStats>> {
        self.inner.list_pod_sandbox_stats().await
    }
}
