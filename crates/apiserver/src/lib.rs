//! The Kubernetes API server of k8rs: the REST API over HTTPS on a [`Store`], with a watch cache,
//! discovery, OpenAPI, patches, authentication and admission.
//!
//! Only this crate touches the store. It must not depend on the scheduler, controllers, kubelet
//! or proxy: they are its clients.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8rs_auth::authn::UserInfo;
use k8rs_auth::pki::ClusterPki;
use k8rs_auth::tokens::TokenIssuer;
use k8rs_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod admission;
pub mod authz;
mod bootstrap;
pub mod cache;
pub mod convert;
pub mod crd;
pub mod decode;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod inprocess;
pub mod list;
pub mod metrics;
pub mod nodeproxy;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod registry;
pub mod request;
pub mod server;
pub mod strategy;
pub mod subresources;
pub mod table;
pub mod watch;

use error::{ApiError, ApiResult};
use registry::{Def, Registry, ResourceDef};

/// How the API server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind_address: IpAddr,
    pub port: u16,
    /// The address other members of the cluster reach this server at.
    pub advertise_address: Ipv4Addr,
    pub advertise_port: u16,
    pub service_cidr: (Ipv4Addr, u8),
    /// The service-account token issuer (and default audience).
    pub issuer: String,
    pub data_dir: PathBuf,
    /// How often the store's history is compacted (to the revision seen one interval earlier),
    /// as upstream's `--etcd-compaction-interval`. Zero disables compaction.
    pub compaction_interval: std::time::Duration,
    /// The join token agents present to request their node certificates (k3s's node token);
    /// `None` accepts no join token.
    pub join_token: Option<k8rs_auth::join::JoinToken>,
    /// How often node agents' resource metrics are scraped for `metrics.k8s.io`
    /// (metrics-server's `--metric-resolution`).
    pub metrics_scraper: metrics::ScraperConfig,
}

/// The API server's shared state; handlers borrow it through an `Arc`.
pub struct ApiServer {
    pub config: Config,
    pub registry: &'static Registry,
    pub store: Arc<dyn Store>,
    pub cache: Arc<cache::WatchCache>,
    pub schemas: Arc<openapi::Schemas>,
    pub allocators: strategy::Allocators,
    pub tokens: TokenIssuer,
    pub codec: k8rs_protobuf::Codec,
    pub authorizer: Box<dyn authz::Authorizer>,
    /// The scraped resource metrics `metrics.k8s.io` serves (see [`metrics::start_scraper`]).
    pub metrics: metrics::MetricsStore,
    /// The cluster CA certificate (PEM), served at `/cacerts`.
    pub ca_pem: String,
    /// Connects to kubelets (`pods/log`) with the API server's client certificate.
    pub kubelet_connector: tokio_rustls::TlsConnector,
    ready: AtomicBool,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading the watch cache from the store failed: {0}")]
    CacheLoadFailed(#[source] k8rs_store::Error),
    #[error("setting up TLS failed: {0}")]
    TlsSetupFailed(#[source] k8rs_auth::Error),
    #[error("creating the built-in objects failed: {0}")]
    BootstrapFailed(#[source] ApiError),
}

impl ApiServer {
    /// Loads the cache from `store` and prepares everything but the listener.
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        pki: &ClusterPki,
        shutdown: CancellationToken,
    ) -> Result<Arc<ApiServer>, StartError> {
        let registry: &'static Registry = Box::leak(Box::new(Registry::builtin()));
        let cache = cache::WatchCache::start(store.clone(), registry, shutdown)
            .await
            .map_err(StartError::CacheLoadFailed)?;
        let schemas = Arc::new(openapi::Schemas::build(registry));
        let codec = k8rs_protobuf::Codec::new(schemas.definitions());
        let allocators = strategy::Allocators::new(config.service_cidr.0, config.service_cidr.1);
        if let Some(services) = registry.lookup("", "v1", "services") {
            let (snapshot, _) = cache.snapshot();
            for svc in cache::range(&snapshot, &list::prefix(&services, None), None) {
                allocators.observe(&svc.value());
            }
        }
        let tokens = TokenIssuer::new(pki.service_account_key_pem(), &config.issuer)
            .map_err(StartError::TlsSetupFailed)?;
        Ok(Arc::new(ApiServer {
            config,
            registry,
            store,
            cache,
            schemas,
            allocators,
            tokens,
            codec,
            authorizer: Box::new(authz::AlwaysAllow),
            metrics: metrics::MetricsStore::default(),
            ca_pem: pki.ca_cert_pem().to_string(),
            kubelet_connector: metrics::scraper::connector(pki).map_err(|e| {
                StartError::TlsSetupFailed(k8rs_auth::Error::BuildTlsConfig(e.to_string()))
            })?,
            ready: AtomicBool::new(false),
        }))
    }

    /// Serves on `listener` until `shutdown`, with the built-in objects and background loops.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        pki: &ClusterPki,
        shutdown: CancellationToken,
    ) -> Result<(), StartError> {
        let acceptor = k8rs_auth::tls::acceptor(pki).map_err(StartError::TlsSetupFailed)?;
        let serving = tokio::spawn(server::serve(
            self.clone(),
            listener,
            acceptor,
            shutdown.clone(),
        ));
        self.bootstrap()
            .await
            .map_err(StartError::BootstrapFailed)?;
        let mut definitions = crd::Compiled::default();
        if let Err(err) = self.sync_custom_resources(&mut definitions).await {
            tracing::warn!(%err, "serving custom resource definitions failed");
        }
        self.ready.store(true, Ordering::Release);
        let custom = tokio::spawn(
            self.clone()
                .serve_custom_resources(definitions, shutdown.clone()),
        );
        let endpoints = tokio::spawn(self.clone().reconcile_endpoints(shutdown.clone()));
        let namespaces = tokio::spawn(self.clone().finalize_namespaces(shutdown.clone()));
        let compactor = tokio::spawn(self.clone().compact(shutdown.clone()));
        let scraper = metrics::start_scraper(
            self.clone(),
            pki,
            self.config.metrics_scraper,
            shutdown.clone(),
        )
        .map_err(|e| StartError::TlsSetupFailed(k8rs_auth::Error::BuildTlsConfig(e.to_string())))?;
        let _ = tokio::join!(serving, custom, endpoints, namespaces, compactor, scraper);
        Ok(())
    }

    /// Compacts the store's history every interval to the revision current one interval
    /// before, so that watches and paginated lists have a full interval to finish.
    async fn compact(self: Arc<Self>, shutdown: CancellationToken) {
        let interval = self.config.compaction_interval;
        if interval.is_zero() {
            return;
        }
        let mut previous: Option<i64> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Some(rev) = previous.filter(|r| *r > 0) {
                match self.store.compact(rev).await {
                    Ok(()) => {
                        self.cache.compact(rev);
                        tracing::debug!(revision = rev, "compacted the store");
                    }
                    Err(k8rs_store::Error::Compacted { .. }) => {}
                    Err(err) => tracing::warn!(%err, "compacting the store failed"),
                }
            }
            previous = self.store.current_revision().await.ok();
        }
    }

