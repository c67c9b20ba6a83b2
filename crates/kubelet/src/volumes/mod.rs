//! A pod's volumes, as upstream's volume manager (small): before its containers start, each
//! volume of the pod is prepared under `<data_dir>/pods/<uid>/volumes/<plugin>/<name>` (or found
//! on the host: hostPath, persistent volumes), the API-data volumes are rewritten when a
//! ConfigMap or Secret they refer to changes ([`watches`]) and re-synced periodically (tokens,
//! missed changes), every container gets its CRI mounts from its `volumeMounts`, and all of it
//! is unmounted and removed once the pod is torn down.
//!
//! Talks to the API server as a client only (ConfigMaps, Secrets, PVCs, PVs, TokenRequests);
//! mount syscalls go through [`Mounter`].

pub mod atomic;
pub mod hostpath;
mod mounter;
pub mod mounts;
pub mod sources;
pub mod token;
pub mod watches;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::Api;
use tokio::sync::Notify;

pub use mounter::{FakeMounter, Mounter, SysMounter, mount_points};
pub use mounts::container_mounts;

use sources::{DEFAULT_MODE, Fetched, Modes};

/// How often the API-data volumes of a running pod are re-synced besides the watches of what
/// they refer to (upstream: the one-minute sync period), for tokens and missed changes.
pub const RESYNC: Duration = Duration::from_secs(60);
/// How soon a failed set-up is retried.
pub const RETRY: Duration = Duration::from_secs(2);

/// Whether a plugin's volumes are memory-backed, as upstream's: secret, downwardAPI and
/// projected volumes (secrets and service-account tokens never touch the disk) are a tmpfs
/// mounted on the volume directory, unmounted at pod teardown (or by [`unmount_under`] after a
/// kubelet that stopped without tearing its pods down); configMap volumes are plain
/// directories.
pub fn in_memory(plugin: &str) -> bool {
    plugin != "configmap"
}

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
    /// The kubelet's watches of referenced ConfigMaps and Secrets, when it has them.
    watches: Option<Arc<watches::ObjectWatches>>,
    /// Notified when something the pod's volumes refer to changed.
    wake: Arc<Notify>,
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
            watches: None,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Rewrites the volumes when the ConfigMaps and Secrets they refer to change, through the
    /// kubelet's `watches`.
    pub fn watch_with(&mut self, watches: Arc<watches::ObjectWatches>) {
        self.watches = Some(watches);
    }

    /// Notified when something the pod's volumes refer to changed: then [`Self::expire`].
    pub fn changed(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Makes a re-sync due now.
    pub fn expire(&mut self) {
        self.next = None;
    }

    /// The pod is torn down: its references are watched no more.
    pub fn release(&self, uid: &str) {
        if let Some(w) = &self.watches {
            w.forget(uid);
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

    /// Sets up (or re-syncs) every volume of `pod`; the volumes that failed, with why. The API
    /// objects are fetched first; the file work of all volumes is then one blocking task.
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        data_dir: &Path,
        pod: &Pod,
    ) -> Vec<(String, String)> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let root = pod_dir(data_dir, &uid);
        if let Some(w) = &self.watches {
            w.set(&uid, &watches::referenced(pod), &self.wake);
        }
        let names: Vec<String> = volumes(pod).iter().map(|v| v.name.clone()).collect();
        let mut plans = Vec::new();
        for v in volumes(pod) {
            plans.push((v.name.clone(), self.plan(client, &root, pod, v).await));
        }
        let (mounter, data_dir, owned) =
            (self.mounter.clone(), data_dir.to_path_buf(), pod.clone());
        let work = move || {
            let facts = node_facts(&data_dir);
            let group = fs_group(&owned);
            plans
                .into_iter()
                .map(|(name, plan)| {
                    let done = plan.and_then(|p| p.apply(mounter.as_ref(), &owned, &facts, group));
                    (name, done)
                })
                .collect::<Vec<_>>()
        };
        let done = if names.is_empty() {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
                let why = format!("volume set-up task: {e}");
                names.into_iter().map(|n| (n, Err(why.clone()))).collect()
            })
        };
        let mut failed = Vec::new();
        for (name, result) in done {
            match result {
                Ok(m) => {
                    self.paths.insert(name, m);
                }
                Err(e) => failed.push((name, e)),
            }
        }
        let wait = if failed.is_empty() { RESYNC } else { RETRY };
        self.next = Some(Instant::now() + wait);
        self.meta = Some(pod_meta(pod));
        failed
    }

    /// What a volume's set-up needs from the API, fetched; the file work is left to do.
    async fn plan(
        &mut self,
        client: &kube::Client,
        root: &Path,
        pod: &Pod,
        v: &Volume,
    ) -> Result<Plan, String> {
        let dir = |plugin: &str| root.join(format!("kubernetes.io~{plugin}")).join(&v.name);
        if let Some(e) = &v.empty_dir {
            return Ok(Plan::EmptyDir {
                dir: dir("empty-dir"),
                memory: e.medium.as_deref() == Some("Memory"),
                size: e.size_limit.as_ref().map(crate::pods::qos::whole),
            });
        }
        if let Some(h) = &v.host_path {
            return Ok(Plan::HostPath {
                path: PathBuf::from(&h.path),
                kind: h.type_.clone().unwrap_or_default(),
            });
        }
        if let Some(c) = &v.persistent_volume_claim {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let pv = claim_volume(client, ns, &c.claim_name).await?;
            return Ok(Plan::Claim {
                pv: Box::new(pv),
                read_only: c.read_only == Some(true),
            });
        }
        let fetched = self.fetch(client, pod, v).await?;
        Ok(Plan::Api {
            root: root.to_path_buf(),
            volume: Box::new(v.clone()),
            fetched,
        })
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

/// A volume's set-up with its API objects fetched: the (blocking) file work left.
#[derive(Debug)]
enum Plan {
    EmptyDir {
        dir: PathBuf,
        memory: bool,
        size: Option<i64>,
    },
    HostPath {
        path: PathBuf,
        kind: String,
    },
    Claim {
        pv: Box<PersistentVolume>,
        read_only: bool,
    },
    /// A configMap, secret, downwardAPI or projected volume under the pod's volumes `root`.
    Api {
        root: PathBuf,
        volume: Box<Volume>,
        fetched: Fetched,
    },
}

impl Plan {
    /// Does the file work (directories, tmpfs mounts, payload files); blocking.
    fn apply(
        self,
        mounter: &dyn Mounter,
        pod: &Pod,
        facts: &crate::pods::env::Facts,
        fs_group: Option<i64>,
    ) -> Result<Mounted, String> {
        let writable = |host_path: PathBuf| Mounted {
            host_path,
            read_only: false,
        };
        match self {
            Plan::EmptyDir { dir, memory, size } => {
                empty_dir(mounter, &dir, memory, size, fs_group)?;
                Ok(writable(dir))
            }
            Plan::HostPath { path, kind } => {
                hostpath::check_type(&path, &kind)?;
                Ok(writable(path))
            }
            Plan::Claim { pv, read_only } => Ok(Mounted {
                host_path: pv_path(&pv)?,
                read_only,
            }),
            Plan::Api {
                root,
                volume,
                fetched,
            } => {
                let (plugin, payload) = api_payload(&volume, pod, facts, &fetched, fs_group)?;
                let d = root
                    .join(format!("kubernetes.io~{plugin}"))
                    .join(&volume.name);
                if in_memory(plugin) {
                    // Upstream keeps secrets and tokens off the disk (a memory-backed emptyDir).
                    empty_dir(mounter, &d, true, None, None)?;
                }
                let gid = fs_group.and_then(|g| u32::try_from(g).ok());
                atomic::write(&d, &payload, gid)
                    .map_err(|e| format!("writing {}: {e}", d.display()))?;
                Ok(Mounted {
                    host_path: d,
                    read_only: true,
                })
            }
        }
    }
}

fn fs_group(pod: &Pod) -> Option<i64> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref()?.fs_group)
}

