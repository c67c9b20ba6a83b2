//! The controller manager inside `k8rs server`: every enabled controller runs as an in-process
//! client of the API server while this server holds the `kube-system/kube-controller-manager`
//! Lease (upstream's leader election), so only one server's controllers act at a time.

use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use futures::future::BoxFuture;
use k8rs_auth::pki::ClusterPki;
use k8rs_controller_runtime::SharedInformers;
use k8rs_leaderelection::{ElectionConfig, run_while_leading};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use crate::flags::{Cidr, parse_duration};

/// The lease only the active controller manager holds.
pub const LEASE_NAME: &str = "kube-controller-manager";

/// The controller manager's flags, upstream's names.
#[derive(Args, Debug, Clone)]
pub struct ControllerFlags {
    /// Range of pod IPs; each node gets a slice of it.
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    pub cluster_cidr: Cidr,
    /// Prefix length of the pod range each node gets from --cluster-cidr.
    #[arg(long, default_value_t = 24, value_name = "BITS")]
    pub node_cidr_mask_size: u8,
    /// Controllers not to run, comma-separated (see --help for the names).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub disable_controllers: Vec<String>,
    /// How long a node may go without renewing its Lease or posting status before its Ready
    /// condition becomes Unknown and it is tainted unreachable.
    #[arg(long, default_value = "50s", value_name = "DURATION", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// Nodes per second whose pods may be evicted while their zone is healthy.
    #[arg(long, default_value_t = 0.1, value_name = "RATE")]
    pub node_eviction_rate: f64,
    /// Nodes per second whose pods may be evicted while their zone is partially disrupted.
    #[arg(long, default_value_t = 0.01, value_name = "RATE")]
    pub secondary_node_eviction_rate: f64,
    /// Share of not-ready nodes above which a zone counts as unhealthy.
    #[arg(long, default_value_t = 0.55, value_name = "FRACTION")]
    pub unhealthy_zone_threshold: f64,
    /// How often every quota's usage is recalculated in full.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub resource_quota_sync_period: Duration,
    /// Terminated pods kept before the oldest are deleted.
    #[arg(long, default_value_t = 12500, value_name = "N")]
    pub terminated_pod_gc_threshold: usize,
}

/// What every controller is started with.
pub struct Context {
    /// A client acting as `system:kube-controller-manager`.
    pub client: kube::Client,
    pub flags: ControllerFlags,
    /// The cluster CA, for the certificate signer and `kube-root-ca.crt`.
    pub pki: Arc<ClusterPki>,
    /// The server's data dir (local-path volumes live under `storage/`).
    pub data_dir: std::path::PathBuf,
}

type Start = fn(Arc<Context>, SharedInformers, CancellationToken) -> BoxFuture<'static, Result<()>>;

/// Every controller, by the name `--disable-controllers` knows it by.
const CONTROLLERS: &[(&str, Start)] = &[
    ("replicaset", |_ctx, informers, stop| {
        Box::pin(async move { Ok(k8rs_controllers_apps::replicaset::run(informers, stop).await?) })
    }),
    ("replicationcontroller", |_ctx, informers, stop| {
        Box::pin(
            async move { Ok(k8rs_controllers_apps::replicaset::run_rc(informers, stop).await?) },
        )
    }),
    ("deployment", |_ctx, informers, stop| {
        Box::pin(async move { Ok(k8rs_controllers_apps::deployment::run(informers, stop).await?) })
    }),
    ("daemonset", |_ctx, informers, stop| {
        Box::pin(async move { Ok(k8rs_controllers_apps::daemonset::run(informers, stop).await?) })
    }),
    ("statefulset", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_apps::statefulset::run(informers, stop).await?;
            Ok(())
        })
    }),
    ("job", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_batch::job::run(informers, Default::default(), stop).await?;
            Ok(())
        })
    }),
    ("cronjob", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_batch::cronjob::run(informers, Default::default(), stop).await?;
            Ok(())
        })
    }),
    ("ttl-after-finished", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_batch::ttl::run(informers, Default::default(), stop).await?;
            Ok(())
        })
    }),
    ("endpoint", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_endpoints::endpoints::run(informers, Default::default(), stop).await?;
            Ok(())
        })
    }),
    ("endpointslice", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_endpoints::endpointslice::run(informers, Default::default(), stop)
                .await?;
            Ok(())
        })
    }),
    ("endpointslicemirroring", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_endpoints::mirroring::run(informers, Default::default(), stop).await?;
            Ok(())
        })
    }),
    ("persistentvolume-binder", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers_storage::pvbinder::run(informers, Default::default(), stop).await?;
            Ok(())
        })
    }),
    ("local-path-provisioner", |ctx, informers, stop| {
        let config = k8rs_controllers_storage::localpath::LocalPathConfig {
            storage_root: ctx.data_dir.join("storage"),
        };
        Box::pin(async move {
            k8rs_controllers_storage::localpath::ensure_default_storage_class(ctx.client.clone())
                .await?;
            k8rs_controllers_storage::localpath::run(informers, config, stop).await?;
            Ok(())
        })
    }),
    ("servicelb", |_ctx, informers, stop| {
        Box::pin(async move {
            k8rs_controllers::servicelb::run(informers, stop).await?;
            Ok(())
        })
    }),
    ("nodeipam", nodeipam),
    ("garbagecollector", garbagecollector),
    ("serviceaccount", serviceaccount),
    ("root-ca-cert-publisher", rootcacert),
    ("nodelifecycle", nodelifecycle),
    ("podgc", podgc),
    ("csrsigning", certificates),
    ("disruption", disruption),
    ("horizontalpodautoscaling", hpa),
    ("resourcequota", |ctx, informers, stop| {
        let config = k8rs_controllers::resourcequota::ResourceQuotaConfig {
            resync_period: ctx.flags.resource_quota_sync_period,
        };
        Box::pin(async move {
            k8rs_controllers::resourcequota::run(informers, config, stop).await?;
            Ok(())
        })
    }),
];

