//! `k8rs killall`: stops every pod, containerd and its shims, and cleans up what they left, for
//! one data dir only (never another agent's processes, mounts or bridge).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
use rustix::mount::UnmountFlags;
use rustix::process::Signal;

use crate::config::ContainerdPaths;
use crate::{Error, cni, cri, proc};

/// How long the CRI part may take in all; then the processes are killed anyway.
const CRI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long containerd gets to exit on SIGTERM.
const CONTAINERD_GRACE: Duration = Duration::from_secs(5);

/// What [`killall`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillallReport {
    /// Pod sandboxes stopped and removed through the CRI.
    pub sandboxes_removed: usize,
    /// containerd, shim and container processes killed by pid.
    pub processes_killed: Vec<u32>,
    /// Mount points unmounted under `<data_dir>/agent`.
    pub unmounted: Vec<PathBuf>,
    /// The pod bridge deleted, if it existed.
    pub bridge_removed: Option<String>,
    /// What could not be done (the rest was done anyway).
    pub problems: Vec<String>,
}

/// Stops everything the agent with `data_dir` runs: every pod sandbox through the CRI (stop and
/// remove, so CNI releases the IPs and network namespaces), then containerd and, by pid, any shim
/// of our socket and its processes; unmounts whatever is left under `<data_dir>/agent`, deletes
/// the pod bridge named by our conflist, and removes containerd's state, socket and pid file and
/// the IPAM allocations. Images and containerd's root are kept.
pub async fn killall(data_dir: &Path) -> Result<KillallReport, Error> {
    let paths = ContainerdPaths::new(data_dir);
    let mut report = KillallReport::default();
    if paths.socket.exists() {
        match tokio::time::timeout(CRI_TIMEOUT, remove_sandboxes(&paths.socket)).await {
            Ok(Ok(n)) => report.sandboxes_removed = n,
            Ok(Err(e)) => report
                .problems
                .push(format!("removing pods through the CRI: {e}")),
            Err(_) => report
                .problems
                .push("removing pods through the CRI timed out".into()),
        }
    }
    let report = tokio::task::spawn_blocking(move || {
        cleanup_host(&paths, &mut report);
        report
    })
    .await
    .map_err(|e| Error::Command {
        program: "killall".into(),
        message: e.to_string(),
    })?;
    for problem in &report.problems {
        tracing::warn!("killall: {problem}");
    }
    Ok(report)
}

/// Stops and removes every pod sandbox; the number removed.
async fn remove_sandboxes(socket: &Path) -> Result<usize, Error> {
    let channel = cri::connect(socket).await?;
    let mut rt = RuntimeServiceClient::new(channel);
    let cri_err = |call| move |source| Error::Cri { call, source };
    let sandboxes = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .map_err(cri_err("ListPodSandbox"))?
        .into_inner()
        .items;
    for sandbox in &sandboxes {
        let id = sandbox.id.clone();
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .map_err(cri_err("StopPodSandbox"))?;
        rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .map_err(cri_err("RemovePodSandbox"))?;
    }
    Ok(sandboxes.len())
}

/// The host side of killall: processes, mounts, bridge, files.
fn cleanup_host(paths: &ContainerdPaths, report: &mut KillallReport) {
    kill_processes(paths, report);
    unmount_under(&paths.agent_dir, report);
    remove_bridge(&paths.cni_conf_dir, report);
    remove_container_cgroups(&paths.state.join("runc"), report);
    for dir in [&paths.state, &paths.ipam_dir] {
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            report
                .problems
                .push(format!("removing {}: {e}", dir.display()));
        }
    }
    for file in [&paths.socket, &paths.pid_file] {
        let _ = std::fs::remove_file(file);
    }
    let mut ttrpc = paths.socket.as_os_str().to_owned();
    ttrpc.push(".ttrpc");
    let _ = std::fs::remove_file(PathBuf::from(ttrpc));
}

/// Kills our containerd (gracefully), then every process under our shims, then the shims.
fn kill_processes(paths: &ContainerdPaths, report: &mut KillallReport) {
    let all = proc::list();
    for p in all
        .iter()
        .filter(|p| proc::is_our_containerd(p, &paths.config))
    {
        if !proc::terminate(p.pid, CONTAINERD_GRACE) {
            report
                .problems
                .push(format!("containerd {} did not exit", p.pid));
        }
        report.processes_killed.push(p.pid);
    }
    let all = proc::list();
    let shims: Vec<u32> = all
        .iter()
        .filter(|p| proc::is_our_shim(p, &paths.socket))
        .map(|p| p.pid)
        .collect();
    let mut victims = proc::descendants(&all, &shims);
    release_network_namespaces(&victims, report);
    victims.reverse(); // deepest first: containers before their parents
    victims.extend(&shims);
    for &pid in &victims {
        proc::signal(pid, Signal::KILL);
    }
    for &pid in &victims {
        if !proc::wait_gone(pid, Duration::from_secs(2)) {
            report.problems.push(format!("process {pid} did not exit"));
        }
    }
    report.processes_killed.extend(victims);
}

