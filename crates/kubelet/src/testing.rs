//! A recording fake CRI for tests: keeps sandboxes, containers and images in memory, records
//! every call, and lets a test make containers exit.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_cri::v1 as cri;

use crate::cri::{
    AuthConfig, Container, ContainerConfig, ContainerStatus, Cri, CriError, ExecSyncResponse,
    Image, PodSandbox, PodSandboxConfig, PodSandboxStatus, Result, VersionResponse,
};

#[derive(Clone, Debug)]
struct FakeSandbox {
    id: String,
    config: PodSandboxConfig,
    ready: bool,
    created_at: i64,
}

#[derive(Clone, Debug)]
struct FakeContainer {
    id: String,
    sandbox_id: String,
    config: ContainerConfig,
    state: cri::ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<String>,
    sandboxes: Vec<FakeSandbox>,
    containers: Vec<FakeContainer>,
    images: Vec<String>,
    exec_exit: HashMap<String, i32>,
    next: u64,
}

/// The fake runtime.
#[derive(Debug, Default)]
pub struct FakeCri {
    state: Mutex<State>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn not_found(op: &'static str) -> CriError {
    CriError::Call {
        op,
        status: Box::new(tonic::Status::not_found("not found")),
    }
}

fn matches(labels: &HashMap<String, String>, filter: &HashMap<String, String>) -> bool {
    filter.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeCri {
    /// A fake that has `images`.
    pub fn with_images(images: &[&str]) -> FakeCri {
        let fake = FakeCri::default();
        if let Ok(mut s) = fake.state.lock() {
            s.images = images.iter().map(|i| i.to_string()).collect();
        }
        fake
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn record(&self, call: String) {
        self.with(|s| s.calls.push(call));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }

    /// The calls that change something (no reads), and forgets all calls.
    pub fn take_mutations(&self) -> Vec<String> {
        self.with(|s| {
            let reads = ["List", "Status", "Version", "ExecSync"];
            let out = s
                .calls
                .iter()
                .filter(|c| {
                    !reads
                        .iter()
                        .any(|r| c.starts_with(r) || c.contains("Status "))
                })
                .cloned()
                .collect();
            s.calls.clear();
            out
        })
    }

    /// Makes the running container named `name` exit with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        self.with(|s| {
            for c in s.containers.iter_mut().filter(|c| {
                c.config.metadata.as_ref().is_some_and(|m| m.name == name)
                    && c.state == cri::ContainerState::ContainerRunning
            }) {
                c.state = cri::ContainerState::ContainerExited;
                c.exit_code = code;
                c.finished_at = now();
            }
        });
    }

    /// Makes exec in containers named `name` exit with `code` (default 0).
    pub fn set_exec_exit(&self, name: &str, code: i32) {
        self.with(|s| s.exec_exit.insert(name.to_string(), code));
    }

    /// Names of the containers in the runtime with their attempt and state, oldest first.
    pub fn containers(&self) -> Vec<(String, u32, cri::ContainerState)> {
        self.with(|s| {
            s.containers
                .iter()
                .map(|c| {
                    let m = c.config.metadata.clone().unwrap_or_default();
                    (m.name, m.attempt, c.state)
                })
                .collect()
        })
    }

