//! Starting containerd, or adopting the one still running on our socket.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::config::{ContainerdConfig, ContainerdPaths, render_config};
use crate::{Error, cri, proc};

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an outdated containerd gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A containerd serving the CRI on its socket, started by k8rs now or earlier.
#[derive(Debug, Clone)]
pub struct Containerd {
    /// The CRI socket.
    pub socket: PathBuf,
    /// containerd's pid, when known (always when k8rs started it).
    pub pid: Option<u32>,
    /// True when an already running containerd was adopted.
    pub reused: bool,
    /// The runtime's name and version as the CRI reports them (`containerd`, `1.6.20~ds1`).
    pub runtime_name: String,
    /// See [`Self::runtime_name`].
    pub runtime_version: String,
    /// The `ctr` program, for image imports.
    pub ctr_binary: PathBuf,
    /// Its files.
    pub paths: ContainerdPaths,
}

impl Containerd {
    /// The endpoint as the kubelet's `--container-runtime-endpoint` spells it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A gRPC channel to the CRI (both the runtime and the image service).
    pub async fn channel(&self) -> Result<Channel, Error> {
        cri::connect(&self.socket).await
    }

    /// A client of the CRI runtime service.
    pub async fn runtime_client(&self) -> Result<RuntimeServiceClient<Channel>, Error> {
        Ok(RuntimeServiceClient::new(self.channel().await?))
    }

    /// A client of the CRI image service.
    pub async fn image_client(&self) -> Result<ImageServiceClient<Channel>, Error> {
        Ok(ImageServiceClient::new(self.channel().await?))
    }
}

/// Makes sure a containerd with `cfg`'s configuration serves the CRI on its socket and returns
/// it: writes `config.toml`, adopts a containerd still running on the socket (pods keep running
/// across k8rs restarts; one whose config changed is restarted, which leaves its pods running),
/// or starts one in its own process group so that it outlives k8rs, then waits for the CRI to
/// answer, for at most `cfg.ready_timeout`.
pub async fn ensure_containerd(cfg: &ContainerdConfig) -> Result<Containerd, Error> {
    let paths = cfg.paths();
    // The shim's ttrpc socket is the gRPC one plus ".ttrpc".
    if paths.socket.as_os_str().len() + ".ttrpc".len() > 107 {
        return Err(Error::SocketPathTooLong(paths.socket));
    }
    for dir in [
        &paths.dir,
        &paths.root,
        &paths.state,
        &paths.images_dir,
        &cfg.cni_conf_dir,
    ] {
        create_dir(dir)?;
    }
    let changed = write_if_changed(&paths.config, render_config(cfg).as_bytes())?;
    if let Some(pid) = running_pid(&paths) {
        if changed {
            tracing::info!(
                pid,
                "containerd's config changed: restarting it (pods keep running)"
            );
        } else {
            match wait_ready(cfg, &paths, None).await {
                Ok(found) => {
                    tracing::info!(pid, socket = %paths.socket.display(), "adopted running containerd");
                    return Ok(found.into_containerd(cfg, paths, Some(pid), true));
                }
                Err(e) => {
                    tracing::warn!(pid, error = %e, "running containerd does not answer: restarting it")
                }
            }
        }
        let gone = tokio::task::spawn_blocking(move || proc::terminate(pid, STOP_GRACE)).await;
        if !matches!(gone, Ok(true)) {
            // A second containerd would wait on the first one's database lock.
            return Err(Error::Command {
                program: "containerd".into(),
                message: format!("the running containerd (pid {pid}) does not exit"),
            });
        }
    } else if let Ok(found) = probe(&paths.socket).await {
        // A containerd on our socket that we did not start: use it as it is.
        return Ok(found.into_containerd(cfg, paths, None, true));
    }
    let child = spawn(cfg, &paths)?;
    let pid = child.id();
    let ready = wait_ready(cfg, &paths, Some(child)).await?;
    tracing::info!(pid, socket = %paths.socket.display(), "started containerd");
    Ok(ready.into_containerd(cfg, paths, Some(pid), false))
}

/// The pid of the containerd we started earlier, if it still runs.
fn running_pid(paths: &ContainerdPaths) -> Option<u32> {
    let from_file = std::fs::read_to_string(&paths.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&pid| proc::read(pid).is_some_and(|p| proc::is_our_containerd(&p, &paths.config)));
    from_file.or_else(|| {
        proc::list()
            .into_iter()
            .find(|p| proc::is_our_containerd(p, &paths.config))
            .map(|p| p.pid)
    })
}

