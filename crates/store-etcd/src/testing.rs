//! Throwaway etcd servers for tests (feature `testing`): [`EtcdProcess`] runs Debian's etcd on
//! free loopback ports with a fresh data directory and kills it on drop; [`fresh_store`] pairs
//! one with a connected [`EtcdStore`].

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{EtcdConfig, EtcdStore};

/// Where Debian's `etcd-server` package installs etcd.
pub const ETCD_BINARY: &str = "/usr/bin/etcd";
/// How long etcd may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a failed start (a port taken meanwhile by someone else) is retried.
const START_ATTEMPTS: usize = 3;

/// Why a test etcd did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{ETCD_BINARY} not found: install etcd with `apt-get install etcd-server`")]
    BinaryMissing,
    #[error("cannot prepare a test etcd: {0}")]
    Io(#[from] std::io::Error),
    #[error("test etcd exited ({status}) while starting; its log ({log:?}) ends with:\n{tail}")]
    Exited {
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("test etcd did not answer within {timeout:?}; its log ({log:?}) ends with:\n{tail}")]
    NotReady {
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },
}

/// Serving TLS for a test etcd; clients must then use `https://` and the CA that signed `cert_file`.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// With a CA, etcd requires client certificates signed by it (`--client-cert-auth`).
    pub client_ca_file: Option<PathBuf>,
}

/// A running etcd with its own data directory, killed (by PID) and removed on drop.
pub struct EtcdProcess {
    child: Child,
    endpoint: String,
    dir: TempDir,
}

impl std::fmt::Debug for EtcdProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdProcess")
            .field("pid", &self.child.id())
            .field("endpoint", &self.endpoint)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl EtcdProcess {
    /// Starts a plain-HTTP etcd and waits until it answers. Panics with the reason (missing
    /// binary, etcd's log) if it cannot.
    pub fn start() -> EtcdProcess {
        Self::try_start(None).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Starts an etcd (serving TLS when `tls` is given) and waits until it answers.
    pub fn try_start(tls: Option<&ServerTls>) -> Result<EtcdProcess, StartError> {
        if !Path::new(ETCD_BINARY).exists() {
            return Err(StartError::BinaryMissing);
        }
        let mut attempt = 1;
        loop {
            match Self::start_once(tls) {
                Err(StartError::Exited { tail, .. })
                    if attempt < START_ATTEMPTS && tail.contains("address already in use") =>
                {
                    attempt += 1;
                }
                started => return started,
            }
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A store configuration for this etcd (without TLS files).
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::new([self.endpoint.clone()])
    }

    /// etcd's log (its stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills etcd now (as its drop would), e.g. to test what clients do when it is gone.
    pub fn kill(&mut self) {
        if let Err(err) = self.child.kill() {
            tracing::debug!(%err, "test etcd already gone");
        }
        let _ = self.child.wait();
    }

    fn start_once(tls: Option<&ServerTls>) -> Result<EtcdProcess, StartError> {
        let dir = tempfile::Builder::new().prefix("k8rs-etcd-").tempdir()?;
        let [client, peer, metrics] = free_ports()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let mut command = Command::new(ETCD_BINARY);
        command
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .args(["--logger=zap", "--log-outputs=stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(tls) = tls {
            command.args(tls_args(tls));
        }
        let child = command.spawn()?;
        let mut process = EtcdProcess {
            child,
            endpoint,
            dir,
        };
        process.wait_ready(SocketAddr::from((Ipv4Addr::LOCALHOST, metrics)))?;
        Ok(process)
    }

    /// Waits until etcd's health endpoint (on the plain metrics listener) reports healthy.
    fn wait_ready(&mut self, metrics: SocketAddr) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = self.log_path();
                return Err(StartError::Exited {
                    status,
                    tail: log_tail(&log),
                    log,
                });
            }
            if healthy(metrics) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.log_path();
                return Err(StartError::NotReady {
                    timeout: START_TIMEOUT,
                    tail: log_tail(&log),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tls_args(tls: &ServerTls) -> Vec<String> {
    let mut args = vec![
        format!("--cert-file={}", tls.cert_file.display()),
        format!("--key-file={}", tls.key_file.display()),
    ];
    if let Some(ca) = &tls.client_ca_file {
        args.push(format!("--trusted-ca-file={}", ca.display()));
        args.push("--client-cert-auth=true".to_owned());
    }
    args
}

/// Three distinct free loopback ports (free when asked; etcd start is retried if one is taken).
fn free_ports() -> std::io::Result<[u16; 3]> {
    let listeners = [
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
    ];
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// One `GET /health`; true when etcd says it is healthy.
fn healthy(addr: SocketAddr) -> bool {
    let probe = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    probe().is_ok_and(|answer| answer.contains("\"health\":\"true\""))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A store on a fresh etcd of its own; keep the process as long as the store is used. Panics
/// if either cannot be had.
pub async fn fresh_store() -> (EtcdStore, EtcdProcess) {
    let etcd = match tokio::task::spawn_blocking(EtcdProcess::start).await {
        Ok(etcd) => etcd,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };
    match EtcdStore::connect(etcd.config()).await {
        Ok(store) => (store, etcd),
        Err(err) => panic!(
            "cannot connect to the test etcd at {}: {err}",
            etcd.endpoint()
        ),
    }
}