    /// Whether the server has loaded its cache and built-in objects.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The entry of `def`'s resource in its storage version (itself when it is stored as served).
    /// A custom resource's entry is its own storage entry.
    pub fn storage_def(&self, def: &ResourceDef) -> Def {
        self.registry
            .storage_def(def)
            .expect("every served resource has an entry in its storage version")
    }

    /// Authenticates a bearer token: a service-account token whose account (and bound pod)
    /// still exist with the UIDs it names.
    pub async fn authenticate_token(&self, token: &str) -> ApiResult<UserInfo> {
        let unauthorized = || ApiError::Unauthorized("Unauthorized".into());
        if let Some(join) = &self.config.join_token
            && join.matches(token)
        {
            return Ok(UserInfo {
                name: k8rs_auth::join::BOOTSTRAP_USER.into(),
                groups: k8rs_auth::join::BOOTSTRAP_GROUPS
                    .iter()
                    .map(|g| g.to_string())
                    .chain(["system:authenticated".to_string()])
                    .collect(),
                ..Default::default()
            });
        }
        let verified = self
            .tokens
            .verify(
                token,
                std::slice::from_ref(&self.config.issuer),
                chrono::Utc::now(),
            )
            .map_err(|_| unauthorized())?;
        let c = &verified.claims.kubernetes;
        let sa = self
            .lookup(
                "",
                "serviceaccounts",
                Some(&c.namespace),
                &c.serviceaccount.name,
            )
            .await;
        if sa.is_none_or(|sa| sa["metadata"]["uid"] != c.serviceaccount.uid.as_str()) {
            return Err(unauthorized());
        }
        if let Some(pod) = &c.pod {
            let live = self.lookup("", "pods", Some(&c.namespace), &pod.name).await;
            if live.is_none_or(|p| p["metadata"]["uid"] != pod.uid.as_str()) {
                return Err(unauthorized());
            }
        }
        Ok(verified.user)
    }
}
