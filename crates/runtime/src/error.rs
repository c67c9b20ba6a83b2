use std::path::PathBuf;
use std::time::Duration;

/// What went wrong in the runtime; each variant says what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not retryable: install the packages.
    #[error(
        "containerd is not installed (`{binary}` not found): install the Debian packages \
         containerd runc containernetworking-plugins \
         (apt-get install containerd runc containernetworking-plugins)"
    )]
    ContainerdMissing { binary: String },
    /// Unix socket paths are limited to 107 bytes: use a shorter data dir.
    #[error(
        "the CRI socket path {0} is too long for a unix socket (at most 107 bytes): use a shorter data dir"
    )]
    SocketPathTooLong(PathBuf),
    /// A file or directory under the data dir could not be written: fix permissions or space.
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A helper program (containerd, ctr, ip) could not be run at all.
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// containerd died while starting: its log says why.
    #[error("containerd exited while starting ({status}); see {log}")]
    ContainerdExited { status: String, log: PathBuf },
    /// containerd runs but its CRI did not answer in time: see the log; retryable.
    #[error("containerd's CRI did not answer on {socket} within {timeout:?} ({last}); see {log}")]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        last: String,
        log: PathBuf,
    },
    /// The CRI socket refused the connection: containerd is not running there.
    #[error("connecting to the CRI at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    /// A CRI call failed; the status says whether to retry.
    #[error("CRI {call} failed: {source}")]
    Cri {
        call: &'static str,
        source: tonic::Status,
    },
    /// `ctr images import` refused an archive: the archive is bad or not a docker/OCI archive.
    #[error("importing {archive}: {message}")]
    Import { archive: PathBuf, message: String },
    /// The pod CIDR is not an IPv4 network address with a prefix of at most /30.
    #[error("invalid pod CIDR {0:?}: want an IPv4 network such as 10.42.0.0/24")]
    InvalidCidr(String),
    /// A helper program ran and failed.
    #[error("{program} failed: {message}")]
    Command { program: String, message: String },
}
