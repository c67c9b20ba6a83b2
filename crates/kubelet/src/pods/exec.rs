//! Carrying out a sync's actions on the runtime (upstream's `SyncPod`, `startContainer`,
//! `killContainer`, `KillPod`): image pulls with their policy and back-off, container
//! configuration, hooks, graceful stops, and garbage collection of dead containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;

use super::actions::{Kind, Target, backoff_key, is_sidecar};
use super::env::{self, Facts, Refs};
use super::runtime::{RuntimeContainer, RuntimePod, State};
use super::spec::{self, ContainerParams, ImageUser};
use super::worker::Worker;
use crate::cri::{AuthConfig, PodSandboxConfig, labels};
use crate::prober::{self, Target as HookTarget};

/// Why a container could not be started: its waiting reason and message.
pub type StartError = (String, String);

/// The shortest stop timeout after a preStop hook (upstream's minimum grace).
const MIN_GRACE: Duration = Duration::from_secs(2);

fn err(reason: &str, message: impl Into<String>) -> StartError {
    (reason.to_string(), message.into())
}

/// A duration written as Go prints one (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
    }
}

/// The spec container of a target.
pub fn container_of(pod: &Pod, t: Target) -> Option<&Container> {
    let spec = pod.spec.as_ref()?;
    match t.kind {
        Kind::Init => spec.init_containers.as_ref()?.get(t.index),
        Kind::Regular => spec.containers.get(t.index),
    }
}

/// Whether an image reference names the `latest` tag (explicitly or by default).
fn is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// The pod's grace period for stopping containers now.
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

