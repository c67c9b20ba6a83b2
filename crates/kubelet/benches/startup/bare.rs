//! The bare-CRI side: the node-local work a kubelet must do to start a one-container pod, with
//! the sandbox and container configurations the kubelet itself sends for the same pod spec.
//!
//! The configurations are rebuilt with the kubelet's own pure functions (`spec::sandbox_config`,
//! `spec::container_config`) from the pod as the API server stored it (after admission: its
//! service-account volume and mount), with the environment and volume mounts the kubelet sent
//! for a warm-up pod. [`Plan::new`] checks that rebuilding the warm-up pod's configurations
//! gives exactly what the kubelet sent. Volume mounts point at a copy of the warm-up pod's
//! volume directories. The only change is the pod-UID label's key, so that the kubelet's
//! orphan collection leaves the bare pods alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8rs_kubelet::KubeletConfig;
use k8rs_kubelet::cri::{ContainerConfig, ContainerState, Cri, PodSandboxConfig, labels};
use k8rs_kubelet::pods::cgroups::ensure_pod_cgroup;
use k8rs_kubelet::pods::spec::{self, ContainerParams, HostDns, ImageUser};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::timed::Timed;

/// The label key bare pods carry their UID under instead of the kubelet's.
const BARE_UID: &str = "k8rs-bench.io/bare-pod-uid";
/// How often the bare side polls ContainerStatus after StartContainer returned (the kubelet
/// reads the runtime right after its start calls, in the same sync).
const POLL: Duration = Duration::from_millis(5);
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// Everything needed to start bare pods like the kubelet starts the warm-up pod.
pub struct Plan {
    pod: Pod,
    config: KubeletConfig,
    host_dns: HostDns,
    env: Vec<(String, String)>,
    /// The volume mounts, over the bench's copies of the warm-up pod's volumes.
    mounts: Vec<cri::Mount>,
    image: String,
    image_user: ImageUser,
    node_memory: i64,
    /// Where bare pods' termination-message files go.
    dir: PathBuf,
}

/// A started bare pod.
pub struct BarePod {
    sandbox: String,
    pub uid: String,
}

fn message_host_path(c: &ContainerConfig) -> Option<String> {
    c.annotations
        .get(labels::TERMINATION_MESSAGE_HOST_PATH)
        .cloned()
}

