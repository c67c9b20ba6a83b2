//! A pod's volumes, as upstream's volume manager (small): before its containers start, each
//! volume of the pod is prepared under `<data_dir>/pods/<uid>/volumes/<plugin>/<name>` (or found
//! on the host: hostPath, persistent volumes), the API-data volumes are re-synced periodically
//! so a changed ConfigMap reaches the running pod, every container gets its CRI mounts from its
//! `volumeMounts`, and all of it is unmounted and removed once the pod is torn down.
//!
//! Talks to the API server as a client only (ConfigMaps, Secrets, PVCs, PVs, TokenRequests);
//! mount syscalls go through [`Mounter`].

pub mod atomic;
pub mod hostpath;
mod mounter;
pub mod mounts;
pub mod sources;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::Api;

pub use mounter::{FakeMounter, Mounter, SysMounter, mount_points};
pub use mounts::container_mounts;

use sources::{DEFAULT_MODE, Fetched, Modes};

/// How often the API-data volumes of a running pod are re-synced (upstream: the sync period
/// plus the object cache TTL; about 10 s with the watch strategy's delays).
pub const RESYNC: Duration = Duration::from_secs(10);
/// How soon a failed set-up is retried.
pub const RETRY: Duration = Duration::from_secs(2);

/// Whether secret, downwardAPI and projected volumes are tmpfs mounts, as upstream's. Off:
/// every pod has a projected token volume, and a tmpfs outlives a kubelet stopped without
/// tearing its pods down (tests, `killall`), so they live on disk under the data directory
/// (root only) and only `emptyDir.medium: Memory` mounts a tmpfs.
pub const SECRETS_IN_MEMORY: bool = false;

/// A set-up volume: where it is on the host and whether it must be mounted read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// The directory of a pod's volumes.
pub fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid).join("volumes")
}

/// Unmounts everything mounted under the pod's volume directory (deepest first); the caller
/// removes the directory.
pub fn unmount_all(mounter: &dyn Mounter, data_dir: &Path, uid: &str) {
    let mut points = mounter.mounts_under(&pod_dir(data_dir, uid));
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = mounter.unmount(&p) {
            tracing::warn!(path = %p.display(), error = %e, "unmounting a volume failed");
        }
    }
}

/// Unmounts every volume mount under `dir` (a data directory), deepest first: for clean-up
/// after a kubelet that stopped without tearing its pods down (`killall`, tests).
pub fn unmount_under(dir: &Path) {
    let m = SysMounter;
    let mut points: Vec<PathBuf> = m
        .mounts_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/volumes/kubernetes.io~"))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = m.unmount(&p) {
            tracing::warn!(path = %p.display(), error = %e, "unmounting a volume failed");
        }
    }
}

/// One pod's volume state, kept by its worker.
#[derive(Debug)]
pub struct PodVolumes {
    mounter: Arc<dyn Mounter>,
    tokens: token::Tokens,
    paths: HashMap<String, Mounted>,
    /// When the next set-up or re-sync is due.
    next: Option<Instant>,
    /// The labels and annotations last projected (a change re-syncs downwardAPI files).
    meta: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

fn pod_meta(pod: &Pod) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let m = &pod.metadata;
    (
        m.labels.clone().unwrap_or_default(),
        m.annotations.clone().unwrap_or_default(),
    )
}

fn volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

impl PodVolumes {
    pub fn new(mounter: Arc<dyn Mounter>) -> PodVolumes {
        PodVolumes {
            mounter,
            tokens: token::Tokens::default(),
            paths: HashMap::new(),
            next: None,
            meta: None,
        }
    }

    pub fn mounter(&self) -> &dyn Mounter {
        self.mounter.as_ref()
    }

    /// The set-up volumes by name.
    pub fn paths(&self) -> &HashMap<String, Mounted> {
        &self.paths
    }

    /// Whether every volume of `pod` is set up.
    pub fn ready(&self, pod: &Pod) -> bool {
        volumes(pod)
            .iter()
            .all(|v| self.paths.contains_key(&v.name))
    }

    /// Whether a set-up or re-sync is due at `now`.
    pub fn due(&self, pod: &Pod, now: Instant) -> bool {
        self.next.is_none_or(|n| now >= n) || self.meta.as_ref() != Some(&pod_meta(pod))
    }