impl Worker {
    /// Makes sure `c`'s image is present per its pull policy; returns the image to run and
    /// the user it runs as.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        c: &Container,
        sandbox: &PodSandboxConfig,
    ) -> Result<(String, ImageUser), StartError> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if is_latest(&image) {
                "Always"
            } else {
                "IfNotPresent"
            }
            .to_string()
        });
        let present = self
            .cri
            .image_status(&image)
            .await
            .map_err(|e| err("ErrImagePull", e.message()))?;
        let user = |i: &crate::cri::Image| ImageUser {
            uid: i.uid.as_ref().map(|u| u.value),
            username: i.username.clone(),
        };
        let name = Some(c.name.as_str());
        match (&present, policy.as_str()) {
            (Some(i), "IfNotPresent" | "Never") => {
                let note = format!("Container image \"{image}\" already present on machine");
                self.events.normal(pod, name, "Pulled", note);
                return Ok((image, user(i)));
            }
            (None, "Never") => {
                return Err(err(
                    "ErrImageNeverPull",
                    format!("Container image \"{image}\" is not present with pull policy of Never"),
                ));
            }
            _ => {}
        }
        let key = format!("image/{image}");
        let now = Utc::now();
        if self.image_backoff.remaining(&key, now, now).is_some() {
            return Err(err(
                "ImagePullBackOff",
                format!("Back-off pulling image \"{image}\""),
            ));
        }
        let auth = self.pull_auth(pod, &image).await;
        self.events
            .normal(pod, name, "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        match self
            .cri
            .pull_image(&image, auth, Some(sandbox.clone()))
            .await
        {
            Ok(_) => {
                let note = format!(
                    "Successfully pulled image \"{image}\" in {:?}",
                    started.elapsed()
                );
                self.events.normal(pod, name, "Pulled", note);
                let got = self.cri.image_status(&image).await.ok().flatten();
                Ok((image, got.as_ref().map(user).unwrap_or_default()))
            }
            Err(e) => {
                self.image_backoff.next(&key, now);
                let note = format!("Failed to pull image \"{image}\": {}", e.message());
                self.events.warning(pod, name, "Failed", note);
                Err(err(
                    "ErrImagePull",
                    format!("failed to pull image \"{image}\": {}", e.message()),
                ))
            }
        }
    }

    /// Registry credentials from the pod's imagePullSecrets that match `image`'s registry.
    async fn pull_auth(&self, pod: &Pod, image: &str) -> Option<AuthConfig> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let registry = image.split('/').next().unwrap_or_default();
        for r in pod.spec.as_ref()?.image_pull_secrets.iter().flatten() {
            let Ok(Some(s)) = secrets.get_opt(&r.name).await else {
                continue;
            };
            let data = s.data.unwrap_or_default();
            let Some(raw) = data.get(".dockerconfigjson") else {
                continue;
            };
            if let Some(a) = docker_auth(&raw.0, registry) {
                return Some(a);
            }
        }
        None
    }

    async fn fetch_refs(&self, pod: &Pod, c: &Container) -> Result<Refs, StartError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let (cms, secrets) = env::referenced(c);
        let mut refs = Refs::default();
        let api_err = |e: kube::Error| err("CreateContainerConfigError", e.to_string());
        let cm_api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        for name in cms {
            let got = cm_api.get_opt(&name).await.map_err(api_err)?;
            refs.config_maps.insert(name, got);
        }
        let secret_api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        for name in secrets {
            let got = secret_api.get_opt(&name).await.map_err(api_err)?;
            refs.secrets.insert(name, got);
        }
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
        let services = self
            .services
            .visible(&ns, links, super::services::SYNC_WAIT);
        refs.services = services
            .await
            .map_err(|e| err("CreateContainerConfigError", e))?;
        Ok(refs)
    }

    /// What the field references need; the host is read on a blocking thread.
    async fn facts(&self, pod: &Pod, pod_ips: &[String]) -> Facts {
        let data_dir = self.config.data_dir.clone();
        let host = tokio::task::spawn_blocking(move || crate::node::HostInfo::read(&data_dir))
            .await
            .unwrap_or_default();
        Facts {
            pod_ip: pod_ips.first().cloned().unwrap_or_default(),
            pod_ips: pod_ips.to_vec(),
            node_ip: self.config.node_ip.to_string(),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            node_milli_cpu: i64::try_from(host.cpus * 1000).unwrap_or(i64::MAX),
            node_memory: i64::try_from(host.memory_bytes).unwrap_or(i64::MAX),
        }
    }

    /// The container's files, made on a blocking thread: an empty termination message file
    /// (returned) and its log directory (best effort).
    async fn container_files(&self, pod: &Pod, name: &str) -> Result<PathBuf, StartError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = self
            .config
            .data_dir
            .join("pods")
            .join(uid)
            .join("containers")
            .join(name);
        let file = dir.join(&uuid::Uuid::new_v4().simple().to_string()[..8]);
        let log_dir = spec::log_dir(&self.config, pod).join(name);
        let work = move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&file, b"")?;
            let _ = std::fs::create_dir_all(&log_dir);
            Ok(file)
        };
        let io = |e: std::io::Error| err("CreateContainerConfigError", e.to_string());
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| err("CreateContainerConfigError", e.to_string()))?
            .map_err(io)
    }

    /// Starts one container in `sandbox_id` (upstream's `startContainer`).
    pub(super) async fn start_container(
        &mut self,
        pod: &Pod,
        rt: &RuntimePod,
        target: Target,
        sandbox_id: &str,
        sandbox: &PodSandboxConfig,
        pod_ips: &[String],
    ) -> Result<(), StartError> {
        let Some(c) = container_of(pod, target).cloned() else {
            return Ok(());
        };
        let previous = rt.latest(&c.name);
        let attempt = previous.map_or(0, |p| p.attempt + 1);
        let (image, image_user) = self.ensure_image(pod, &c, sandbox).await?;
        let refs = self.fetch_refs(pod, &c).await?;
        let facts = self.facts(pod, pod_ips).await;
        let env = env::container_env(pod, &c, &refs, &facts)
            .map_err(|e| err("CreateContainerConfigError", e.0))?;
        let mounts = crate::volumes::container_mounts(&c, self.volumes.paths(), &env)
            .map_err(|e| err("CreateContainerConfigError", e))?;
        let params = ContainerParams {
            mounts,
            attempt,
            env,
            image,
            image_user,
            termination_message_file: Some(self.container_files(pod, &c.name).await?),
            node_memory: facts.node_memory,
        };
        let config = spec::container_config(pod, &c, &params)
            .map_err(|e| err("CreateContainerConfigError", e.0))?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if previous.is_some() {
            self.backoff.next(&backoff_key(&uid, &c.name), Utc::now());
        }
        self.gc_dead(rt, &c.name).await;
        let id = self
            .cri
            .create_container(sandbox_id, config, sandbox.clone())
            .await
            .map_err(|e| err("CreateContainerError", e.message()))?;
        let name = Some(c.name.as_str());
        let note = format!("Created container: {}", c.name);
        self.events.normal(pod, name, "Created", note);
        self.cri
            .start_container(&id)
            .await
            .map_err(|e| err("RunContainerError", e.message()))?;
        let note = format!("Started container {}", c.name);
        self.events.normal(pod, name, "Started", note);
        tracing::info!(pod = ?pod.metadata.name, container = %c.name, attempt, "started container");
        self.post_start(&c, &id, pod_ips, pod).await;
        Ok(())
    }

    async fn post_start(&mut self, c: &Container, id: &str, pod_ips: &[String], pod: &Pod) {
        let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
            return;
        };
        let target = HookTarget {
            container_id: id.to_string(),
            pod_ip: pod_ips.first().cloned().unwrap_or_default(),
            container: c.clone(),
        };
        if let Err(msg) =
            prober::run_handler(self.cri.as_ref(), hook, &target, grace_period(pod)).await
        {
            tracing::warn!(container = %c.name, %msg, "postStart hook failed; killing the container");
            let note = format!("PostStartHook failed: {msg}");
            self.events
                .warning(pod, Some(&c.name), "FailedPostStartHook", note);
            let _ = self.cri.stop_container(id, 0).await;
        }
    }

    /// Removes dead containers named `name` except the newest (kept for `--previous`).
    async fn gc_dead(&self, rt: &RuntimePod, name: &str) {
        let dead = rt
            .containers
            .iter()
            .filter(|c| c.name == name && c.state == State::Exited)
            .skip(1);
        for c in dead {
            if let Err(e) = self.cri.remove_container(&c.id).await {
                tracing::debug!(id = %c.id, error = %e, "removing a dead container failed");
            }
        }
    }

    /// Removes the pod's older, stopped sandboxes that hold no containers any more (upstream's
    /// sandbox garbage collection keeps the newest).
    pub(super) async fn gc_sandboxes(&self, rt: &RuntimePod) {
        for s in rt.sandboxes.iter().skip(1).filter(|s| !s.ready) {
            if rt.containers.iter().any(|c| c.sandbox_id == s.id) {
                continue;
            }
            if let Err(e) = self.cri.remove_pod_sandbox(&s.id).await
                && !e.is_not_found()
            {
                tracing::debug!(id = %s.id, error = %e, "removing an old sandbox failed");
            }
        }
    }

    /// Stops one container, running its preStop hook first (upstream's `killContainer`); `note`
    /// is the Killing event's message (default "Stopping container NAME").
    pub(super) async fn kill_container(
        &self,
        pod: &Pod,
        rc: &RuntimeContainer,
        grace: Duration,
        pod_ips: &[String],
        note: Option<String>,
    ) {
        let spec = pod.spec.as_ref();
        let c = spec.and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == rc.name)
        });
        let started = Instant::now();
        if rc.state == State::Running {
            let note = note.unwrap_or_else(|| format!("Stopping container {}", rc.name));
            self.events.normal(pod, Some(&rc.name), "Killing", note);
        }
        if let Some((c, hook)) = c.and_then(|c| Some((c, c.lifecycle.as_ref()?.pre_stop.as_ref()?)))
            && rc.state == State::Running
        {
            let target = HookTarget {
                container_id: rc.id.clone(),
                pod_ip: pod_ips.first().cloned().unwrap_or_default(),
                container: c.clone(),
            };
            let run = prober::run_handler(self.cri.as_ref(), hook, &target, grace);
            if let Ok(Err(msg)) = tokio::time::timeout(grace, run).await {
                tracing::warn!(container = %rc.name, %msg, "preStop hook failed");
                let note = format!("PreStopHook failed: {msg}");
                self.events
                    .warning(pod, Some(&rc.name), "FailedPreStopHook", note);
            }
        }
        let left = grace
            .saturating_sub(started.elapsed())
            .max(MIN_GRACE.min(grace));
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let timeout = i64::try_from(secs).unwrap_or(i64::MAX);
        if let Err(e) = self.cri.stop_container(&rc.id, timeout).await
            && !e.is_not_found()
        {
            tracing::warn!(id = %rc.id, error = %e, "stopping a container failed");
        }
    }

    /// Stops every running container (regular ones first, then init containers and
    /// sidecars) and every ready sandbox of the pod.
    pub(super) async fn kill_pod(&mut self, pod: &Pod, rt: &RuntimePod, grace: Duration) {
        let pod_ips = rt
            .ready_sandbox()
            .map(|s| s.ips.clone())
            .unwrap_or_default();
        let sidecars: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| is_sidecar(c))
            .map(|c| c.name.clone())
            .collect();
        let is_late = |c: &RuntimeContainer| sidecars.contains(&c.name);
        for late in [false, true] {
            let stops = rt
                .running()
                .filter(|c| is_late(c) == late)
                .map(|c| self.kill_container(pod, c, grace, &pod_ips, None));
            futures::future::join_all(stops).await;
        }
        for s in &rt.sandboxes {
            if s.ready || !self.stopped_sandboxes.contains(&s.id) {
                match self.cri.stop_pod_sandbox(&s.id).await {
                    Ok(()) => {
                        self.stopped_sandboxes.insert(s.id.clone());
                    }
                    Err(e) => tracing::warn!(id = %s.id, error = %e, "stopping a sandbox failed"),
                }
            }
        }
    }

    /// Removes every container and sandbox of the pod, and its kubelet files.
    pub(super) async fn remove_pod(&mut self, rt: &RuntimePod) {
        for c in &rt.containers {
            if let Err(e) = self.cri.remove_container(&c.id).await
                && !e.is_not_found()
            {
                tracing::warn!(id = %c.id, error = %e, "removing a container failed");
            }
        }
        for s in &rt.sandboxes {
            if let Err(e) = self.cri.remove_pod_sandbox(&s.id).await
                && !e.is_not_found()
            {
                tracing::warn!(id = %s.id, error = %e, "removing a sandbox failed");
            }
        }
        self.volumes.release(&self.uid);
        let mounter = self.volumes.mounter();
        crate::volumes::unmount_all(mounter, &self.config.data_dir, &self.uid);
        let dir = self.config.data_dir.join("pods").join(&self.uid);
        let _ = tokio::fs::remove_dir_all(dir).await;
        remove_pod_cgroups(Path::new(CGROUP_FS), &self.config.cgroup_root, &self.uid);
    }

    /// Termination messages of exited containers not read yet.
    pub(super) fn read_messages(&mut self, pod: &Pod, rt: &RuntimePod) {
        for rc in rt.containers.iter().filter(|c| c.state == State::Exited) {
            if self.messages.contains_key(&rc.id) {
                continue;
            }
            let msg = termination_message(&self.config, pod, rc);
            self.messages.insert(rc.id.clone(), msg);
        }
        let ids: Vec<&String> = rt.containers.iter().map(|c| &c.id).collect();
        self.messages.retain(|id, _| ids.contains(&id));
    }
}

