//! The kubelet's HTTPS API on `server_port` (upstream: 10250), bound on the node IP:
//! `/healthz`, `/containerLogs/{ns}/{pod}/{container}`, `/metrics/resource` and
//! `/stats/summary`. Only the API server's client identity and admins (group
//! `system:masters`) may call it, authenticated by client certificates of the cluster CA.
//!
//! - [`logs`]: CRI log files read, filtered and followed.
//! - [`stats`]: usage from the CRI and `/proc`, rendered as Prometheus text and Summary JSON.
//! - [`tls`]: the serving certificate (CSR, self-signed fallback, renewal) and client
//!   verification.
//! - [`handlers`]: routing and authorization.

pub mod handlers;
pub mod logs;
pub mod stats;
pub mod tls;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use k8rs_auth::CertAndKey;
use k8rs_auth::serving::ServingCert;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::KubeletConfig;
use crate::cri::Cri;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// What every request handler shares.
pub struct ServerState {
    pub config: Arc<KubeletConfig>,
    pub cri: Arc<dyn Cri>,
}

/// A bound server, before it serves.
pub struct Bound {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    serving: Arc<ServingCert>,
    issued: Option<CertAndKey>,
    /// The address actually bound.
    pub addr: SocketAddr,
}

/// Binds `node_ip:server_port` and prepares TLS: the kept issued certificate if still valid,
/// else a self-signed one (replaced once a CSR is signed).
pub async fn bind(config: &KubeletConfig) -> Result<Bound, ServerError> {
    let addr = SocketAddr::new(config.node_ip, config.server_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let issued = tls::load_current(config);
    let first = match &issued {
        Some(pem) => pem.clone(),
        None => {
            tracing::info!(%addr, "kubelet server: starting with a self-signed certificate until a serving certificate is issued");
            tls::names(config)
                .self_signed()
                .map_err(tls::TlsError::from)?
        }
    };
    let serving = Arc::new(ServingCert::new(&first).map_err(tls::TlsError::from)?);
    let server_config =
        k8rs_auth::serving::server_config(serving.clone(), config.client_ca_pem.as_deref())
            .map_err(tls::TlsError::from)?;
    Ok(Bound {
        listener,
        acceptor: TlsAcceptor::from(Arc::new(server_config)),
        serving,
        issued,
        addr,
    })
}

/// Runs the server until `shutdown` (nothing when `server_port` is 0). A port that cannot be
/// bound is logged, not fatal: the kubelet runs pods without its API.
pub async fn run(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    cri: Arc<dyn Cri>,
    shutdown: CancellationToken,
) {
    if config.server_port == 0 {
        return;
    }
    match bind(&config).await {
        Ok(bound) => serve(bound, client, config, cri, shutdown).await,
        Err(e) => tracing::error!(error = %e, "kubelet server not started"),
    }
}

/// Serves `bound` until `shutdown`, keeping its certificate issued and renewed.
pub async fn serve(
    bound: Bound,
    client: kube::Client,
    config: Arc<KubeletConfig>,
    cri: Arc<dyn Cri>,
    shutdown: CancellationToken,
) {
    let Bound {
        listener,
        acceptor,
        serving,
        issued,
        addr,
    } = bound;
    tracing::info!(%addr, "kubelet server listening");
    let rotation = tokio::spawn(tls::rotate(
        client,
        config.clone(),
        serving,
        issued,
        shutdown.clone(),
    ));
    let state = Arc::new(ServerState { config, cri });
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    tracing::warn!(%err, "kubelet server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            acceptor.clone(),
            tcp,
            state.clone(),
            shutdown.clone(),
        ));
    }
    rotation.abort();
    let _ = rotation.await;
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    let (_, session) = tls.get_ref();
    let user = k8rs_auth::authn::user_from_peer_certificates(session.peer_certificates())
        .ok()
        .flatten();
    let user = Arc::new(user);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (state, user) = (state.clone(), user.clone());
        async move {
            Ok::<_, std::convert::Infallible>(
                handlers::handle(&state, user.as_ref().as_ref(), req).await,
            )
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::select! {
        _ = conn => {}
        _ = shutdown.cancelled() => {}
    }
}