/// The node's allocatable cpu and memory, for downwardAPI resource fields left unset; blocking.
fn node_facts(data_dir: &Path) -> crate::pods::env::Facts {
    let host = crate::node::HostInfo::read(data_dir);
    crate::pods::env::Facts {
        node_milli_cpu: i64::try_from(host.cpus * 1000).unwrap_or(i64::MAX),
        node_memory: i64::try_from(host.memory_bytes).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// Makes an emptyDir-like directory (a tmpfs when `memory`), world-writable or group-owned by
/// `fs_group` with the setgid bit; blocking.
fn empty_dir(
    mounter: &dyn Mounter,
    d: &Path,
    memory: bool,
    size: Option<i64>,
    fs_group: Option<i64>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| format!("{}: {e}", d.display());
    std::fs::create_dir_all(d).map_err(io)?;
    if memory && !mounter.is_mount_point(d) {
        let size = size.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0);
        mounter.mount_tmpfs(d, size).map_err(io)?;
    }
    let mut mode = 0o777;
    if let Some(g) = fs_group.and_then(|g| u32::try_from(g).ok()) {
        std::os::unix::fs::chown(d, None, Some(g)).map_err(io)?;
        mode |= 0o2000;
    }
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).map_err(io)
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

/// The persistent volume a bound claim's is (its path is checked by [`pv_path`]).
async fn claim_volume(
    client: &kube::Client,
    ns: &str,
    claim: &str,
) -> Result<PersistentVolume, String> {
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
    pvs.get_opt(&pv_name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))
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