/// Starts containerd detached (own process group, output to its log) and records its pid.
fn spawn(cfg: &ContainerdConfig, paths: &ContainerdPaths) -> Result<Child, Error> {
    let binary = find_binary(&cfg.containerd_binary).ok_or_else(|| Error::ContainerdMissing {
        binary: cfg.containerd_binary.display().to_string(),
    })?;
    let _ = std::fs::remove_file(&paths.socket);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(|source| write_err(&paths.log, source))?;
    let log2 = log
        .try_clone()
        .map_err(|source| write_err(&paths.log, source))?;
    let child = Command::new(&binary)
        .arg("--config")
        .arg(&paths.config)
        .env("PATH", search_path())
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: binary.display().to_string(),
            source,
        })?;
    write_atomic(&paths.pid_file, format!("{}\n", child.id()).as_bytes())?;
    Ok(child)
}

/// What the CRI answered.
struct Ready {
    runtime_name: String,
    runtime_version: String,
}

impl Ready {
    fn into_containerd(
        self,
        cfg: &ContainerdConfig,
        paths: ContainerdPaths,
        pid: Option<u32>,
        reused: bool,
    ) -> Containerd {
        Containerd {
            socket: paths.socket.clone(),
            pid,
            reused,
            runtime_name: self.runtime_name,
            runtime_version: self.runtime_version,
            ctr_binary: cfg.ctr_binary.clone(),
            paths,
        }
    }
}

/// Polls the CRI until it answers, `child` (when we started it) exits, or the timeout passes.
/// The child, once ready, is handed to a thread that reaps it if it ever exits.
async fn wait_ready(
    cfg: &ContainerdConfig,
    paths: &ContainerdPaths,
    mut child: Option<Child>,
) -> Result<Ready, Error> {
    let deadline = Instant::now() + cfg.ready_timeout;
    let mut last: String;
    loop {
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(Error::ContainerdExited {
                status: status.to_string(),
                log: paths.log.clone(),
            });
        }
        match probe(&paths.socket).await {
            Ok(ready) => {
                if let Some(c) = child {
                    reap_in_background(c);
                }
                return Ok(ready);
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            if let Some(c) = child {
                reap_in_background(c);
            }
            return Err(Error::NotReady {
                socket: paths.socket.clone(),
                timeout: cfg.ready_timeout,
                last,
                log: paths.log.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One CRI `Version` call on `socket`, bounded by [`PROBE_TIMEOUT`].
async fn probe(socket: &Path) -> Result<Ready, Error> {
    let call = async {
        let channel = cri::connect(socket).await?;
        cri::version(channel).await
    };
    let v = tokio::time::timeout(PROBE_TIMEOUT, call)
        .await
        .map_err(|_| Error::Command {
            program: "CRI Version".into(),
            message: "timed out".into(),
        })??;
    Ok(Ready {
        runtime_name: v.runtime_name,
        runtime_version: v.runtime_version,
    })
}

/// Waits for `child` on a thread of its own, so an exited containerd leaves no zombie behind.
fn reap_in_background(mut child: Child) {
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// `PATH` with the standard directories appended: containerd runs `runc` (in /usr/sbin) and
/// the shims, and k8rs may have been started with a short `PATH`.
fn search_path() -> String {
    let mut dirs: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_string());
        }
    }
    dirs.join(":")
}

/// `binary` itself when it has a slash, else its first match on [`search_path`].
pub(crate) fn find_binary(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_path_buf());
    }
    search_path()
        .split(':')
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file())
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| write_err(dir, source))
}

pub(crate) fn write_err(path: &Path, source: std::io::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `content` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, content: &[u8]) -> Result<(), Error> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content).map_err(|source| write_err(&tmp, source))?;
    std::fs::rename(&tmp, path).map_err(|source| write_err(path, source))
}

/// Writes `content` atomically unless `path` already holds exactly it; true when written.
pub(crate) fn write_if_changed(path: &Path, content: &[u8]) -> Result<bool, Error> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    write_atomic(path, content)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_binary_names_the_packages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = ContainerdConfig::new(dir.path());
        cfg.containerd_binary = PathBuf::from("/nonexistent/containerd");
        let err = ensure_containerd(&cfg).await.expect_err("no binary");
        assert!(matches!(err, Error::ContainerdMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("containerd runc containernetworking-plugins"),
            "{msg}"
        );
        // The config is written even so.
        assert!(cfg.paths().config.is_file());
    }

    #[tokio::test]
    async fn a_too_long_socket_path_is_refused() {
        let cfg = ContainerdConfig::new(format!("/tmp/{}", "d".repeat(90)));
        let err = ensure_containerd(&cfg).await.expect_err("too long");
        assert!(matches!(err, Error::SocketPathTooLong(_)), "{err}");
    }

    #[test]
    fn writes_only_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        assert!(write_if_changed(&f, b"a").expect("write"));
        assert!(!write_if_changed(&f, b"a").expect("write"));
        assert!(write_if_changed(&f, b"b").expect("write"));
        assert_eq!(std::fs::read(&f).expect("read"), b"b");
    }

    #[test]
    fn search_path_has_sbin() {
        assert!(search_path().split(':').any(|d| d == "/usr/sbin"));
        assert!(find_binary(Path::new("sh")).is_some());
    }
}
