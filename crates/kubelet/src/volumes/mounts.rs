//! A container's CRI mounts from its `volumeMounts` (upstream's `makeMounts`): host path (with
//! `subPath`/`subPathExpr`, created when missing and kept inside the volume), container path,
//! read-only when the mount or the volume says so, no SELinux relabel, propagation private
//! unless `mountPropagation` asks otherwise.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, VolumeMount};

use super::Mounted;

fn propagation(m: &VolumeMount) -> i32 {
    (match m.mount_propagation.as_deref() {
        Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
        Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
        _ => cri::MountPropagation::PropagationPrivate,
    }) as i32
}

/// The subPath of a mount, with `$(VAR)` of `subPathExpr` expanded from the container's env.
fn sub_path(m: &VolumeMount, env: &[(String, String)]) -> Option<String> {
    if let Some(expr) = m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
        let lookup = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        return Some(crate::pods::env::expand(expr, &lookup));
    }
    m.sub_path.clone().filter(|s| !s.is_empty())
}

/// `root/sub`, created (with `root`'s mode) when missing, refused when it leaves `root`.
fn resolve_sub_path(root: &Path, sub: &str) -> Result<PathBuf, String> {
    let rel = Path::new(sub);
    if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "invalid subPath \"{sub}\": must be a relative path without '..'"
        ));
    }
    let path = root.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        let mode = std::fs::metadata(root)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&path)
            .map_err(|e| format!("creating subPath {}: {e}", path.display()))?;
    }
    let real_root = std::fs::canonicalize(root).map_err(|e| e.to_string())?;
    let real = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "subpath \"{}\" not within volume path \"{}\"",
            real.display(),
            real_root.display()
        ));
    }
    Ok(path)
}

/// The CRI mounts of container `c` over the pod's set-up volumes.
pub fn container_mounts(
    c: &Container,
    volumes: &HashMap<String, Mounted>,
    env: &[(String, String)],
) -> Result<Vec<cri::Mount>, String> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(v) = volumes.get(&m.name) else {
            return Err(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                m.name, c.name
            ));
        };
        let host = match sub_path(m, env) {
            Some(sub) => resolve_sub_path(&v.host_path, &sub)?,
            None => v.host_path.clone(),
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only == Some(true) || v.read_only,
            selinux_relabel: false,
            propagation: propagation(m),
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mounts_sub_paths_and_read_only() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = tmp.path().join("vol");
        std::fs::create_dir_all(&root).unwrap_or_default();
        let _ = std::os::unix::fs::symlink("/etc", root.join("escape"));
        let vols = HashMap::from([
            (
                "v".to_string(),
                Mounted {
                    host_path: root.clone(),
                    read_only: false,
                },
            ),
            (
                "cfg".to_string(),
                Mounted {
                    host_path: PathBuf::from("/x/cfg"),
                    read_only: true,
                },
            ),
        ]);
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/data", "mountPropagation": "HostToContainer"},
            {"name": "v", "mountPath": "/sub", "subPathExpr": "$(POD)/logs", "readOnly": true},
            {"name": "cfg", "mountPath": "/etc/cfg"}
        ]}))
        .unwrap_or_default();
        let env = vec![("POD".to_string(), "p1".to_string())];
        let got = container_mounts(&c, &vols, &env).unwrap_or_default();
        let root_s = root.to_string_lossy().into_owned();
        let want = vec![
            cri::Mount {
                container_path: "/data".into(),
                host_path: root_s.clone(),
                propagation: cri::MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            },
            cri::Mount {
                container_path: "/sub".into(),
                host_path: format!("{root_s}/p1/logs"),
                readonly: true,
                ..Default::default()
            },
            cri::Mount {
                container_path: "/etc/cfg".into(),
                host_path: "/x/cfg".into(),
                readonly: true,
                ..Default::default()
            },
        ];
        assert_eq!(got, want);
        assert!(root.join("p1/logs").is_dir());

        for bad in ["../x", "/abs", "escape"] {
            let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
                {"name": "v", "mountPath": "/d", "subPath": bad}]}))
            .unwrap_or_default();
            assert!(container_mounts(&c, &vols, &[]).is_err(), "{bad}");
        }
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "nope", "mountPath": "/d"}]}))
        .unwrap_or_default();
        assert_eq!(
            container_mounts(&c, &vols, &[]),
            Err("cannot find volume \"nope\" to mount into container \"c\"".into())
        );
    }
}
