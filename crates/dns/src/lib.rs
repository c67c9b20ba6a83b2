//! Cluster DNS for k8rs: what CoreDNS with the kubernetes plugin (`pods insecure`) serves behind
//! the `kube-dns` Service, following upstream's DNS specification for Kubernetes
//! (github.com/kubernetes/dns, docs/specification.md):
//!
//! - A/AAAA records of ClusterIP Services, the published endpoints of headless Services
//!   (ready ones, or all with `publishNotReadyAddresses`; NXDOMAIN when there are none), and
//!   `<hostname>.<service>.<ns>.svc` for endpoints and for pods with `hostname` + `subdomain`;
//! - SRV records `_<port>._<proto>.<service>.<ns>.svc` for named ports (one target for a
//!   ClusterIP Service, one per endpoint for a headless one);
//! - `<a>-<b>-<c>-<d>.<ns>.pod` A records, ExternalName Services as CNAMEs (followed upstream),
//!   PTR records of cluster IPs and headless endpoints, `dns-version.<zone>` TXT `"1.1.0"`;
//! - other names forwarded to the resolvers of a resolv.conf (SERVFAIL with an RFC 8914
//!   extended error text when there are none).
//!
//! It also composes pods' resolv.conf for the kubelet ([`resolv_conf`]).
//!
//! Layers: [`Catalog`] (the watch-fed view) <- `resolve` (pure) <- `server` (UDP/TCP) <- [`run`].
//! Depends on kube/k8s-openapi as an API client and on hickory-proto for the wire format only;
//! it must not depend on the API server, the store, or other k8rs components.

mod catalog;
mod resolvconf;
mod resolve;
mod server;
mod upstream;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use catalog::{Catalog, Kind};
pub use resolvconf::{
    DnsPolicy, MAX_NAMESERVERS, MAX_SEARCH_LIST_CHARS, MAX_SEARCH_PATHS, ResolvConf,
    parse_resolv_conf, resolv_conf,
};
pub use resolve::SCHEMA_VERSION;

/// How long [`run`] waits for the first list of every kind before serving anyway (CoreDNS's
/// "starting server with unsynced Kubernetes API").
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listen address could not be bound (in use, or not an address of this host). Fatal
    /// for this configuration: fix the address or free the port.
    #[error("cannot listen on {addr} ({proto}): {source}")]
    BindFailed {
        addr: SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The configuration has no listen address.
    #[error("no address to listen on")]
    NoBindAddress,
}

/// Configuration of the cluster DNS server.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The zone served, `cluster.local`.
    pub cluster_domain: String,
    /// Where to listen, UDP and TCP on each. The agent binds where the kube-dns Service is
    /// DNATed to, never the node's external addresses; port 0 picks a free port (tests).
    pub bind: Vec<SocketAddr>,
    /// The resolv.conf naming the upstream resolvers (re-read when it changes).
    pub upstream_resolv_conf: PathBuf,
    /// TTL of the cluster records (CoreDNS's default: 5 s).
    pub ttl: Duration,
    /// Time budget for one forwarded question, over all upstream resolvers.
    pub upstream_timeout: Duration,
    /// Most forwarded questions in flight; more get SERVFAIL at once.
    pub max_concurrent_forwards: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            cluster_domain: "cluster.local".into(),
            bind: vec![SocketAddr::from((Ipv4Addr::new(10, 43, 0, 10), 53))],
            upstream_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            ttl: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(5),
            max_concurrent_forwards: 100,
        }
    }
}

/// Sockets bound and ready to serve.
#[derive(Debug)]
pub struct BoundServer {
    config: DnsConfig,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    addrs: Vec<SocketAddr>,
}

/// Binds UDP and TCP on every configured address (the same port for both when the configured
/// port is 0).
pub async fn bind(config: DnsConfig) -> Result<BoundServer, Error> {
    if config.bind.is_empty() {
        return Err(Error::NoBindAddress);
    }
    let mut bound = BoundServer {
        udp: Vec::new(),
        tcp: Vec::new(),
        addrs: Vec::new(),
        config,
    };
    for addr in bound.config.bind.clone() {
        let (udp, tcp, local) = bind_pair(addr).await?;
        bound.udp.push(Arc::new(udp));
        bound.tcp.push(tcp);
        bound.addrs.push(local);
    }
    Ok(bound)
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), Error> {
    let mut last = None;
    // With port 0 the UDP port may be taken for TCP; try a few.
    for _ in 0..8 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| Error::BindFailed {
                addr,
                proto: "udp",
                source,
            })?;
        let local = udp.local_addr().map_err(|source| Error::BindFailed {
            addr,
            proto: "udp",
            source,
        })?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(source) if addr.port() == 0 => last = Some(source),
            Err(source) => {
                return Err(Error::BindFailed {
                    addr,
                    proto: "tcp",
                    source,
                });
            }
        }
    }
    Err(Error::BindFailed {
        addr,
        proto: "tcp",
        source: last.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

impl BoundServer {
    /// The addresses listened on (UDP and TCP alike).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Serves from a view kept by the API server's watches until `shutdown`; starts answering
    /// once every kind has been listed (or after 5 s, as CoreDNS).
    pub async fn serve(
        self,
        client: kube::Client,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let catalog = Catalog::new();
        let mut synced = watch::spawn_watchers(&client, &catalog, &shutdown);
        let wait = synced.wait_for(|n| *n >= watch::WATCHERS);
        if tokio::time::timeout(SYNC_WAIT, wait).await.is_err() {
            tracing::warn!("serving DNS before the API watches have listed");
        }
        self.serve_catalog(catalog, shutdown).await
    }

    /// Serves from a given view until `shutdown` (tests and benchmarks fill it directly).
    pub async fn serve_catalog(
        self,
        catalog: Catalog,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let upstream = upstream::Upstream::new(
            self.config.upstream_resolv_conf.clone(),
            self.addrs.clone(),
            self.config.upstream_timeout,
            self.config.max_concurrent_forwards,
        );
        let ttl = u32::try_from(self.config.ttl.as_secs()).unwrap_or(u32::MAX);
        let state = Arc::new(server::State {
            zone: resolve::Zone::new(&self.config.cluster_domain, ttl),
            catalog,
            upstream,
        });
        tracing::info!(addrs = ?self.addrs, zone = %self.config.cluster_domain, "cluster DNS serving");
        let mut tasks = tokio::task::JoinSet::new();
        for socket in self.udp {
            tasks.spawn(server::serve_udp(state.clone(), socket, shutdown.clone()));
        }
        for listener in self.tcp {
            tasks.spawn(server::serve_tcp(state.clone(), listener, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Runs the cluster DNS server until `shutdown`: binds, watches the API server, serves.
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    bind(config).await?.serve(client, shutdown).await
}

#[cfg(test)]
mod resolve_tests;
