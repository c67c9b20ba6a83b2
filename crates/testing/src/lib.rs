//! Test support for the components that are clients of the API server (scheduler, controllers,
//! node agents): [`TestServer`] runs the real k8rs API server in-process, on an in-memory store,
//! listening on a loopback port with an admin kubeconfig for `kubectl`.
//!
//! Only tests depend on this crate.

pub mod netguard;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8rs_apiserver::{ApiServer, Config};
use k8rs_auth::kubeconfig::{Kubeconfig, write_kubeconfig};
use k8rs_auth::pki::{ClusterPki, PkiOptions};
use k8rs_store_embedded::EmbeddedStore;
use tokio_util::sync::CancellationToken;

/// The default service CIDR, as k3s's.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);

/// A running API server; stopped when dropped.
pub struct TestServer {
    /// The server itself, for in-process clients.
    pub api: Arc<ApiServer>,
    /// Its HTTPS address, `https://127.0.0.1:PORT`.
    pub url: String,
    /// An admin kubeconfig for `kubectl --kubeconfig`.
    pub kubeconfig: PathBuf,
    /// The cluster's certificates.
    pub pki: ClusterPki,
    /// The join token agents present (k3s's node token).
    pub join_token: k8rs_auth::join::JoinToken,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server and waits until it is ready (built-in namespaces and objects exist).
    ///
    /// # Panics
    /// If the server cannot start: this is test support.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let shutdown = CancellationToken::new();
        let pki_opts = PkiOptions {
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
            extra_sans: vec![],
            host_ips: Some(vec![]),
        };
        let pki = ClusterPki::load_or_create(&dir.path().join("tls"), &pki_opts).expect("pki");
        let store = Arc::new(EmbeddedStore::in_memory().expect("in-memory store"));
        let join_token =
            k8rs_auth::join::load_or_create(&dir.path().join("token"), pki.ca_cert_pem())
                .expect("join token");
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let config = Config {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            advertise_address: Ipv4Addr::LOCALHOST,
            advertise_port: port,
            service_cidr: SERVICE_CIDR,
            issuer: "https://kubernetes.default.svc.cluster.local".into(),
            data_dir: dir.path().to_path_buf(),
            compaction_interval: Duration::from_secs(300),
            join_token: Some(join_token.clone()),
            metrics_scraper: k8rs_apiserver::metrics::ScraperConfig {
                resolution: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
            },
        };
        let api = ApiServer::new(config, store, &pki, shutdown.clone())
            .await
            .expect("API server");
        let url = format!("https://127.0.0.1:{port}");
        let admin = pki.admin_client();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let kc = Kubeconfig::new(
            url.clone(),
            pki.ca_cert_pem(),
            admin.cert_pem.clone(),
            admin.key_pem.clone(),
        );
        write_kubeconfig(&kubeconfig, &kc).expect("write kubeconfig");
        let pki_for_run =
            ClusterPki::load_or_create(&dir.path().join("tls"), &pki_opts).expect("pki reloads");
        let (api_run, token) = (api.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(err) = api_run.run(listener, &pki_for_run, token).await {
                panic!("API server stopped: {err}");
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !api.ready() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "API server not ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        TestServer {
            api,
            url,
            kubeconfig,
            pki,
            join_token,
            shutdown,
            _dir: dir,
        }
    }

    /// An in-process client acting as the cluster admin (`system:masters`).
    pub fn client(&self) -> kube::Client {
        self.client_as("system:admin", &["system:masters"])
    }

    /// An in-process client acting as `user` in `groups` (plus `system:authenticated`).
    pub fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        k8rs_apiserver::inprocess::client(self.api.clone(), user, groups)
    }

    /// A token that is cancelled when the server stops, for components started beside it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
///
/// # Panics
/// When the time runs out, naming `what` was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;

    #[tokio::test]
    async fn serves_the_built_in_namespaces() {
        let server = TestServer::start().await;
        let namespaces: kube::Api<Namespace> = kube::Api::all(server.client());
        let ns = namespaces
            .get("kube-system")
            .await
            .expect("kube-system exists");
        assert_eq!(ns.metadata.name.as_deref(), Some("kube-system"));
    }
}