    /// Sets up (or re-syncs) every volume of `pod`; the volumes that failed, with why.
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        data_dir: &Path,
        pod: &Pod,
    ) -> Vec<(String, String)> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let root = pod_dir(data_dir, &uid);
        let host = crate::node::HostInfo::read(data_dir);
        let facts = crate::pods::env::Facts {
            node_milli_cpu: i64::try_from(host.cpus * 1000).unwrap_or(i64::MAX),
            node_memory: i64::try_from(host.memory_bytes).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let mut failed = Vec::new();
        for v in volumes(pod) {
            match self.setup(client, &root, pod, v, &facts).await {
                Ok(m) => {
                    self.paths.insert(v.name.clone(), m);
                }
                Err(e) => failed.push((v.name.clone(), e)),
            }
        }
        let wait = if failed.is_empty() { RESYNC } else { RETRY };
        self.next = Some(Instant::now() + wait);
        self.meta = Some(pod_meta(pod));
        failed
    }

    async fn setup(
        &mut self,
        client: &kube::Client,
        root: &Path,
        pod: &Pod,
        v: &Volume,
        facts: &crate::pods::env::Facts,
    ) -> Result<Mounted, String> {
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref()?.fs_group);
        let dir = |plugin: &str| root.join(format!("kubernetes.io~{plugin}")).join(&v.name);
        let writable = |host_path: PathBuf| Mounted {
            host_path,
            read_only: false,
        };
        if let Some(e) = &v.empty_dir {
            let d = dir("empty-dir");
            let memory = e.medium.as_deref() == Some("Memory");
            let size = e.size_limit.as_ref().map(crate::pods::qos::whole);
            self.empty_dir(&d, memory, size, fs_group)?;
            return Ok(writable(d));
        }
        if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            hostpath::check_type(&path, h.type_.as_deref().unwrap_or_default())?;
            return Ok(writable(path));
        }
        if let Some(c) = &v.persistent_volume_claim {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let path = claim_path(client, ns, &c.claim_name).await?;
            return Ok(Mounted {
                host_path: path,
                read_only: c.read_only == Some(true),
            });
        }
        let fetched = self.fetch(client, pod, v).await?;
        let (plugin, payload) = api_payload(v, pod, facts, &fetched, fs_group)?;
        let d = dir(plugin);
        if SECRETS_IN_MEMORY && plugin != "configmap" {
            // Upstream keeps secrets and tokens off the disk (a memory-backed emptyDir).
            self.empty_dir(&d, true, None, None)?;
        }
        let gid = fs_group.and_then(|g| u32::try_from(g).ok());
        atomic::write(&d, &payload, gid).map_err(|e| format!("writing {}: {e}", d.display()))?;
        Ok(Mounted {
            host_path: d,
            read_only: true,
        })
    }

    fn empty_dir(
        &self,
        d: &Path,
        memory: bool,
        size: Option<i64>,
        fs_group: Option<i64>,
    ) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e: std::io::Error| format!("{}: {e}", d.display());
        std::fs::create_dir_all(d).map_err(io)?;
        if memory && !self.mounter.is_mount_point(d) {
            let size = size.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0);
            self.mounter.mount_tmpfs(d, size).map_err(io)?;
        }
        let mut mode = 0o777;
        if let Some(g) = fs_group.and_then(|g| u32::try_from(g).ok()) {
            std::os::unix::fs::chown(d, None, Some(g)).map_err(io)?;
            mode |= 0o2000;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).map_err(io)
    }

    /// The ConfigMaps, Secrets and tokens a volume refers to.
    async fn fetch(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        v: &Volume,
    ) -> Result<Fetched, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut f = Fetched::default();
        let mut cms = Vec::new();
        let mut secrets = Vec::new();
        cms.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            cms.extend(s.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(s.secret.as_ref().map(|c| c.name.clone()));
            if let Some(t) = &s.service_account_token {
                let key = sources::token_key(t.audience.as_deref(), t.expiration_seconds);
                let tok = self.tokens.get(client, pod, &key).await?;
                f.tokens.insert(key, tok);
            }
        }
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for name in cms {
            let got = cm_api.get_opt(&name).await.map_err(|e| e.to_string())?;
            f.config_maps.insert(name, got);
        }
        let secret_api: Api<Secret> = Api::namespaced(client.clone(), ns);
        for name in secrets {
            let got = secret_api.get_opt(&name).await.map_err(|e| e.to_string())?;
            f.secrets.insert(name, got);
        }
        Ok(f)
    }
}

/// The plugin directory name and payload of an API-data volume.
fn api_payload(
    v: &Volume,
    pod: &Pod,
    facts: &crate::pods::env::Facts,
    f: &Fetched,
    fs_group: Option<i64>,
) -> Result<(&'static str, atomic::Payload), String> {
    let modes = |m: Option<i32>| Modes {
        default_mode: m.unwrap_or(DEFAULT_MODE),
        fs_group,
    };
    let mut out = atomic::Payload::new();
    if let Some(c) = &v.config_map {
        let (opt, m) = (c.optional == Some(true), modes(c.default_mode));
        sources::config_map(&c.name, c.items.as_deref(), opt, f, m, &mut out)?;
        return Ok(("configmap", out));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let (opt, m) = (s.optional == Some(true), modes(s.default_mode));
        sources::secret(&name, s.items.as_deref(), opt, f, m, &mut out)?;
        return Ok(("secret", out));
    }
    if let Some(d) = &v.downward_api {
        let items = d.items.as_deref().unwrap_or_default();
        sources::downward(items, pod, facts, modes(d.default_mode), &mut out)?;
        return Ok(("downward-api", out));
    }
    if let Some(p) = &v.projected {
        return Ok(("projected", sources::projected(p, pod, facts, f, fs_group)?));
    }
    Err(format!("volume {} has an unsupported type", v.name))
}

/// The host path of a bound claim's volume (hostPath or local persistent volumes).
async fn claim_path(client: &kube::Client, ns: &str, claim: &str) -> Result<PathBuf, String> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = pvcs
        .get_opt(claim)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    let Some(pv_name) = pv_name.filter(|_| bound) else {
        return Err(format!("persistentvolumeclaim \"{claim}\" not bound"));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get_opt(&pv_name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
    pv_path(&pv)
}

/// Where a persistent volume is on this node.
pub fn pv_path(pv: &PersistentVolume) -> Result<PathBuf, String> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.clone().unwrap_or_default();
    if let Some(h) = &spec.host_path {
        let path = PathBuf::from(&h.path);
        hostpath::check_type(&path, h.type_.as_deref().unwrap_or_default())?;
        return Ok(path);
    }
    if let Some(l) = &spec.local {
        let path = PathBuf::from(&l.path);
        if !path.exists() {
            return Err(format!(
                "local volume {name}: path {} does not exist",
                l.path
            ));
        }
        return Ok(path);
    }
    Err(format!(
        "persistentvolume \"{name}\" has an unsupported type"
    ))
}
