//! Test harness: starts the real `k8rs` binary on a free port with its own data dir, and runs
//! the real `kubectl` against it. Every wait is bounded; the server is killed by PID on drop.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub args: Vec<String>,
    retries: u32,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    /// Starts `k8rs server --disable-agent` on loopback with extra arguments.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Server {
            child: None,
            dir,
            port,
            args,
            retries: 0,
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_k8rs"))
            .arg("server")
            .arg("--disable-agent")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--https-port={}", self.port))
            .arg(format!("--data-dir={}", self.dir.path().display()))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start k8rs");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20));
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("k8rs exited early with {status}:\n{}", self.log());
            }
            if self.kubeconfig().exists() {
                let out = self.kubectl_raw(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            if start.elapsed() > limit {
                panic!("k8rs was not ready within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, then start again on the same data dir.
    pub fn kill9_and_restart(&mut self) {
        self.kill(true);
        self.spawn();
    }

    /// SIGTERM, wait for a clean exit, then start again.
    pub fn stop_and_restart(&mut self) -> std::process::ExitStatus {
        let status = self.kill(false);
        self.spawn();
        status
    }

    fn kill(&mut self, hard: bool) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let sig = if hard { "-KILL" } else { "-TERM" };
        let _ = Command::new("kill")
            .arg(sig)
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!("k8rs did not exit within 15 s of {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kubectl_raw(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECTL_KUBERC", "false")
            .args(["--request-timeout=20s"])
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails or warns.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_raw(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {stderr}\nserver log:\n{}",
            self.log()
        );
        assert!(
            !stderr.contains("Warning") && !stderr.contains("error"),
            "kubectl {args:?} printed: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str]) -> String {
        let out = self.kubectl_raw(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Pipes `input` to `kubectl args`.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("kubectl output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {stderr}\nserver log:\n{}",
            self.log()
        );
        assert!(
            !stderr.contains("Warning"),
            "kubectl {args:?} warned: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a namespace from YAML (`kubectl create namespace` needs protobuf).
    pub fn create_namespace(&self, name: &str) -> String {
        self.kubectl_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"),
        )
    }

    /// Pipes `input` to `kubectl args` expecting failure; returns stderr.
    pub fn kubectl_stdin_fails(&self, args: &[&str], input: &str) -> String {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("kubectl output");
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub async fn client(&self) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
