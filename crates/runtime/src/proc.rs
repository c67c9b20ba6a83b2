//! The host's processes, from `/proc`: finding containerd and its shims by their command lines,
//! and signalling them by pid.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// One process: its pid, parent and argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub argv: Vec<String>,
}

impl Process {
    /// The file name of argv\[0\].
    pub fn program(&self) -> &str {
        self.argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("")
    }

    /// The value following `flag` in argv (`--config FILE` or `-address SOCK`), or after `=`.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        let mut args = self.argv.iter().skip(1);
        while let Some(arg) = args.next() {
            if arg == flag {
                return args.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return Some(value);
            }
        }
        None
    }
}

/// Every process that can be read now (processes exiting meanwhile are skipped).
pub(crate) fn list() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .collect()
}

/// The process `pid`, if it exists and is not a zombie.
pub(crate) fn read(pid: u32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (state, ppid) = parse_stat(&stat)?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(Process { pid, ppid, argv })
}

/// The state letter and parent pid from a `/proc/PID/stat` line (the command name, in
/// parentheses, may itself hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `p` is a containerd started with the config file `config`.
pub(crate) fn is_our_containerd(p: &Process, config: &Path) -> bool {
    p.program() == "containerd"
        && p.flag("--config")
            .or_else(|| p.flag("-c"))
            .is_some_and(|c| Path::new(c) == config)
}

/// Whether `p` is a containerd shim serving the containerd on `socket`.
pub(crate) fn is_our_shim(p: &Process, socket: &Path) -> bool {
    p.program().starts_with("containerd-shim")
        && p.flag("-address")
            .is_some_and(|a| Path::new(a.strip_prefix("unix://").unwrap_or(a)) == socket)
}

/// The pids of every descendant of `roots` (not the roots themselves), deepest last.
pub(crate) fn descendants(all: &[Process], roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: BTreeSet<u32> = roots.iter().copied().collect();
    let mut out = Vec::new();
    let mut queue: Vec<u32> = roots.to_vec();
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if seen.insert(child) {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out
}

/// Whether `pid` is alive (and not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    read(pid).is_some()
}

/// Sends `signal` to `pid`; a process that is already gone is fine.
pub(crate) fn signal(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Some(pid) = Pid::from_raw(raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// SIGTERM, then SIGKILL after `grace`; true when the process is gone.
pub(crate) fn terminate(pid: u32, grace: Duration) -> bool {
    signal(pid, Signal::TERM);
    if wait_gone(pid, grace) {
        return true;
    }
    signal(pid, Signal::KILL);
    wait_gone(pid, Duration::from_secs(2))
}

/// Polls until `pid` is gone, for at most `timeout`.
pub(crate) fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, argv: &[&str]) -> Process {
        Process {
            pid,
            ppid,
            argv: argv.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        assert_eq!(parse_stat("42 (a) b)) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn recognises_our_containerd_and_shims_only() {
        let cfg = Path::new("/d/agent/containerd/config.toml");
        let sock = Path::new("/d/agent/containerd/containerd.sock");
        assert!(is_our_containerd(
            &p(
                1,
                0,
                &[
                    "/usr/bin/containerd",
                    "--config",
                    "/d/agent/containerd/config.toml"
                ]
            ),
            cfg
        ));
        assert!(!is_our_containerd(
            &p(1, 0, &["containerd", "--config", "/other/config.toml"]),
            cfg
        ));
        assert!(!is_our_containerd(&p(1, 0, &["containerd"]), cfg));
        let shim = |addr: &str| {
            p(
                2,
                1,
                &[
                    "/usr/bin/containerd-shim-runc-v2",
                    "-namespace",
                    "k8s.io",
                    "-id",
                    "x",
                    "-address",
                    addr,
                ],
            )
        };
        assert!(is_our_shim(
            &shim("/d/agent/containerd/containerd.sock"),
            sock
        ));
        assert!(is_our_shim(
            &shim("unix:///d/agent/containerd/containerd.sock"),
            sock
        ));
        assert!(!is_our_shim(&shim("/run/containerd/containerd.sock"), sock));
    }

    #[test]
    fn finds_descendants() {
        let all = [
            p(10, 1, &["shim"]),
            p(11, 10, &["pause"]),
            p(12, 11, &["sh"]),
            p(13, 1, &[]),
        ];
        let mut d = descendants(&all, &[10]);
        d.sort();
        assert_eq!(d, vec![11, 12]);
    }

    #[test]
    fn sees_itself_alive() {
        assert!(alive(std::process::id()));
        let me = read(std::process::id()).expect("own process");
        assert!(!me.argv.is_empty());
    }
}
