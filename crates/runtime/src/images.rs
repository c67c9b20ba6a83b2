//! Offline images: every `*.tar` in the images dir is imported into the CRI's namespace once
//! (as k3s's air-gap images), with a record of what was imported so later starts skip it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::ListImagesRequest;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use serde::{Deserialize, Serialize};

use crate::containerd::write_atomic;
use crate::{CRI_NAMESPACE, Containerd, Error};

/// How long one `ctr images import` may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// What [`import_images`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Archives imported now, with the image names they carried.
    pub imported: Vec<(PathBuf, Vec<String>)>,
    /// Archives already imported (same size and mtime, and their images still present).
    pub skipped: Vec<PathBuf>,
}

/// What is known of one archive that was imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Imported {
    size: u64,
    mtime_ns: i128,
    images: Vec<String>,
}

/// File name -> what was imported from it.
type Record = BTreeMap<String, Imported>;

/// Imports every `*.tar` in `dir` into containerd's `k8s.io` namespace with `ctr`, skipping
/// archives imported before (same size and mtime, and all their images still known to the
/// CRI). Archives should carry fully-qualified names (`localhost/name:tag`).
pub async fn import_images(containerd: &Containerd, dir: &Path) -> Result<ImportReport, Error> {
    let archives = archives(dir)?;
    let mut report = ImportReport::default();
    if archives.is_empty() {
        return Ok(report);
    }
    let record_path = &containerd.paths.import_record;
    let mut record: Record = std::fs::read(record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let present = present_images(containerd).await?;
    for archive in archives {
        let Archive {
            name,
            path,
            size,
            mtime_ns,
        } = archive;
        if record.get(&name).is_some_and(|r| {
            r.size == size && r.mtime_ns == mtime_ns && r.images.iter().all(|i| present.contains(i))
        }) {
            report.skipped.push(path);
            continue;
        }
        let images = ctr_import(containerd, &path).await?;
        tracing::info!(archive = %path.display(), ?images, "imported image archive");
        record.insert(
            name,
            Imported {
                size,
                mtime_ns,
                images: images.clone(),
            },
        );
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        write_atomic(record_path, &bytes)?;
        report.imported.push((path, images));
    }
    Ok(report)
}

/// One archive file, with what identifies its content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Archive {
    name: String,
    path: PathBuf,
    size: u64,
    mtime_ns: i128,
}

/// The `*.tar` files in `dir` (none when it does not exist), by name.
fn archives(dir: &Path) -> Result<Vec<Archive>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let meta = std::fs::metadata(e.path()).ok()?;
            (name.ends_with(".tar") && meta.is_file()).then(|| {
                let mtime =
                    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
                Archive {
                    name,
                    path: e.path(),
                    size: meta.size(),
                    mtime_ns: mtime,
                }
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Every tag and digest reference the CRI knows.
async fn present_images(containerd: &Containerd) -> Result<BTreeSet<String>, Error> {
    let channel = containerd.channel().await?;
    let list = ImageServiceClient::new(channel)
        .list_images(ListImagesRequest { filter: None })
        .await
        .map_err(|source| Error::Cri {
            call: "ListImages",
            source,
        })?
        .into_inner();
    Ok(list
        .images
        .into_iter()
        .flat_map(|i| i.repo_tags.into_iter().chain(i.repo_digests))
        .collect())
}

/// Runs `ctr images import` and returns the image names it unpacked.
async fn ctr_import(containerd: &Containerd, archive: &Path) -> Result<Vec<String>, Error> {
    let program = containerd.ctr_binary.display().to_string();
    let run = tokio::process::Command::new(&containerd.ctr_binary)
        .arg("--address")
        .arg(&containerd.socket)
        .args([
            "-n",
            CRI_NAMESPACE,
            "images",
            "import",
            "--snapshotter",
            "overlayfs",
        ])
        .arg(archive)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(IMPORT_TIMEOUT, run)
        .await
        .map_err(|_| Error::Import {
            archive: archive.to_path_buf(),
            message: format!("timed out after {IMPORT_TIMEOUT:?}"),
        })?
        .map_err(|source| Error::Spawn { program, source })?;
    if !out.status.success() {
        return Err(Error::Import {
            archive: archive.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(parse_import_output(&String::from_utf8_lossy(&out.stdout)))
}

/// The names in `ctr images import`'s "unpacking NAME (sha256:...)...done" lines.
fn parse_import_output(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("unpacking "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctr_output() {
        let out = "unpacking localhost/k8rs/pause:3.10 (sha256:1ce1...)...done\n\
                   unpacking localhost/k8rs/busybox:1.35 (sha256:aa...)...done\n";
        assert_eq!(
            parse_import_output(out),
            vec!["localhost/k8rs/pause:3.10", "localhost/k8rs/busybox:1.35"]
        );
        assert!(parse_import_output("").is_empty());
    }

    #[test]
    fn lists_only_tar_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b.tar"), b"x").expect("write");
        std::fs::write(dir.path().join("a.tar"), b"xy").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("d.tar")).expect("mkdir");
        let found = archives(dir.path()).expect("list");
        let names: Vec<_> = found.iter().map(|a| (a.name.as_str(), a.size)).collect();
        assert_eq!(names, vec![("a.tar", 2), ("b.tar", 1)]);
        assert!(
            archives(&dir.path().join("missing"))
                .expect("none")
                .is_empty()
        );
    }
}
