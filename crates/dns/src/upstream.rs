//! Forwarding of names outside the cluster to the node's resolvers (those of a resolv.conf),
//! with a bounded timeout and a small limit on concurrent exchanges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::resolvconf::parse_resolv_conf;

/// How often the resolv.conf is checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest time one upstream server is given.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// Why a question could not be forwarded; each becomes a SERVFAIL whose extended error text
/// (RFC 8914) says this.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ForwardError {
    #[error("no upstream resolvers: {0} names none that is not this server")]
    NoUpstreams(String),
    #[error("too many upstream queries in flight")]
    Busy,
    #[error("no answer from the upstream resolvers ({0})")]
    Failed(String),
}

#[derive(Debug)]
struct Servers {
    checked: Instant,
    modified: Option<SystemTime>,
    addrs: Vec<SocketAddr>,
}

/// The upstream resolvers and the limits on asking them.
#[derive(Debug)]
pub(crate) struct Upstream {
    path: PathBuf,
    own: Vec<SocketAddr>,
    timeout: Duration,
    permits: Semaphore,
    servers: Mutex<Servers>,
}

impl Upstream {
    /// Reads the resolvers from `path`, leaving out those that are this server (`own` are the
    /// addresses it listens on).
    pub(crate) fn new(
        path: PathBuf,
        own: Vec<SocketAddr>,
        timeout: Duration,
        max_concurrent: usize,
    ) -> Arc<Upstream> {
        let (modified, addrs) = load(&path, &own);
        if addrs.is_empty() {
            tracing::warn!(path = %path.display(), "no usable upstream resolvers; names outside the cluster get SERVFAIL");
        }
        Arc::new(Upstream {
            path,
            own,
            timeout,
            permits: Semaphore::new(max_concurrent.max(1)),
            servers: Mutex::new(Servers {
                checked: Instant::now(),
                modified,
                addrs,
            }),
        })
    }

    /// The resolvers currently used (re-reading the file when it changed).
    pub(crate) fn servers(&self) -> Vec<SocketAddr> {
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if servers.checked.elapsed() >= RELOAD_INTERVAL {
            servers.checked = Instant::now();
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if modified != servers.modified {
                let (modified, addrs) = load(&self.path, &self.own);
                tracing::info!(path = %self.path.display(), ?addrs, "upstream resolvers reloaded");
                servers.modified = modified;
                servers.addrs = addrs;
            }
        }
        servers.addrs.clone()
    }

    /// Sends a query (wire format) upstream and returns the first answer, trying the resolvers
    /// in order within the timeout.
    pub(crate) async fn exchange(&self, query: &[u8]) -> Result<Vec<u8>, ForwardError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(ForwardError::NoUpstreams(self.path.display().to_string()));
        }
        let _permit = self.permits.try_acquire().map_err(|_| ForwardError::Busy)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let per_attempt =
            (self.timeout / u32::try_from(servers.len()).unwrap_or(1)).max(MIN_ATTEMPT);
        let mut last = String::from("timed out");
        for server in servers {
            let attempt_end = (tokio::time::Instant::now() + per_attempt).min(deadline);
            match tokio::time::timeout_at(attempt_end, exchange_with(server, query)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => last = format!("{server}: {e}"),
                Err(_) => last = format!("{server}: timed out"),
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        Err(ForwardError::Failed(last))
    }
}

fn load(path: &std::path::Path, own: &[SocketAddr]) -> (Option<SystemTime>, Vec<SocketAddr>) {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let addrs = parse_resolv_conf(&text)
        .nameservers
        .iter()
        .filter_map(|ns| nameserver_addr(ns))
        .filter(|addr| !loops_back(*addr, own))
        .collect();
    (modified, addrs)
}

/// A `nameserver` value: an address (port 53), or, as an extension for tests and unusual
/// setups, `address:port` / `[v6]:port`.
pub(crate) fn nameserver_addr(value: &str) -> Option<SocketAddr> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    value.parse::<SocketAddr>().ok()
}

/// Whether asking `upstream` would ask this server itself: it is one of our addresses, or a
/// loopback address on a port we listen on with a wildcard or loopback bind.
pub(crate) fn loops_back(upstream: SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|ours| {
        *ours == upstream
            || (upstream.ip().is_loopback()
                && ours.port() == upstream.port()
                && (ours.ip().is_unspecified() || ours.ip().is_loopback()))
    })
}

async fn exchange_with(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let answer = exchange_udp(server, query).await?;
    // A truncated answer (TC bit) is asked again over TCP.
    if answer.get(2).is_some_and(|flags| flags & 0x02 != 0) {
        return exchange_tcp(server, query).await;
    }
    Ok(answer)
}

async fn exchange_udp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only the answer to this query (same ID) counts.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_values() {
        assert_eq!(
            nameserver_addr("10.0.0.2"),
            Some("10.0.0.2:53".parse().unwrap())
        );
        assert_eq!(
            nameserver_addr("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(nameserver_addr("fe80::1%eth0"), None);
    }

    #[test]
    fn loop_detection() {
        let own: Vec<SocketAddr> = vec!["0.0.0.0:53".parse().unwrap()];
        assert!(loops_back("127.0.0.1:53".parse().unwrap(), &own));
        assert!(!loops_back("127.0.0.53:5353".parse().unwrap(), &own));
        assert!(!loops_back("10.0.0.2:53".parse().unwrap(), &own));
        let own: Vec<SocketAddr> = vec!["10.43.0.10:53".parse().unwrap()];
        assert!(loops_back("10.43.0.10:53".parse().unwrap(), &own));
        assert!(!loops_back("127.0.0.53:53".parse().unwrap(), &own));
    }

    #[tokio::test]
    async fn no_upstreams_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.1\n").unwrap();
        let own = vec!["127.0.0.1:53".parse().unwrap()];
        let up = Upstream::new(path, own, Duration::from_secs(1), 4);
        assert!(matches!(
            up.exchange(&[0u8; 12]).await,
            Err(ForwardError::NoUpstreams(_))
        ));
    }
}