/// Unmounts and removes the named network namespaces (`/run/netns/*`, where the CRI pins pods'
/// namespaces) that `pids` are in: left behind when the CRI could not remove the pods.
fn release_network_namespaces(pids: &[u32], report: &mut KillallReport) {
    use std::os::unix::fs::MetadataExt;
    let ours: std::collections::BTreeSet<u64> = pids
        .iter()
        .filter_map(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).ok())
        .map(|m| m.ino())
        .collect();
    let Ok(host) = std::fs::metadata("/proc/self/ns/net") else {
        return;
    };
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.ino() == host.ino() || !ours.contains(&meta.ino()) {
            continue;
        }
        match rustix::mount::unmount(&path, UnmountFlags::DETACH) {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                report.unmounted.push(path);
            }
            Err(e) => report
                .problems
                .push(format!("unmounting {}: {e}", path.display())),
        }
    }
}

/// Lazily unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path, report: &mut KillallReport) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points = mount_points_under(&mountinfo, dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        match rustix::mount::unmount(&point, UnmountFlags::DETACH) {
            Ok(()) => report.unmounted.push(point),
            Err(e) => report
                .problems
                .push(format!("unmounting {}: {e}", point.display())),
        }
    }
}

/// The mount points in `mountinfo` at or below `dir`, each once.
fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the (now empty) cgroups of containers whose runc state is still under `runc_root`:
/// left when their shims were killed rather than stopped through the CRI.
fn remove_container_cgroups(runc_root: &Path, report: &mut KillallReport) {
    let mut cgroups: Vec<PathBuf> = std::fs::read_dir(runc_root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
        .filter_map(|c| std::fs::read(c.path().join("state.json")).ok())
        .flat_map(|state| cgroup_paths(&state))
        .collect();
    cgroups.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    cgroups.dedup();
    for cgroup in cgroups {
        match std::fs::remove_dir(&cgroup) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .problems
                .push(format!("removing cgroup {}: {e}", cgroup.display())),
        }
    }
}

/// The cgroup directories in a runc `state.json` (`cgroup_paths`), only under /sys/fs/cgroup.
fn cgroup_paths(state_json: &[u8]) -> Vec<PathBuf> {
    let Ok(state) = serde_json::from_slice::<serde_json::Value>(state_json) else {
        return Vec::new();
    };
    let Some(paths) = state["cgroup_paths"].as_object() else {
        return Vec::new();
    };
    paths
        .values()
        .filter_map(|v| v.as_str())
        .map(PathBuf::from)
        .filter(|p| p.starts_with("/sys/fs/cgroup/") && p.components().count() > 5)
        .collect()
}

/// Deletes the bridge our conflist names, if the interface exists.
fn remove_bridge(conf_dir: &Path, report: &mut KillallReport) {
    let Some(bridge) = cni::read_bridge_name(conf_dir) else {
        return;
    };
    if bridge.is_empty()
        || bridge.contains('/')
        || !Path::new("/sys/class/net").join(&bridge).exists()
    {
        return;
    }
    match std::process::Command::new("ip")
        .args(["link", "delete", &bridge])
        .output()
    {
        Ok(out) if out.status.success() => report.bridge_removed = Some(bridge),
        Ok(out) => report.problems.push(format!(
            "ip link delete {bridge}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => report.problems.push(format!("running ip: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_under_the_agent_dir_only() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda1 rw
30 22 0:40 / /d/agent/containerd/state/x/rootfs rw - overlay overlay rw
31 22 0:41 / /d/agent/containerd/state/y/shm rw - tmpfs shm rw
32 22 0:42 / /d/agent2/other rw - tmpfs t rw
33 22 0:43 / /d/agent/with\\040space rw - tmpfs t rw
";
        let got = mount_points_under(info, Path::new("/d/agent"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/d/agent/containerd/state/x/rootfs"),
                PathBuf::from("/d/agent/containerd/state/y/shm"),
                PathBuf::from("/d/agent/with space"),
            ]
        );
    }

    #[test]
    fn reads_cgroup_paths_from_runc_state() {
        let state = br#"{"id":"x","cgroup_paths":{"cpu":"/sys/fs/cgroup/cpu,cpuacct/k8rs/x",
            "unified":"/sys/fs/cgroup/unified/k8rs/x","bad":"/etc/x","root":"/sys/fs/cgroup/cpu"}}"#;
        let mut got = cgroup_paths(state);
        got.sort();
        assert_eq!(
            got,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/k8rs/x"),
                PathBuf::from("/sys/fs/cgroup/unified/k8rs/x"),
            ]
        );
        assert!(cgroup_paths(b"not json").is_empty());
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_mount_path("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape_mount_path("trail\\04"), "trail\\04");
        assert_eq!(unescape_mount_path("x\\é1"), "x\\é1");
    }

    #[tokio::test]
    async fn killall_on_an_empty_data_dir_does_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = killall(dir.path()).await.expect("killall");
        assert_eq!(report, KillallReport::default());
    }
}
