//! Whole k8rs nodes for end-to-end tests, each in a network namespace of its own: the real
//! binary (`k8rs server`, `k8rs agent`) runs under `nsenter --net`, so its containerd, CNI
//! bridge, nftables tables and VXLAN device live in that namespace, which has loopback and one
//! veth to the other node's namespace and no route out of the machine.
//!
//! `nsenter --net` rather than `ip netns exec`: the latter also unshares the mount namespace and
//! remounts `/sys`, which hides `/sys/fs/cgroup` from containerd and runc.
//!
//! Every wait is bounded; processes are stopped by PID, namespaces deleted, on drop.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod rulesets;

pub const K8RS: &str = env!("CARGO_BIN_EXE_k8rs");

/// Runs `program args` to completion (it must exist).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Runs `program args`; its stdout, or a message with its stderr.
pub fn run_ok(program: &str, args: &[&str]) -> Result<String, String> {
    text_of(&run(program, args), &format!("{program} {args:?}"))
}

fn text_of(out: &Output, what: &str) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// Polls `f` every 100 ms until it gives a value or `limit` passes; the value and how long it
/// took, or an error naming `what`.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok((v, start.elapsed()));
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A network namespace `/run/netns/<name>`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace with loopback up.
    pub fn create(name: &str) -> Netns {
        let _ = run("ip", &["netns", "del", name]); // a leftover of a crashed run
        run_ok("ip", &["netns", "add", name]).expect("ip netns add");
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]).expect("loopback up");
        ns
    }

    /// `ip -n NAME args`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    /// A command that runs `program` in this namespace (network only).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `program args` in the namespace to completion.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.cmd(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// The processes in this namespace.
    pub fn pids(&self) -> Vec<u32> {
        run_ok("ip", &["netns", "pids", &self.name])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Whether the namespace has a default route (it must not).
    pub fn has_default_route(&self) -> bool {
        self.ip(&["route", "show", "default"])
            .map(|s| !s.trim().is_empty())
            .unwrap_or(true)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Joins `a` and `b` by a veth pair named eth0 on both sides, with `/24` addresses.
pub fn link(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) -> Result<(), String> {
    a.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name,
    ])?;
    for (ns, ip) in [(a, a_ip), (b, b_ip)] {
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// A k8rs process (server or agent) started in a namespace, its stderr appended to `log`.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(ns: &Netns, args: &[String], log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = ns
            .cmd(K8RS)
            .args(args)
            .env("K8RS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start k8rs");
        Proc {
            child: Some(child),
            log: log.into(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL; the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = run("kill", &["-TERM", &child.id().to_string()]);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Mount points at or under `dir` in this mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m == &dir || m.starts_with(&format!("{dir}/")))
        .collect()
}

/// Removes a data dir unless something is still mounted under it (then it is kept, so that
/// removal never walks into a mount).
pub fn remove_data_dir(dir: tempfile::TempDir) {
    let left = mounts_under(dir.path());
    if left.is_empty() {
        drop(dir);
    } else {
        let path = dir.keep();
        eprintln!(
            "keeping {}: still mounted under it: {left:?}",
            path.display()
        );
    }
}

/// Processes on the machine whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && pid != std::process::id() {
            out.push((pid, cmdline));
        }
    }
    out
}

/// The `comm` of a process.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether `ip` is in `cidr` (both IPv4, `a.b.c.d/n`).
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let Some((net, prefix)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(ip), Ok(net), Ok(prefix)) = (
        ip.parse::<std::net::Ipv4Addr>(),
        net.parse::<std::net::Ipv4Addr>(),
        prefix.parse::<u32>(),
    ) else {
        return false;
    };
    if prefix > 32 {
        return false;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Runs `kubectl` in `ns` with `kubeconfig`, piping `stdin` if given.
pub fn kubectl(ns: &Netns, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = ns.cmd("kubectl");
    cmd.env("KUBECTL_KUBERC", "false")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kubectl");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    child.wait_with_output().expect("kubectl output")
}

/// kubectl's stdout, or its failure with stderr.
pub fn kubectl_ok(
    ns: &Netns,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    text_of(
        &kubectl(ns, kubeconfig, args, stdin),
        &format!("kubectl {args:?}"),
    )
}

/// The cgroup directories the kubelets of `nodes` made (their roots `/k8rs-<node>` in every
/// hierarchy), deepest first.
pub fn node_cgroups(nodes: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut out = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    for h in hierarchies.flatten() {
        for node in nodes {
            let root = h.path().join(format!("k8rs-{node}"));
            if root.is_dir() {
                walk(&root, &mut out);
            }
        }
    }
    out
}

/// Removes the empty cgroups of `nodes` (rmdir only: a cgroup with processes stays).
pub fn remove_node_cgroups(nodes: &[&str]) {
    for dir in node_cgroups(nodes) {
        let _ = std::fs::remove_dir(&dir);
    }
}
