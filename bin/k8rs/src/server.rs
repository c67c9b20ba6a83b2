//! `k8rs server`: the control plane (API server, scheduler, controller manager) in one process
//! and, unless disabled, a node.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use k8rs_auth::kubeconfig::{Kubeconfig, write_kubeconfig};
use k8rs_auth::pki::{ClusterPki, PkiOptions};
use k8rs_store::Store;
use tokio_util::sync::CancellationToken;

use crate::controllers::{self, ControllerFlags};
use crate::flags::{Cidr, parse_duration};

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Directory for the store, certificates and kubeconfig.
    #[arg(long, default_value = "/var/lib/k8rs", value_name = "DIR")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443, value_name = "PORT")]
    https_port: u16,
    /// Address advertised to cluster members (default: the host's first non-loopback IPv4
    /// address, else 127.0.0.1).
    #[arg(long, value_name = "IP")]
    advertise_address: Option<Ipv4Addr>,
    /// Store: empty for the embedded store in the data dir; http(s):// URLs, comma-separated,
    /// for etcd.
    #[arg(long, default_value = "", value_name = "URLS")]
    datastore_endpoint: String,
    /// CA certificate to verify etcd with.
    #[arg(long, value_name = "FILE")]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long, value_name = "FILE")]
    datastore_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long, value_name = "FILE")]
    datastore_keyfile: Option<PathBuf>,
    /// Range of Service ClusterIPs.
    #[arg(long, default_value = "10.43.0.0/16", value_name = "CIDR")]
    service_cidr: Cidr,
    /// Do not run the scheduler in this server.
    #[arg(long)]
    disable_scheduler: bool,
    #[command(flatten)]
    pub controllers: ControllerFlags,
    /// Extra names or IPs for the API server's certificate (repeatable).
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_san: Vec<String>,
    /// How often the store's history is compacted (e.g. 5m, 30s; 0 disables).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    etcd_compaction_interval: std::time::Duration,
    /// Run the control plane only, with no node on this machine.
    #[arg(long)]
    disable_agent: bool,
    /// Do not serve cluster DNS from this server's node.
    #[arg(long)]
    disable_dns: bool,
    #[command(flatten)]
    node: crate::agent::NodeFlags,
}

