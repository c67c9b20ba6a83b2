//! What the host offers, read from /proc, /etc and statvfs.

use std::path::Path;

/// The host's resources and identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    pub storage_bytes: u64,
    pub storage_available_bytes: u64,
    pub pid_max: u64,
    pub pids_in_use: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub boot_id: String,
    pub machine_id: String,
    pub system_uuid: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A field of /proc/meminfo, in bytes.
pub fn meminfo_field(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// `PRETTY_NAME` of an os-release file.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let v = line.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim_matches('"').to_string())
    })
}

impl HostInfo {
    /// Reads the host now; storage is that of the filesystem holding `data_dir`.
    pub fn read(data_dir: &Path) -> HostInfo {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        // Free blocks, reserved ones included (upstream's cadvisor counts `f_bavail`): the
        // kubelet, the runtime and containers by default write as root, which may use the
        // reserved blocks, and some machines reserve most of their disk.
        let (storage_bytes, storage_available_bytes) = rustix::fs::statvfs(data_dir)
            .map(|s| (s.f_blocks * s.f_frsize, s.f_bfree * s.f_frsize))
            .unwrap_or((0, 0));
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let loadavg = read_trimmed("/proc/loadavg");
        let pids_in_use = loadavg
            .split_whitespace()
            .nth(3)
            .and_then(|f| f.split('/').nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        HostInfo {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_bytes: meminfo_field(&meminfo, "MemTotal").unwrap_or(0),
            memory_available_bytes: meminfo_field(&meminfo, "MemAvailable").unwrap_or(0),
            storage_bytes,
            storage_available_bytes,
            pid_max: read_trimmed("/proc/sys/kernel/pid_max")
                .parse()
                .unwrap_or(0),
            pids_in_use,
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: os_pretty_name(&os_release).unwrap_or_else(|| "Linux".into()),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            machine_id: read_trimmed("/etc/machine-id"),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        }
    }
}