    /// The environment a container named `name` was last created with.
    pub fn env_of(&self, name: &str) -> Vec<(String, String)> {
        self.with(|s| {
            s.containers
                .iter()
                .rev()
                .find(|c| c.config.metadata.as_ref().is_some_and(|m| m.name == name))
                .map(|c| {
                    c.config
                        .envs
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// The mounts a container named `name` was last created with.
    pub fn mounts_of(&self, name: &str) -> Vec<cri::Mount> {
        self.with(|s| {
            s.containers
                .iter()
                .rev()
                .find(|c| c.config.metadata.as_ref().is_some_and(|m| m.name == name))
                .map(|c| c.config.mounts.clone())
                .unwrap_or_default()
        })
    }

    fn name_of(&self, id: &str) -> String {
        self.with(|s| {
            s.containers
                .iter()
                .find(|c| c.id == id)
                .and_then(|c| c.config.metadata.as_ref().map(|m| m.name.clone()))
                .unwrap_or_else(|| id.to_string())
        })
    }
}

#[async_trait]
impl Cri for FakeCri {
    async fn version(&self) -> Result<VersionResponse> {
        self.record("Version".into());
        Ok(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String> {
        let attempt = config.metadata.as_ref().map_or(0, |m| m.attempt);
        self.record(format!("RunPodSandbox attempt={attempt}"));
        Ok(self.with(|s| {
            s.next += 1;
            let id = format!("sb{}", s.next);
            s.sandboxes.push(FakeSandbox {
                id: id.clone(),
                config,
                ready: true,
                created_at: now(),
            });
            id
        }))
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.record(format!("StopPodSandbox {id}"));
        self.with(|s| {
            for c in s.containers.iter_mut().filter(|c| c.sandbox_id == id) {
                if c.state == cri::ContainerState::ContainerRunning {
                    c.state = cri::ContainerState::ContainerExited;
                    c.exit_code = 137;
                    c.finished_at = now();
                }
            }
            if let Some(sb) = s.sandboxes.iter_mut().find(|sb| sb.id == id) {
                sb.ready = false;
            }
        });
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.record(format!("RemovePodSandbox {id}"));
        self.with(|s| {
            s.sandboxes.retain(|sb| sb.id != id);
            s.containers.retain(|c| c.sandbox_id != id);
        });
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        self.record(format!("PodSandboxStatus {id}"));
        self.with(|s| {
            let sb = s.sandboxes.iter().find(|sb| sb.id == id)?;
            Some(PodSandboxStatus {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                state: if sb.ready { 0 } else { 1 },
                created_at: sb.created_at,
                network: Some(cri::PodSandboxNetworkStatus {
                    ip: "10.42.0.9".into(),
                    additional_ips: vec![],
                }),
                labels: sb.config.labels.clone(),
                ..Default::default()
            })
        })
        .ok_or_else(|| not_found("PodSandboxStatus"))
    }

    async fn list_pod_sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<PodSandbox>> {
        self.record("ListPodSandbox".into());
        Ok(self.with(|s| {
            s.sandboxes
                .iter()
                .filter(|sb| matches(&sb.config.labels, &labels))
                .map(|sb| PodSandbox {
                    id: sb.id.clone(),
                    metadata: sb.config.metadata.clone(),
                    state: if sb.ready { 0 } else { 1 },
                    created_at: sb.created_at,
                    labels: sb.config.labels.clone(),
                    annotations: sb.config.annotations.clone(),
                    runtime_handler: String::new(),
                })
                .collect()
        }))
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        _sandbox: PodSandboxConfig,
    ) -> Result<String> {
        let m = config.metadata.clone().unwrap_or_default();
        self.record(format!("CreateContainer {} attempt={}", m.name, m.attempt));
        Ok(self.with(|s| {
            s.next += 1;
            let id = format!("c{}", s.next);
            s.containers.push(FakeContainer {
                id: id.clone(),
                sandbox_id: sandbox_id.into(),
                config,
                state: cri::ContainerState::ContainerCreated,
                created_at: now(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
            });
            id
        }))
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let name = self.name_of(id);
        self.record(format!("StartContainer {name}"));
        self.with(|s| {
            if let Some(c) = s.containers.iter_mut().find(|c| c.id == id) {
                c.state = cri::ContainerState::ContainerRunning;
                c.started_at = now();
            }
        });
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let name = self.name_of(id);
        self.record(format!("StopContainer {name} timeout={timeout}"));
        self.with(|s| {
            if let Some(c) = s.containers.iter_mut().find(|c| c.id == id)
                && c.state == cri::ContainerState::ContainerRunning
            {
                c.state = cri::ContainerState::ContainerExited;
                c.exit_code = 137;
                c.finished_at = now();
            }
        });
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let name = self.name_of(id);
        self.record(format!("RemoveContainer {name}"));
        self.with(|s| s.containers.retain(|c| c.id != id));
        Ok(())
    }

    async fn list_containers(&self, labels: HashMap<String, String>) -> Result<Vec<Container>> {
        self.record("ListContainers".into());
        Ok(self.with(|s| {
            s.containers
                .iter()
                .filter(|c| matches(&c.config.labels, &labels))
                .map(|c| Container {
                    id: c.id.clone(),
                    pod_sandbox_id: c.sandbox_id.clone(),
                    metadata: c.config.metadata.clone(),
                    image: c.config.image.clone(),
                    state: c.state as i32,
                    created_at: c.created_at,
                    labels: c.config.labels.clone(),
                    annotations: c.config.annotations.clone(),
                    ..Default::default()
                })
                .collect()
        }))
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.record(format!("ContainerStatus {id}"));
        self.with(|s| {
            let c = s.containers.iter().find(|c| c.id == id)?;
            let sandbox = s.sandboxes.iter().find(|sb| sb.id == c.sandbox_id);
            let dir = sandbox.map(|sb| sb.config.log_directory.clone());
            let log_path = match dir {
                Some(d) if !d.is_empty() && !c.config.log_path.is_empty() => {
                    format!("{d}/{}", c.config.log_path)
                }
                _ => String::new(),
            };
            Some(ContainerStatus {
                log_path,
                id: c.id.clone(),
                metadata: c.config.metadata.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                started_at: c.started_at,
                finished_at: c.finished_at,
                exit_code: c.exit_code,
                image: c.config.image.clone(),
                image_ref: "sha256:fake".into(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                ..Default::default()
            })
        })
        .ok_or_else(|| not_found("ContainerStatus"))
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        _timeout: i64,
    ) -> Result<ExecSyncResponse> {
        let name = self.name_of(id);
        self.record(format!("ExecSync {name} {}", cmd.join(" ")));
        let code = self.with(|s| s.exec_exit.get(&name).copied().unwrap_or(0));
        Ok(ExecSyncResponse {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: code,
        })
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        self.record("ListImages".into());
        Ok(self.with(|s| {
            s.images
                .iter()
                .map(|i| Image {
                    id: format!("sha256:{i}"),
                    repo_tags: vec![i.clone()],
                    size: 1000,
                    ..Default::default()
                })
                .collect()
        }))
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        self.record(format!("ImageStatus {image}"));
        Ok(self.with(|s| {
            s.images.iter().find(|i| *i == image).map(|i| Image {
                id: format!("sha256:{i}"),
                repo_tags: vec![i.clone()],
                ..Default::default()
            })
        }))
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.record(format!("RemoveImage {image}"));
        self.with(|s| {
            s.images
                .retain(|i| i != image && format!("sha256:{i}") != image)
        });
        Ok(())
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let name = self.name_of(id);
        self.record(format!("ReopenContainerLog {name}"));
        Ok(())
    }

    async fn pull_image(
        &self,
        image: &str,
        _auth: Option<AuthConfig>,
        _sandbox: Option<PodSandboxConfig>,
    ) -> Result<String> {
        self.record(format!("PullImage {image}"));
        if image.contains("missing") {
            return Err(CriError::Call {
                op: "PullImage",
                status: Box::new(tonic::Status::not_found("manifest unknown")),
            });
        }
        self.with(|s| s.images.push(image.to_string()));
        Ok(format!("sha256:{image}"))
    }
}
