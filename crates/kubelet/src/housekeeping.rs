//! The node's periodic upkeep, as upstream's container log manager, image garbage collector
//! and eviction manager: container logs rotated past a size (keeping a few files), unused
//! images removed when the image filesystem fills up, and pods evicted under memory or disk
//! pressure (upstream's default hard thresholds).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::KubeletConfig;
use crate::cri::{Cri, Image};
use crate::node::{EVICTION_MEMORY_BYTES, EVICTION_NODEFS_PERCENT, HostInfo};
use crate::pods::qos::qos_class;

/// How often logs are checked for rotation and pressure for eviction (upstream: 10 s).
pub const CHECK_PERIOD: Duration = Duration::from_secs(10);
/// How often images are checked for garbage collection (upstream: 5 min).
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
/// An image is collected only once unused for this long (upstream's `ImageMinimumGCAge`).
pub const IMAGE_MIN_AGE: Duration = Duration::from_secs(120);

/// Runs the upkeep loops until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    cri: Arc<dyn Cri>,
    shutdown: CancellationToken,
) {
    let mut check = tokio::time::interval(CHECK_PERIOD);
    let start = tokio::time::Instant::now() + IMAGE_GC_PERIOD;
    let mut gc = tokio::time::interval_at(start, IMAGE_GC_PERIOD);
    let mut unused_since = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = check.tick() => {
                rotate_logs(&config, cri.as_ref()).await;
                if config.eviction {
                    evict_under_pressure(&client, &config).await;
                }
            }
            _ = gc.tick() => collect_images(&config, cri.as_ref(), &mut unused_since).await,
        }
    }
}

/// Rotated files of `log` (`<log>.<stamp>`) to delete so that at most `max_files` remain with
/// the live one: the oldest first.
pub fn rotated_to_remove(mut rotated: Vec<PathBuf>, max_files: usize) -> Vec<PathBuf> {
    rotated.sort();
    let keep = max_files.saturating_sub(1);
    let excess = rotated.len().saturating_sub(keep);
    rotated.into_iter().take(excess).collect()
}

fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Rotates the logs of running containers past the size limit.
pub async fn rotate_logs(config: &KubeletConfig, cri: &dyn Cri) {
    let Ok(containers) = cri.list_containers(Default::default()).await else {
        return;
    };
    for c in containers {
        if c.state != crate::cri::ContainerState::ContainerRunning as i32 {
            continue;
        }
        let Ok(status) = cri.container_status(&c.id).await else {
            continue;
        };
        if status.log_path.is_empty() {
            continue;
        }
        let log = PathBuf::from(&status.log_path);
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        if size <= config.container_log_max_size {
            continue;
        }
        let stamp = Utc::now().format("%Y%m%d-%H%M%S%.6f");
        let rotated = PathBuf::from(format!("{}.{stamp}", log.display()));
        if let Err(e) = std::fs::rename(&log, &rotated) {
            tracing::warn!(log = %log.display(), error = %e, "rotating a container log failed");
            continue;
        }
        if let Err(e) = cri.reopen_container_log(&c.id).await {
            tracing::warn!(id = %c.id, error = %e, "reopening a container log failed");
        }
        for old in rotated_to_remove(rotated_files(&log), config.container_log_max_files) {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// Images to remove to free `to_free` bytes: unused and unpinned ones, largest first.
pub fn images_to_remove(
    images: &[Image],
    in_use: &HashSet<String>,
    pinned: &[String],
    to_free: u64,
) -> Vec<String> {
    let mut candidates: Vec<&Image> = images
        .iter()
        .filter(|i| !i.pinned && !in_use.contains(&i.id))
        .filter(|i| !i.repo_tags.iter().any(|t| pinned.contains(t)))
        .collect();
    candidates.sort_by_key(|i| std::cmp::Reverse(i.size));
    let mut freed = 0;
    let mut out = Vec::new();
    for i in candidates {
        if freed >= to_free {
            break;
        }
        freed += i.size;
        out.push(i.id.clone());
    }
    out
}

/// Removes unused images (unused for at least [`IMAGE_MIN_AGE`]) when the filesystem is
/// fuller than the high threshold, down to the low one. `unused_since` remembers when each
/// image was first seen unused.
pub async fn collect_images(
    config: &KubeletConfig,
    cri: &dyn Cri,
    unused_since: &mut HashMap<String, tokio::time::Instant>,
) {
    let (Ok(images), Ok(containers)) = (
        cri.list_images().await,
        cri.list_containers(Default::default()).await,
    ) else {
        return;
    };
    let mut in_use: HashSet<String> = containers
        .iter()
        .flat_map(|c| [c.image_ref.clone(), c.image_id.clone()])
        .filter(|s| !s.is_empty())
        .collect();
    let now = tokio::time::Instant::now();
    unused_since.retain(|id, _| !in_use.contains(id) && images.iter().any(|i| &i.id == id));
    for i in images.iter().filter(|i| !in_use.contains(&i.id)) {
        unused_since.entry(i.id.clone()).or_insert(now);
    }
    // Too recently unused counts as in use.
    in_use.extend(
        unused_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) < IMAGE_MIN_AGE)
            .map(|(id, _)| id.clone()),
    );
    let host = HostInfo::read(&config.data_dir);
    if host.storage_bytes == 0 {
        return;
    }
    let used = host.storage_bytes - host.storage_available_bytes;
    if used * 100 < host.storage_bytes * config.image_gc_high_percent {
        return;
    }
    let target = host.storage_bytes * config.image_gc_low_percent / 100;
    let to_free = used.saturating_sub(target);
    for id in images_to_remove(&images, &in_use, &config.pinned_images, to_free) {
        tracing::info!(image = %id, "removing an unused image to free disk space");
        if let Err(e) = cri.remove_image(&id).await {
            tracing::warn!(image = %id, error = %e, "removing an image failed");
        }
    }
}

/// The resource the node is short of, if any, with upstream's eviction message.
pub fn pressure(host: &HostInfo) -> Option<(&'static str, String)> {
    if host.memory_bytes > 0 && host.memory_available_bytes < EVICTION_MEMORY_BYTES {
        let msg = format!(
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: {}Ki. ",
            host.memory_available_bytes / 1024
        );
        return Some(("memory", msg));
    }
    if host.storage_bytes > 0
        && host.storage_available_bytes * 100 < host.storage_bytes * EVICTION_NODEFS_PERCENT
    {
        let msg = format!(
            "The node was low on resource: ephemeral-storage. Threshold quantity: {}, available: {}Ki. ",
            host.storage_bytes * EVICTION_NODEFS_PERCENT / 100,
            host.storage_available_bytes / 1024
        );
        return Some(("ephemeral-storage", msg));
    }
    None
}

/// The pod to evict first: BestEffort before Burstable before Guaranteed, lower priority
/// first; never terminal or deleted pods.
pub fn eviction_victim(pods: &[Pod]) -> Option<&Pod> {
    let rank = |p: &Pod| {
        let q = match qos_class(p) {
            "BestEffort" => 0,
            "Burstable" => 1,
            _ => 2,
        };
        let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        (q, prio)
    };
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .min_by_key(|p| rank(p))
}

/// Under pressure, fails one pod with reason `Evicted` (its worker then stops it).
async fn evict_under_pressure(client: &kube::Client, config: &KubeletConfig) {
    let host = HostInfo::read(&config.data_dir);
    let Some((_, message)) = pressure(&host) else {
        return;
    };
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={}", config.node_name));
    let Ok(list) = api.list(&lp).await else {
        return;
    };
    let Some(victim) = eviction_victim(&list.items) else {
        return;
    };
    let ns = victim.metadata.namespace.clone().unwrap_or_default();
    let name = victim.metadata.name.clone().unwrap_or_default();
    tracing::warn!(pod = %format!("{ns}/{name}"), %message, "evicting a pod");
    let patch = json!({"status": {"phase": "Failed", "reason": "Evicted", "message": message}});
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(error = %e, "evicting a pod failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_rotated_logs() {
        let files: Vec<PathBuf> = [
            "0.log.20260101-000003",
            "0.log.20260101-000001",
            "0.log.20260101-000002",
            "0.log.20260101-000004",
            "0.log.20260101-000005",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let gone = rotated_to_remove(files, 5);
        assert_eq!(gone, [PathBuf::from("0.log.20260101-000001")]);
    }

    #[test]
    fn image_gc_spares_used_and_pinned_images() {
        let img = |id: &str, tag: &str, size| Image {
            id: id.into(),
            repo_tags: vec![tag.into()],
            size,
            ..Default::default()
        };
        let images = [
            img("a", "pause:1", 10),
            img("b", "x:1", 50),
            img("c", "y:1", 30),
            img("d", "z:1", 20),
        ];
        let in_use = HashSet::from(["b".to_string()]);
        let got = images_to_remove(&images, &in_use, &["pause:1".into()], 40);
        assert_eq!(got, ["c", "d"]);
    }

    #[test]
    fn eviction_takes_best_effort_first() {
        let pod = |name: &str, limits: bool, phase: &str| -> Pod {
            let res = if limits {
                json!({"limits": {"cpu": "1", "memory": "1Gi"}})
            } else {
                json!({})
            };
            serde_json::from_value(json!({"metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "resources": res}]}, "status": {"phase": phase}}))
            .unwrap_or_default()
        };
        let pods = [
            pod("g", true, "Running"),
            pod("done", false, "Succeeded"),
            pod("be", false, "Running"),
        ];
        assert_eq!(
            eviction_victim(&pods).and_then(|p| p.metadata.name.as_deref()),
            Some("be")
        );
        let low = HostInfo {
            memory_bytes: 1 << 30,
            memory_available_bytes: 50 << 20,
            ..Default::default()
        };
        assert_eq!(pressure(&low).map(|p| p.0), Some("memory"));
        let fine = HostInfo {
            memory_bytes: 1 << 30,
            memory_available_bytes: 500 << 20,
            ..Default::default()
        };
        assert_eq!(pressure(&fine), None);
    }
}