fn copy_tree(from: &str, to: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "cp -a {from} {}: {}",
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Plan {
    /// A plan from the warm-up pod (as stored), the configurations the kubelet sent for it, and
    /// its image's user. Fails when the rebuilt configurations differ from the kubelet's.
    pub fn new(
        pod: Pod,
        sent: (&PodSandboxConfig, &ContainerConfig),
        config: &KubeletConfig,
        image_user: ImageUser,
        dir: &Path,
    ) -> anyhow::Result<Plan> {
        let (sandbox, container) = sent;
        let msg = message_host_path(container);
        let volume_mounts: Vec<cri::Mount> = container
            .mounts
            .iter()
            .filter(|m| Some(&m.host_path) != msg.as_ref())
            .cloned()
            .collect();
        let mut plan = Plan {
            pod,
            config: config.clone(),
            host_dns: HostDns::parse(&std::fs::read_to_string("/etc/resolv.conf")?),
            env: container
                .envs
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
            mounts: volume_mounts.clone(),
            image: container.image.clone().unwrap_or_default().image,
            image_user,
            node_memory: i64::try_from(
                k8rs_kubelet::node::HostInfo::read(&config.data_dir).memory_bytes,
            )?,
            dir: dir.to_path_buf(),
        };
        let (s, c) = plan.configs(&plan.pod, msg.map(PathBuf::from))?;
        anyhow::ensure!(
            &s == sandbox,
            "the bench's sandbox config differs from the kubelet's:\n{s:#?}\n{sandbox:#?}"
        );
        anyhow::ensure!(
            &c == container,
            "the bench's container config differs from the kubelet's:\n{c:#?}\n{container:#?}"
        );
        let volumes = dir.join("volumes");
        std::fs::create_dir_all(&volumes)?;
        for (i, m) in plan.mounts.iter_mut().enumerate() {
            if m.host_path
                .starts_with(&config.data_dir.display().to_string())
            {
                let copy = volumes.join(i.to_string());
                copy_tree(&m.host_path, &copy)?;
                m.host_path = copy.display().to_string();
            }
        }
        Ok(plan)
    }

    /// The kubelet's configurations for `pod`'s first sandbox and its one container.
    fn configs(
        &self,
        pod: &Pod,
        message_file: Option<PathBuf>,
    ) -> anyhow::Result<(PodSandboxConfig, ContainerConfig)> {
        let sandbox = spec::sandbox_config(pod, 0, &self.config, &self.host_dns);
        let c = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .ok_or_else(|| anyhow::anyhow!("the pod has no container"))?;
        let params = ContainerParams {
            attempt: 0,
            env: self.env.clone(),
            image: self.image.clone(),
            image_user: self.image_user.clone(),
            termination_message_file: message_file,
            node_memory: self.node_memory,
            mounts: self.mounts.clone(),
        };
        let container =
            spec::container_config(pod, c, &params).map_err(|e| anyhow::anyhow!(e.0))?;
        Ok((sandbox, container))
    }

    /// The warm-up pod renamed `name` with a fresh UID.
    fn pod(&self, name: &str) -> Pod {
        let mut pod = self.pod.clone();
        pod.metadata.name = Some(name.to_string());
        pod.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
        pod
    }

    /// Starts pod `name` as the kubelet would, and returns once ContainerStatus says Running:
    /// pod cgroup, log directory, RunPodSandbox (CNI), PodSandboxStatus (its IP), ImageStatus,
    /// termination-message file, CreateContainer, StartContainer, ContainerStatus.
    pub async fn start(&self, cri: &Timed, name: &str) -> anyhow::Result<BarePod> {
        let pod = self.pod(name);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let file = self.dir.join("pods").join(&uid).join("c-termination-log");
        let (mut sandbox, mut container) = self.configs(&pod, Some(file.clone()))?;
        for l in [&mut sandbox.labels, &mut container.labels] {
            if let Some(v) = l.remove(labels::POD_UID) {
                l.insert(BARE_UID.to_string(), v);
            }
        }
        let parent = spec::cgroup_parent(&self.config, &pod);
        ensure_pod_cgroup(Path::new(CGROUP_FS), &parent, &pod);
        tokio::fs::create_dir_all(&sandbox.log_directory).await?;
        let id = cri.run_pod_sandbox(sandbox.clone()).await?;
        let bare = BarePod {
            sandbox: id.clone(),
            uid,
        };
        cri.pod_sandbox_status(&id).await?;
        anyhow::ensure!(
            cri.image_status(&self.image).await?.is_some(),
            "image {} is not present",
            self.image
        );
        if let Some(d) = file.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&file, b"")?;
        let logs = Path::new(&sandbox.log_directory).join("c");
        tokio::fs::create_dir_all(&logs).await?;
        let c = cri.create_container(&id, container, sandbox).await?;
        cri.start_container(&c).await?;
        wait_running(cri, &c).await?;
        Ok(bare)
    }

    /// Stops and removes a bare pod and its files and cgroups.
    pub async fn remove(&self, cri: &Timed, p: &BarePod) -> anyhow::Result<()> {
        cri.stop_pod_sandbox(&p.sandbox).await?;
        cri.remove_pod_sandbox(&p.sandbox).await?;
        let _ = std::fs::remove_dir_all(self.dir.join("pods").join(&p.uid));
        remove_pod_cgroups(&self.config.cgroup_root, &p.uid);
        Ok(())
    }
}

async fn wait_running(cri: &Timed, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = cri.container_status(id).await?;
        if st.state == ContainerState::ContainerRunning as i32 {
            return Ok(());
        }
        anyhow::ensure!(
            st.state == ContainerState::ContainerCreated as i32 && Instant::now() < deadline,
            "bare container {id} is not running: {st:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Removes the empty cgroups of pod `uid` (whichever QoS class) in every hierarchy.
fn remove_pod_cgroups(root: &str, uid: &str) {
    let root = root.trim_matches('/');
    let Ok(hierarchies) = std::fs::read_dir(CGROUP_FS) else {
        return;
    };
    for h in hierarchies.flatten() {
        for qos in ["", "burstable", "besteffort"] {
            let _ = std::fs::remove_dir(h.path().join(root).join(qos).join(format!("pod{uid}")));
        }
    }
}

/// Sandboxes of bare pods still in the runtime.
pub fn is_bare(labels: &HashMap<String, String>) -> bool {
    labels.contains_key(BARE_UID)
}