/// Where the cgroup hierarchies are mounted.
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// Removes the (empty, once the runtime has removed its containers) cgroups of pod `uid` in
/// every hierarchy under `fs`, whichever QoS class it had.
pub fn remove_pod_cgroups(fs: &Path, root: &str, uid: &str) {
    let root = root.trim_matches('/');
    let Ok(hierarchies) = std::fs::read_dir(fs) else {
        return;
    };
    for h in hierarchies.flatten() {
        for qos in ["", "burstable", "besteffort"] {
            let dir = h.path().join(root).join(qos).join(format!("pod{uid}"));
            rmdir_tree(&dir);
        }
    }
}

/// Removes a tree of empty directories (cgroups), children first.
fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The container's termination message: its message file, or with `FallbackToLogsOnError`
/// the tail of its log when it failed.
fn termination_message(config: &crate::KubeletConfig, pod: &Pod, rc: &RuntimeContainer) -> String {
    const MAX: usize = 4096;
    let file = rc.annotations.get(labels::TERMINATION_MESSAGE_HOST_PATH);
    let mut msg = file
        .and_then(|f| std::fs::read(f).ok())
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(MAX)]).into_owned())
        .unwrap_or_default();
    let policy = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|c| c.name == rc.name)?
            .termination_message_policy
            .clone()
    });
    if msg.is_empty() && rc.exit_code != 0 && policy.as_deref() == Some("FallbackToLogsOnError") {
        let path = spec::log_dir(config, pod).join(spec::log_path(&rc.name, rc.attempt));
        msg = log_tail(&std::fs::read_to_string(path).unwrap_or_default(), 80, 2048);
    }
    msg
}

