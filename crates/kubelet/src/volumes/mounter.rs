//! The only mount syscalls of the volumes (tmpfs for memory-backed volumes, unmount at pod
//! removal), behind a trait with a recording fake.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Mounting and unmounting.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// Mounts a tmpfs of at most `size` bytes (unlimited: `None`) on `dir`.
    fn mount_tmpfs(&self, dir: &Path, size: Option<u64>) -> io::Result<()>;
    /// Unmounts `dir`.
    fn unmount(&self, dir: &Path) -> io::Result<()>;
    /// Whether something is mounted on `dir`.
    fn is_mount_point(&self, dir: &Path) -> bool;
    /// The mount points at or below `dir`.
    fn mounts_under(&self, dir: &Path) -> Vec<PathBuf>;
}

/// The host's mounts, through `mount(2)`, `umount(2)` and `/proc/self/mountinfo`.
#[derive(Debug, Default)]
pub struct SysMounter;

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b[i], oct) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points in a mountinfo text.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

impl Mounter for SysMounter {
    fn mount_tmpfs(&self, dir: &Path, size: Option<u64>) -> io::Result<()> {
        use rustix::mount::{MountFlags, mount};
        let data = match size {
            Some(s) => format!("mode=0777,size={s}"),
            None => "mode=0777".to_string(),
        };
        let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
        let flags = MountFlags::NOSUID | MountFlags::NODEV;
        mount("tmpfs", dir, "tmpfs", flags, Some(data.as_c_str())).map_err(io::Error::from)
    }

    fn unmount(&self, dir: &Path) -> io::Result<()> {
        use rustix::mount::{UnmountFlags, unmount};
        unmount(dir, UnmountFlags::DETACH).map_err(io::Error::from)
    }

    fn is_mount_point(&self, dir: &Path) -> bool {
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        match (dev(dir), dev(&dir.join(".."))) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        }
    }

    fn mounts_under(&self, dir: &Path) -> Vec<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        mount_points(&text)
            .into_iter()
            .filter(|p| p.starts_with(dir))
            .collect()
    }
}

/// A fake that records calls and keeps the mounted set.
#[derive(Debug, Default)]
pub struct FakeMounter {
    state: Mutex<(Vec<String>, BTreeSet<PathBuf>)>,
}

impl FakeMounter {
    fn with<T>(&self, f: impl FnOnce(&mut (Vec<String>, BTreeSet<PathBuf>)) -> T) -> T {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.0.clone())
    }
}

impl Mounter for FakeMounter {
    fn mount_tmpfs(&self, dir: &Path, size: Option<u64>) -> io::Result<()> {
        self.with(|s| {
            s.0.push(format!("tmpfs {} size={size:?}", dir.display()));
            s.1.insert(dir.to_path_buf());
        });
        Ok(())
    }

    fn unmount(&self, dir: &Path) -> io::Result<()> {
        self.with(|s| {
            s.0.push(format!("unmount {}", dir.display()));
            s.1.remove(dir);
        });
        Ok(())
    }

    fn is_mount_point(&self, dir: &Path) -> bool {
        self.with(|s| s.1.contains(dir))
    }

    fn mounts_under(&self, dir: &Path) -> Vec<PathBuf> {
        self.with(|s| s.1.iter().filter(|p| p.starts_with(dir)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points_are_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(text),
            vec![PathBuf::from("/mnt x"), PathBuf::from("/proc")]
        );
    }
}
