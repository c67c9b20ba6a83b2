//! Pod-level cgroups (upstream's pod container manager): before the sandbox starts, the pod's
//! cgroup is made under its QoS class's with the pod's total cpu shares, cpu quota and memory
//! limit (when every container sets one), so that the pod as a whole is bounded; the runtime
//! then makes the containers' cgroups inside it.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::qos::{milli, whole};
use super::spec::{CPU_PERIOD, quota, shares};

/// The limits of a pod's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodLimits {
    pub cpu_shares: i64,
    /// `None`: unbounded (some container has no cpu limit).
    pub cpu_quota: Option<i64>,
    /// `None`: unbounded (some container has no memory limit).
    pub memory: Option<i64>,
}

/// The pod's limits: requests summed for shares, limits summed when all containers set them
/// (init containers count by their maximum, as upstream).
pub fn pod_limits(pod: &Pod) -> PodLimits {
    let Some(spec) = pod.spec.as_ref() else {
        return PodLimits::default();
    };
    let get = |c: &k8s_openapi::api::core::v1::Container, limits: bool, name: &str| {
        let r = c.resources.as_ref()?;
        let list = if limits {
            r.limits.as_ref()
        } else {
            r.requests.as_ref().or(r.limits.as_ref())
        };
        list?.get(name).cloned()
    };
    let mut cpu_req = 0;
    let mut cpu_lim = Some(0);
    let mut mem_lim = Some(0);
    for c in &spec.containers {
        cpu_req += get(c, false, "cpu").map_or(0, |q| milli(&q));
        cpu_lim = cpu_lim.zip(get(c, true, "cpu")).map(|(a, q)| a + milli(&q));
        mem_lim = mem_lim
            .zip(get(c, true, "memory"))
            .map(|(a, q)| a + whole(&q));
    }
    for c in spec.init_containers.iter().flatten() {
        cpu_req = cpu_req.max(get(c, false, "cpu").map_or(0, |q| milli(&q)));
        cpu_lim = cpu_lim
            .zip(get(c, true, "cpu"))
            .map(|(a, q)| a.max(milli(&q)));
        mem_lim = mem_lim
            .zip(get(c, true, "memory"))
            .map(|(a, q)| a.max(whole(&q)));
    }
    PodLimits {
        cpu_shares: shares(cpu_req),
        cpu_quota: cpu_lim.filter(|v| *v > 0).map(quota),
        memory: mem_lim.filter(|v| *v > 0),
    }
}

/// The files to write for `limits` in the cgroup `parent`, under the cgroup filesystem `fs`
/// (v2 when `fs/cgroup.controllers` exists, else the v1 `cpu` and `memory` hierarchies).
pub fn cgroup_files(fs: &Path, parent: &str, limits: &PodLimits) -> Vec<(PathBuf, String)> {
    let rel = parent.trim_start_matches('/');
    let mut out = Vec::new();
    if fs.join("cgroup.controllers").exists() {
        let dir = fs.join(rel);
        let weight = 1 + ((limits.cpu_shares - 2) * 9999) / 262_142;
        out.push((dir.join("cpu.weight"), weight.clamp(1, 10_000).to_string()));
        let max = limits
            .cpu_quota
            .map_or("max".to_string(), |q| q.to_string());
        out.push((dir.join("cpu.max"), format!("{max} {CPU_PERIOD}")));
        let mem = limits.memory.map_or("max".to_string(), |m| m.to_string());
        out.push((dir.join("memory.max"), mem));
    } else {
        let cpu = fs.join("cpu").join(rel);
        out.push((cpu.join("cpu.shares"), limits.cpu_shares.to_string()));
        out.push((cpu.join("cpu.cfs_period_us"), CPU_PERIOD.to_string()));
        out.push((
            cpu.join("cpu.cfs_quota_us"),
            limits.cpu_quota.unwrap_or(-1).to_string(),
        ));
        let mem = fs.join("memory").join(rel);
        out.push((
            mem.join("memory.limit_in_bytes"),
            limits.memory.unwrap_or(-1).to_string(),
        ));
    }
    out
}

/// Makes the pod's cgroup with its limits; failures are logged (the pod still runs, unbounded
/// as a whole).
pub fn ensure_pod_cgroup(fs: &Path, parent: &str, pod: &Pod) {
    for (file, value) in cgroup_files(fs, parent, &pod_limits(pod)) {
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let result = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &value));
        if let Err(e) = result {
            tracing::debug!(file = %file.display(), error = %e, "setting a pod cgroup limit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"spec": v})).unwrap_or_default()
    }

    #[test]
    fn limits_sum_containers_and_take_the_init_maximum() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}],
            "initContainers": [{"name": "i", "resources": {"limits": {"cpu": "2", "memory": "32Mi"}}}]}));
        let l = pod_limits(&p);
        assert_eq!(l.cpu_shares, shares(750).max(shares(2000)));
        assert_eq!(l.cpu_quota, Some(quota(2000)));
        assert_eq!(l.memory, Some(128 << 20));
        let unbounded = pod(
            json!({"containers": [{"name": "a", "resources": {"limits": {"memory": "64Mi"}}}, {"name": "b"}]}),
        );
        let l = pod_limits(&unbounded);
        assert_eq!((l.cpu_quota, l.memory), (None, None));
    }

    #[test]
    fn writes_v1_files_and_v2_files() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let limits = PodLimits {
            cpu_shares: 1024,
            cpu_quota: Some(50_000),
            memory: Some(1 << 20),
        };
        let files = cgroup_files(dir.path(), "/kubepods/burstable/podu", &limits);
        assert!(
            files.contains(&(
                dir.path()
                    .join("memory/kubepods/burstable/podu/memory.limit_in_bytes"),
                "1048576".into()
            ))
        );
        assert!(
            files.contains(&(
                dir.path()
                    .join("cpu/kubepods/burstable/podu/cpu.cfs_quota_us"),
                "50000".into()
            ))
        );
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory").ok();
        let files = cgroup_files(dir.path(), "/kubepods/burstable/podu", &limits);
        assert!(files.contains(&(
            dir.path().join("kubepods/burstable/podu/cpu.max"),
            "50000 100000".into()
        )));
        assert!(files.contains(&(
            dir.path().join("kubepods/burstable/podu/memory.max"),
            "1048576".into()
        )));
    }
}