/// The last `lines` lines (at most `max` bytes) of a CRI log file's messages.
pub fn log_tail(text: &str, lines: usize, max: usize) -> String {
    let msgs: Vec<&str> = text
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(l))
        .collect();
    let start = msgs.len().saturating_sub(lines);
    let mut out = msgs[start..].join("\n");
    if out.len() > max {
        let mut cut = out.len() - max;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_string();
    }
    out
}

/// Credentials for `registry` from a `.dockerconfigjson` document.
pub fn docker_auth(raw: &[u8], registry: &str) -> Option<AuthConfig> {
    let doc: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let auths = doc.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, v)| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        (host == registry).then_some(v)
    })?;
    let s = |k: &str| {
        entry
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some(AuthConfig {
        username: s("username"),
        password: s("password"),
        auth: s("auth"),
        server_address: registry.to_string(),
        ..Default::default()
    })
}

/// The start errors of a sync by container name, with crash-loop messages for held-back ones.
pub fn backoff_messages(
    pod: &Pod,
    held: &[(String, Duration)],
    delays: &HashMap<String, Duration>,
) -> HashMap<String, StartError> {
    let m = &pod.metadata;
    let who = format!(
        "{}_{}({})",
        m.name.clone().unwrap_or_default(),
        m.namespace.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default()
    );
    held.iter()
        .map(|(name, _)| {
            let delay = delays.get(name).copied().unwrap_or_default();
            let msg = format!(
                "back-off {} restarting failed container={name} pod={who}",
                go_duration(delay)
            );
            (name.clone(), err("CrashLoopBackOff", msg))
        })
        .collect()
}
