//! Upstream's AtomicWriter: the files of a configMap, secret, downwardAPI or projected volume
//! live in a timestamped directory (`..2026_11_26_10_00_00.123456789`), a `..data` symlink
//! points at it and is swapped with one `rename`, and every top-level name is a symlink
//! `name -> ..data/name`. A reader inside the container sees the old or the new payload, never
//! a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The symlink to the current payload directory.
pub const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (e.g. `0o644`).
    pub mode: u32,
}

/// Files by relative path (`key`, `dir/key`).
pub type Payload = BTreeMap<String, FileProjection>;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks a payload path as upstream's `validatePath`: relative, no `..` element, not starting
/// with `..`.
pub fn validate_path(p: &str) -> io::Result<()> {
    if p.is_empty() {
        return Err(invalid("invalid path: must not be empty".into()));
    }
    if p.starts_with("..") {
        return Err(invalid(format!(
            "invalid path: {p}: must not start with '..'"
        )));
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(invalid(format!("invalid path: {p}: must be relative path")));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!("invalid path: {p}: must not contain '..'")));
    }
    Ok(())
}

fn top_level(p: &str) -> &str {
    p.split('/').find(|s| !s.is_empty()).unwrap_or(p)
}

/// The files under `dir` (relative paths), following no symlinks.
fn files_under(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.file_type()?.is_dir() {
            files_under(&e.path(), &rel, out)?;
        } else {
            out.insert(rel, e.path());
        }
    }
    Ok(())
}

/// Whether the payload directory `ts` holds exactly `payload` (contents, modes and group).
fn matches(ts: &Path, payload: &Payload, gid: Option<u32>) -> bool {
    let mut found = BTreeMap::new();
    if files_under(ts, "", &mut found).is_err() {
        return false;
    }
    if !found.keys().eq(payload.keys()) {
        return false;
    }
    payload.iter().all(|(rel, f)| {
        let Some(path) = found.get(rel) else {
            return false;
        };
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        meta.permissions().mode() & 0o7777 == f.mode
            && gid.is_none_or(|g| meta.gid() == g)
            && std::fs::read(path).is_ok_and(|d| d == f.data)
    })
}

fn timestamped_name() -> String {
    let now = chrono::Utc::now();
    format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%f"))
}

fn write_files(ts: &Path, payload: &Payload, gid: Option<u32>) -> io::Result<()> {
    for (rel, f) in payload {
        let path = ts.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.data)?;
        if let Some(g) = gid {
            std::os::unix::fs::chown(&path, None, Some(g))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
    }
    if let Some(g) = gid {
        std::os::unix::fs::chown(ts, None, Some(g))?;
    }
    std::fs::set_permissions(ts, std::fs::Permissions::from_mode(0o755))
}

/// Makes `dir` hold `payload`; returns whether anything changed. `gid` (the pod's fsGroup)
/// owns the files when given.
pub fn write(dir: &Path, payload: &Payload, gid: Option<u32>) -> io::Result<bool> {
    for p in payload.keys() {
        validate_path(p)?;
    }
    std::fs::create_dir_all(dir)?;
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let wanted: BTreeSet<&str> = payload.keys().map(|k| top_level(k)).collect();
    if let Some(old) = &old
        && matches(&dir.join(old), payload, gid)
    {
        link_visible(dir, &wanted)?;
        return Ok(false);
    }
    let name = timestamped_name();
    let ts = dir.join(&name);
    std::fs::create_dir(&ts)?;
    if let Err(e) = write_files(&ts, payload, gid) {
        let _ = std::fs::remove_dir_all(&ts);
        return Err(e);
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    link_visible(dir, &wanted)?;
    remove_stale(dir, &wanted)?;
    if let Some(old) = old.filter(|o| o.as_os_str() != name.as_str()) {
        let old = dir.join(old);
        // Only ever remove a payload directory of ours.
        if old.parent() == Some(dir) && old.file_name().is_some_and(|n| n != DATA) {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(true)
}

/// The user-visible symlinks `name -> ..data/name`.
fn link_visible(dir: &Path, wanted: &BTreeSet<&str>) -> io::Result<()> {
    for name in wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)?;
    }
    Ok(())
}

/// Removes the user-visible symlinks of names no longer in the payload.
fn remove_stale(dir: &Path, wanted: &BTreeSet<&str>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || wanted.contains(name.as_str()) {
            continue;
        }
        if e.file_type()?.is_symlink() {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn read(dir: &Path, rel: &str) -> String {
        std::fs::read_to_string(dir.join(rel)).unwrap_or_default()
    }

    #[test]
    fn writes_links_and_swaps_data_on_update() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("vol");
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        p.insert("sub/b".into(), file("2", 0o600));
        assert!(write(&dir, &p, None).unwrap_or(false));
        let first = std::fs::read_link(dir.join(DATA)).unwrap_or_default();
        assert!(first.to_string_lossy().starts_with("..20"), "{first:?}");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap_or_default(),
            Path::new("..data/a")
        );
        assert_eq!(
            std::fs::read_link(dir.join("sub")).unwrap_or_default(),
            Path::new("..data/sub")
        );
        assert_eq!(read(&dir, "a"), "1");
        assert_eq!(read(&dir, "sub/b"), "2");
        let mode = |rel: &str| {
            std::fs::metadata(dir.join(rel))
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0)
        };
        assert_eq!((mode("a"), mode("sub/b")), (0o644, 0o600));

        // The same payload again changes nothing.
        assert!(!write(&dir, &p, None).unwrap_or(true));
        assert_eq!(std::fs::read_link(dir.join(DATA)).ok(), Some(first.clone()));

        // An update swaps ..data, removes dropped keys and the old payload directory.
        let mut q = Payload::new();
        q.insert("a".into(), file("3", 0o400));
        q.insert("c".into(), file("4", 0o644));
        assert!(write(&dir, &q, None).unwrap_or(false));
        let second = std::fs::read_link(dir.join(DATA)).unwrap_or_default();
        assert_ne!(first, second);
        assert_eq!(read(&dir, "a"), "3");
        assert_eq!(read(&dir, "c"), "4");
        assert_eq!(mode("a"), 0o400);
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let ts = second.to_string_lossy().into_owned();
        assert_eq!(names, vec![ts, DATA.to_string(), "a".into(), "c".into()]);
    }

    #[test]
    fn bad_paths_are_refused() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for bad in ["", "../x", "..x", "/abs", "a/../../b"] {
            let mut p = Payload::new();
            p.insert(bad.into(), file("x", 0o644));
            assert!(write(tmp.path(), &p, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_payload_makes_an_empty_volume() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(write(tmp.path(), &Payload::new(), None).unwrap_or(false));
        assert!(tmp.path().join(DATA).is_dir());
    }
}