/// Checks the flags before anything starts.
pub fn validate(flags: &ControllerFlags) -> Result<()> {
    for name in &flags.disable_controllers {
        if !CONTROLLERS.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = CONTROLLERS.iter().map(|(n, _)| *n).collect();
            bail!(
                "--disable-controllers: unknown controller {name:?} (known: {})",
                known.join(", ")
            );
        }
    }
    let mask = flags.node_cidr_mask_size;
    if mask < flags.cluster_cidr.prefix || mask > 30 {
        bail!(
            "--node-cidr-mask-size {mask} must be between the cluster CIDR's prefix ({}) and 30",
            flags.cluster_cidr.prefix
        );
    }
    Ok(())
}

/// Runs the enabled controllers during every term this server leads. A controller that fails
/// is a fatal error, as in upstream's controller manager: it stops k8rs.
pub async fn run(ctx: Arc<Context>, identity: String, shutdown: CancellationToken) -> Result<()> {
    let client = ctx.client.clone();
    let fatal = shutdown.clone();
    run_while_leading(
        client,
        LEASE_NAME,
        ElectionConfig::new(&identity),
        shutdown,
        |term| run_term(ctx.clone(), term, fatal.clone()),
    )
    .await;
    Ok(())
}

async fn run_term(ctx: Arc<Context>, term: CancellationToken, fatal: CancellationToken) {
    tracing::info!("leading: starting the controllers");
    let mut running = JoinSet::new();
    // One watch and one cache per resource type for all controllers of this term.
    let informers = SharedInformers::new(ctx.client.clone(), term.clone());
    for (name, start) in CONTROLLERS {
        if ctx.flags.disable_controllers.iter().any(|d| d == name) {
            continue;
        }
        let run = start(ctx.clone(), informers.clone(), term.clone());
        running.spawn(async move { (*name, run.await) });
    }
    while let Some(done) = running.join_next().await {
        match done {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(err))) => {
                tracing::error!(controller = name, "failed: {err:#}");
                fatal.cancel();
            }
            Err(err) => {
                tracing::error!("a controller panicked: {err}");
                fatal.cancel();
            }
        }
    }
}

fn nodeipam(
    ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    let config = k8rs_controllers::nodeipam::NodeIpamConfig {
        cluster_cidr: (ctx.flags.cluster_cidr.net, ctx.flags.cluster_cidr.prefix),
        node_cidr_mask_size: ctx.flags.node_cidr_mask_size,
    };
    Box::pin(async move {
        k8rs_controllers::nodeipam::run(informers, config, stop).await?;
        Ok(())
    })
}

fn garbagecollector(
    _ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    let config = k8rs_controllers::garbagecollector::GarbageCollectorConfig::default();
    Box::pin(async move {
        k8rs_controllers::garbagecollector::run(informers, config, stop).await?;
        Ok(())
    })
}

fn serviceaccount(
    _ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        k8rs_controllers::serviceaccount::run(informers, stop).await?;
        Ok(())
    })
}

fn rootcacert(
    ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    let config = k8rs_controllers::rootcacert::RootCaCertConfig {
        ca_pem: ctx.pki.ca_cert_pem().to_string(),
    };
    Box::pin(async move {
        k8rs_controllers::rootcacert::run(informers, config, stop).await?;
        Ok(())
    })
}

fn nodelifecycle(
    ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    let f = &ctx.flags;
    let config = k8rs_controllers::nodelifecycle::NodeLifecycleConfig {
        node_monitor_period: f.node_monitor_period,
        node_monitor_grace_period: f.node_monitor_grace_period,
        node_eviction_rate: f.node_eviction_rate,
        secondary_node_eviction_rate: f.secondary_node_eviction_rate,
        unhealthy_zone_threshold: f.unhealthy_zone_threshold,
        ..Default::default()
    };
    Box::pin(async move {
        k8rs_controllers::nodelifecycle::run(informers, config, stop).await?;
        Ok(())
    })
}

fn podgc(
    ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    let config = k8rs_controllers::podgc::PodGcConfig {
        terminated_pod_gc_threshold: ctx.flags.terminated_pod_gc_threshold,
        ..Default::default()
    };
    Box::pin(async move {
        k8rs_controllers::podgc::run(informers, config, stop).await?;
        Ok(())
    })
}

fn certificates(
    ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    let config = k8rs_controllers::certificates::CertificatesConfig::new(ctx.pki.clone());
    Box::pin(async move {
        k8rs_controllers::certificates::run(informers, config, stop).await?;
        Ok(())
    })
}

fn disruption(
    _ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        k8rs_controllers::disruption::run(informers, stop).await?;
        Ok(())
    })
}

fn hpa(
    _ctx: Arc<Context>,
    informers: SharedInformers,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<()>> {
    let config = k8rs_controllers_autoscaling::HpaConfig::default();
    Box::pin(async move {
        k8rs_controllers_autoscaling::run(informers, config, stop).await?;
        Ok(())
    })
}
