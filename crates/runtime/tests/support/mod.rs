//! Shared by the integration tests: the offline images (built once into a cache dir) and an
//! agent data dir whose containerd is torn down by `killall` even when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the images are built for tests, shared by every test run on the machine.
pub const IMAGE_CACHE: &str = "/tmp/k8rs-runtime-test-images";

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the images (once per test binary; `flock` serialises concurrent builds) and returns
/// the directory holding `pause.tar` and `busybox.tar`.
pub fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("scripts/build-images.sh");
        let status = Command::new("flock")
            .arg(format!("{IMAGE_CACHE}.lock"))
            .arg(&script)
            .arg(IMAGE_CACHE)
            .status()
            .expect("run scripts/build-images.sh");
        assert!(status.success(), "scripts/build-images.sh failed");
        PathBuf::from(IMAGE_CACHE)
    })
}

/// The static pause binary that `images()` built.
pub fn pause_binary() -> PathBuf {
    images();
    repo_root().join("target/images/x86_64-unknown-linux-gnu/release/k8rs-pause")
}

/// Whether this machine can run the containerd tests (root, containerd installed).
pub fn can_run_containerd() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let has = Path::new("/usr/bin/containerd").exists() || which("containerd");
    if !(root && has) {
        eprintln!("skipping: needs root and containerd (scripts/setup.sh installs it)");
    }
    root && has
}

fn which(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

/// An agent data dir in a tempdir; dropping it runs `killall` on it (stopping containerd, its
/// shims and pods by pid) on a thread of its own, then removes the dir.
pub struct Agent {
    pub dir: tempfile::TempDir,
}

impl Agent {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("k8rs-rt-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies the built archives into `<data_dir>/agent/images`.
    pub fn stage_images(&self) -> PathBuf {
        let dest = self.path().join("agent/images");
        std::fs::create_dir_all(&dest).expect("mkdir images");
        for name in ["pause.tar", "busybox.tar"] {
            std::fs::copy(images().join(name), dest.join(name)).expect("copy image");
        }
        dest
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let dir = self.dir.path().to_path_buf();
        if std::thread::panicking() {
            let log = dir.join("agent/containerd/containerd.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last lines of {}:", log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(k8rs_runtime::killall(&dir))
        })
        .join();
        if let Ok(Ok(report)) = done
            && !report.problems.is_empty()
        {
            eprintln!("killall problems: {:?}", report.problems);
        }
    }
}

/// Polls `f` every 50 ms until it returns Some, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The (pid, parent pid, state) of every process.
pub fn processes() -> Vec<(u32, u32, char, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_string();
        let mut f = stat[close + 1..].split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state, comm));
    }
    out
}

/// The command lines of every process that mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (pid, ..) in processes() {
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && pid != std::process::id() {
                out.push(format!("{pid}: {cmd}"));
            }
        }
    }
    out
}

/// Whether `pid` exists and is not a zombie (a killed process's parent may reap it late).
pub fn alive(pid: u32) -> bool {
    processes()
        .iter()
        .any(|p| p.0 == pid && p.2 != 'Z' && p.2 != 'X')
}

/// A pod network for test `k` of this process: bridge and /24 inside 10.42.0.0/16 that differ
/// between concurrently running test processes (so two test runs do not share a bridge).
pub fn test_network(k: u32) -> (String, String) {
    let slot = std::process::id() % 97;
    let bridge = format!("k8rs-t{slot}-{k}");
    let subnet = format!("10.42.{}.0/24", 50 + slot * 2 + k);
    (bridge, subnet)
}