async fn open_store(args: &ServerArgs) -> Result<Arc<dyn Store>> {
    if args.datastore_endpoint.is_empty() {
        let path = args.data_dir.join("db").join("state.redb");
        std::fs::create_dir_all(path.parent().unwrap_or(&args.data_dir))
            .with_context(|| format!("creating {}", path.display()))?;
        // Reads are served by the API server's watch cache: keep the store's own page cache small.
        // Its only watcher is the API server's cache, which keeps up: a short live buffer.
        let options = k8rs_store_embedded::Options {
            cache_size: Some(32 << 20),
            watch_buffer: 64,
            ..Default::default()
        };
        let store = k8rs_store_embedded::EmbeddedStore::open(&path, options)
            .with_context(|| format!("opening the embedded store at {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    let endpoints: Vec<String> = args
        .datastore_endpoint
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for e in &endpoints {
        if !e.starts_with("http://") && !e.starts_with("https://") {
            bail!("--datastore-endpoint: {e:?} is not an http:// or https:// etcd URL");
        }
    }
    let config = k8rs_store_etcd::EtcdConfig {
        endpoints,
        ca_file: args.datastore_cafile.clone(),
        cert_file: args.datastore_certfile.clone(),
        key_file: args.datastore_keyfile.clone(),
        ..Default::default()
    };
    let store = k8rs_store_etcd::EtcdStore::connect(config)
        .await
        .context("connecting to etcd")?;
    Ok(Arc::new(store))
}

/// The address cluster members reach this server at: `--advertise-address`, else a specific
/// non-loopback bind address, else the host's first non-loopback IPv4 address (endpoints may
/// not name loopback addresses), else 127.0.0.1.
fn advertise_address(args: &ServerArgs) -> Ipv4Addr {
    if let Some(a) = args.advertise_address {
        return a;
    }
    match args.bind_address {
        IpAddr::V4(a) if !a.is_unspecified() && !a.is_loopback() => a,
        _ => args.node.node_ip.unwrap_or_else(|| {
            crate::agent::host_ip(&[args.controllers.cluster_cidr, args.service_cidr])
        }),
    }
}

pub async fn server(args: ServerArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    crate::spawn_signal_handler(shutdown.clone());
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let service_ip = Ipv4Addr::from(u32::from(args.service_cidr.net) + 1);
    let pki_opts = PkiOptions {
        service_ip: IpAddr::V4(service_ip),
        extra_sans: args.tls_san.clone(),
        host_ips: None,
    };
    let pki = Arc::new(
        ClusterPki::load_or_create(&args.data_dir.join("tls"), &pki_opts)
            .context("setting up the cluster PKI")?,
    );
    let token_path = args.data_dir.join("token");
    let join_token = k8rs_auth::join::load_or_create(&token_path, pki.ca_cert_pem())
        .with_context(|| format!("writing the join token {}", token_path.display()))?;
    let store = open_store(&args).await?;
    let advertise = advertise_address(&args);
    let config = k8rs_apiserver::Config {
        bind_address: args.bind_address,
        port: args.https_port,
        advertise_address: advertise,
        advertise_port: args.https_port,
        service_cidr: (args.service_cidr.net, args.service_cidr.prefix),
        issuer: "https://kubernetes.default.svc.cluster.local".into(),
        data_dir: args.data_dir.clone(),
        compaction_interval: args.etcd_compaction_interval,
        join_token: Some(join_token),
        metrics_scraper: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind((args.bind_address, args.https_port))
        .await
        .with_context(|| format!("listening on {}:{}", args.bind_address, args.https_port))?;
    let api = k8rs_apiserver::ApiServer::new(config, store, &pki, shutdown.clone()).await?;
    let host = match args.bind_address {
        IpAddr::V4(a) if !a.is_unspecified() => a.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    let kubeconfig_path = args.data_dir.join("admin.kubeconfig");
    let admin = pki.admin_client();
    let kubeconfig = Kubeconfig::new(
        format!("https://{host}:{}", args.https_port),
        pki.ca_cert_pem(),
        admin.cert_pem.clone(),
        admin.key_pem.clone(),
    );
    write_kubeconfig(&kubeconfig_path, &kubeconfig).context("writing the admin kubeconfig")?;
    tracing::info!(
        "API server listening on https://{}:{}; admin kubeconfig written to {}",
        args.bind_address,
        args.https_port,
        kubeconfig_path.display()
    );
    if !args.disable_agent {
        let cidrs = crate::agent::Cidrs {
            service: args.service_cidr,
            cluster: args.controllers.cluster_cidr,
        };
        let mut config = args.node.agent_config(args.data_dir.clone(), true, &cidrs);
        config.client_ca_pem = Some(pki.ca_cert_pem().to_string());
        if !args.disable_dns {
            config.dns = Some(k8rs_agent::dns::ClusterDns {
                service_ip: args.node.cluster_dns,
                cluster_domain: args.node.cluster_domain.clone(),
                bridge: args.node.cni_bridge.clone(),
            });
        }
        let user = format!("system:node:{}", config.node_name);
        let client = k8rs_apiserver::inprocess::client(api.clone(), &user, &["system:nodes"]);
        spawn_when_ready(
            api.clone(),
            "agent",
            shutdown.clone(),
            move |shutdown| async move {
                k8rs_agent::run(client, config, shutdown).await?;
                Ok(())
            },
        );
    }
    controllers::validate(&args.controllers)?;
    let ctx = Arc::new(controllers::Context {
        client: k8rs_apiserver::inprocess::client(
            api.clone(),
            "system:kube-controller-manager",
            &[],
        ),
        flags: args.controllers.clone(),
        pki: pki.clone(),
        data_dir: args.data_dir.clone(),
    });
    let identity = leader_identity();
    spawn_when_ready(
        api.clone(),
        "controller-manager",
        shutdown.clone(),
        move |shutdown| controllers::run(ctx, identity, shutdown),
    );
    if !args.disable_scheduler {
        let client = k8rs_apiserver::inprocess::client(api.clone(), "system:kube-scheduler", &[]);
        spawn_when_ready(
            api.clone(),
            "scheduler",
            shutdown.clone(),
            move |shutdown| async move {
                let config = k8rs_scheduler::SchedulerConfig::default();
                k8rs_scheduler::run(client, config, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            },
        );
    }
    api.run(listener, &pki, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// This server's identity in leader elections: the host name and a random suffix, as upstream.
fn leader_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "k8rs".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Runs a component once the API server is ready; its failure is logged and shuts k8rs down.
pub fn spawn_when_ready<F, Fut>(
    api: Arc<k8rs_apiserver::ApiServer>,
    name: &'static str,
    shutdown: CancellationToken,
    run: F,
) where
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        while !api.ready() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            }
        }
        tracing::info!(component = name, "starting");
        if let Err(err) = run(shutdown.clone()).await {
            tracing::error!(component = name, "failed: {err:#}");
            shutdown.cancel();
        }
    });
}
