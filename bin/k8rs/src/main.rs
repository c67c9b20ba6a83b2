//! `k8rs`: one binary that runs a whole cluster. `k8rs server` runs the control plane; the
//! node agent arrives with the kubelet.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use k8rs_auth::kubeconfig::{Kubeconfig, write_kubeconfig};
use k8rs_auth::pki::{ClusterPki, PkiOptions};
use k8rs_store::Store;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "k8rs", version, about = "Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a control plane (API server with its store) and, unless disabled, a node.
    Server(ServerArgs),
    /// Simulate many nodes (as kubemark's hollow nodes): register them, keep them alive and
    /// play the kubelet's part for the pods bound to them, without running containers.
    HollowNodes(HollowArgs),
}

#[derive(Args, Debug, Clone)]
struct HollowArgs {
    /// How many nodes to simulate.
    #[arg(long, value_name = "N")]
    count: usize,
    /// Kubeconfig of the cluster to join.
    #[arg(long, value_name = "FILE")]
    kubeconfig: PathBuf,
    /// Node names are this prefix and a number.
    #[arg(long, default_value = "hollow-node-", value_name = "PREFIX")]
    name_prefix: String,
    /// CPU capacity of each node.
    #[arg(long, default_value = "4", value_name = "QUANTITY")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "16Gi", value_name = "QUANTITY")]
    memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value_t = 110, value_name = "N")]
    pods: u32,
    /// The nodes' `topology.kubernetes.io/zone` label.
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
}

/// A CIDR such as 10.43.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: Ipv4Addr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want ADDRESS/PREFIX)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv4 address (IPv4 only for now)"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("prefix length {prefix:?} must be a number from 8 to 30"))?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(ip) & !mask != 0 {
            return Err(format!(
                "{s} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(ip) & mask)
            ));
        }
        Ok(Cidr { net: ip, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[derive(Args, Debug, Clone)]
struct ServerArgs {
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
    /// Range of pod IPs; each node gets a slice of it.
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    cluster_cidr: Cidr,
    /// Prefix length of the pod range each node gets from --cluster-cidr.
    #[arg(long, default_value_t = 24, value_name = "BITS")]
    node_cidr_mask_size: u8,
    /// Do not run the scheduler in this server.
    #[arg(long)]
    disable_scheduler: bool,
    /// Controllers not to run, comma-separated (known: nodeipam).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    disable_controllers: Vec<String>,
    /// Extra names or IPs for the API server's certificate (repeatable).
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_san: Vec<String>,
    /// How often the store's history is compacted (e.g. 5m, 30s; 0 disables).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    etcd_compaction_interval: std::time::Duration,
    /// Run the control plane only, with no node on this machine.
    #[arg(long)]
    disable_agent: bool,
}

/// A duration such as `5m`, `30s`, `1h30m` or `0`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {c:?} (use h, m, s, ms)"
                ));
            }
        };
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        total += n * unit;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("invalid duration {s:?}: want e.g. 5m, 30s, 1h30m"));
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("K8RS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
        Command::HollowNodes(args) => runtime.block_on(hollow_nodes(args)),
    }
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
        _ => k8rs_auth::pki::host_ipv4_addresses()
            .into_iter()
            .find(|a| !a.is_loopback())
            .unwrap_or(Ipv4Addr::LOCALHOST),
    }
}

async fn server(args: ServerArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let service_ip = Ipv4Addr::from(u32::from(args.service_cidr.net) + 1);
    let pki_opts = PkiOptions {
        service_ip: IpAddr::V4(service_ip),
        extra_sans: args.tls_san.clone(),
        host_ips: None,
    };
    let pki = ClusterPki::load_or_create(&args.data_dir.join("tls"), &pki_opts)
        .context("setting up the cluster PKI")?;
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
        tracing::info!(
            "the node agent is not part of this build yet; running the control plane only"
        );
    }
    start_controllers(&api, &args, shutdown.clone())?;
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

const CONTROLLERS: &[&str] = &["nodeipam"];

/// Starts the controller manager's controllers as in-process clients of `api`, each once the
/// API server is ready.
fn start_controllers(
    api: &Arc<k8rs_apiserver::ApiServer>,
    args: &ServerArgs,
    shutdown: CancellationToken,
) -> Result<()> {
    for name in &args.disable_controllers {
        if !CONTROLLERS.contains(&name.as_str()) {
            bail!(
                "--disable-controllers: unknown controller {name:?} (known: {})",
                CONTROLLERS.join(", ")
            );
        }
    }
    let enabled = |name: &str| !args.disable_controllers.iter().any(|d| d == name);
    if enabled("nodeipam") {
        let mask = args.node_cidr_mask_size;
        if mask < args.cluster_cidr.prefix || mask > 30 {
            bail!(
                "--node-cidr-mask-size {mask} must be between the cluster CIDR's prefix ({}) and 30",
                args.cluster_cidr.prefix
            );
        }
        let config = k8rs_controllers::nodeipam::NodeIpamConfig {
            cluster_cidr: (args.cluster_cidr.net, args.cluster_cidr.prefix),
            node_cidr_mask_size: mask,
        };
        let client =
            k8rs_apiserver::inprocess::client(api.clone(), "system:kube-controller-manager", &[]);
        spawn_when_ready(
            api.clone(),
            "nodeipam",
            shutdown.clone(),
            move |shutdown| async move {
                k8rs_controllers::nodeipam::run(client, config, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            },
        );
    }
    Ok(())
}

/// Runs a component once the API server is ready; its failure is logged and shuts k8rs down.
fn spawn_when_ready<F, Fut>(
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

async fn hollow_nodes(args: HollowArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("loading the kubeconfig")?;
    let client = kube::Client::try_from(config).context("building the API client")?;
    let config = k8rs_hollow::HollowConfig {
        count: args.count,
        name_prefix: args.name_prefix,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        zone: args.zone,
        ..Default::default()
    };
    tracing::info!(count = config.count, "starting hollow nodes");
    k8rs_hollow::run(client, config, shutdown).await?;
    Ok(())
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!(%err, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("1h30m"),
            Ok(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert_eq!(parse_duration("0"), Ok(std::time::Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn cidr_parsing_explains_errors() {
        assert_eq!(
            "10.43.0.0/16".parse::<Cidr>(),
            Ok(Cidr {
                net: Ipv4Addr::new(10, 43, 0, 0),
                prefix: 16
            })
        );
        assert!(
            "10.43.0.1/16"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!(
            "10.43.0.0"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("not a CIDR")
        );
        assert!("fd00::/64".parse::<Cidr>().is_err());
    }
}
