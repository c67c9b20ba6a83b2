//! Starts the real `k8rs server` binary (build it first: `cargo build -p k8rs`) on a free port
//! with its own data dir, and gives a kube client for it. Killed by PID on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("debug/k8rs");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p k8rs` first",
        path.display()
    );
    path
}

impl Server {
    /// Starts `k8rs server --disable-agent` on loopback and waits until it is ready.
    pub async fn start() -> Server {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "k8rs_hollow=info,k8rs_controllers=info".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(binary())
            .arg("server")
            .arg("--disable-agent")
            // The tests run node IPAM themselves, with their own ranges.
            .arg("--disable-controllers=nodeipam")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--https-port={port}"))
            .arg(format!("--data-dir={}", dir.path().display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start k8rs");
        let mut server = Server { child, dir, port };
        server.wait_ready(Duration::from_secs(30)).await;
        server
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("k8rs exited early with {status}:\n{}", self.log());
            }
            if self.dir.path().join("admin.kubeconfig").exists()
                && let Ok(client) = self.try_client().await
            {
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("request");
                if client.request_text(req).await.is_ok() {
                    return;
                }
            }
            assert!(
                start.elapsed() < limit,
                "k8rs was not ready within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_client(&self) -> Result<kube::Client, String> {
        let path = self.dir.path().join("admin.kubeconfig");
        let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    pub async fn client(&self) -> kube::Client {
        self.try_client().await.expect("kube client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
