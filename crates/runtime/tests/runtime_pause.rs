//! The pause program: exits 0 on SIGTERM and SIGINT, and reaps orphans as PID 1 of a PID
//! namespace.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pause did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pause_exits_zero_on_sigterm_and_sigint() {
    let bin = support::pause_binary();
    for signal in ["TERM", "INT"] {
        let mut child = Command::new(&bin)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pause");
        std::thread::sleep(Duration::from_millis(100));
        let ok = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let status = wait_exit(&mut child, Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "SIG{signal}");
    }
}

#[test]
fn pause_prints_its_version() {
    let out = Command::new(support::pause_binary())
        .arg("-v")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pause.k8rs-"));
}

#[test]
fn pause_is_static_and_small() {
    let meta = std::fs::metadata(support::pause_binary()).expect("built");
    assert!(meta.len() < 1024 * 1024, "{} bytes", meta.len());
    let out = Command::new("file").arg(support::pause_binary()).output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("static"), "{text}");
    }
}

/// As PID 1 of a new PID namespace (`unshare`), orphans are re-parented to pause; once they exit
/// they must not stay zombies.
#[test]
fn pause_reaps_orphans_as_pid_1() {
    if !support::can_run_containerd() {
        return;
    }
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(support::pause_binary())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let outer = unshare.id();
    let _guard = KillOnDrop(outer);
    let pause = wait_for(|| {
        support::processes()
            .into_iter()
            .find(|p| p.1 == outer)
            .map(|p| p.0)
    });
    // Two background sleeps whose parent shell exits at once: both are re-parented to pause.
    let ok = Command::new("nsenter")
        .args([
            "-t",
            &pause.to_string(),
            "-p",
            "--",
            "sh",
            "-c",
            "sleep 0.6 & sleep 0.6 & exit 0",
        ])
        .status()
        .expect("nsenter");
    assert!(ok.success());
    let children = |pid: u32| -> Vec<(u32, char)> {
        support::processes()
            .into_iter()
            .filter(|p| p.1 == pid)
            .map(|p| (p.0, p.2))
            .collect()
    };
    let adopted = children(pause);
    assert_eq!(
        adopted.len(),
        2,
        "orphans re-parented to pause: {adopted:?}"
    );
    std::thread::sleep(Duration::from_millis(1200));
    let left = children(pause);
    assert!(left.is_empty(), "zombies left: {left:?}");
    let _ = Command::new("kill")
        .args(["-TERM", &pause.to_string()])
        .status();
    let status = wait_exit(&mut unshare, Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

/// Kills the `unshare` process and its pause child when the test ends, passed or not.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for (pid, ppid, ..) in support::processes() {
            if ppid == self.0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}
