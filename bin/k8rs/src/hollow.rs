//! `k8rs hollow-nodes`: simulated nodes (as kubemark's) joining a cluster by kubeconfig.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub struct HollowArgs {
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
    /// The address the nodes' resource metrics endpoint listens on, and that every node
    /// advertises as its InternalIP (the API server scrapes it for `metrics.k8s.io`).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    metrics_address: std::net::Ipv4Addr,
    /// The metrics endpoint's port (0: any free port).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    metrics_port: u16,
    /// The nodes' `topology.kubernetes.io/zone` label.
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
}

pub async fn hollow_nodes(args: HollowArgs) -> Result<()> {
    let shutdown = CancellationToken::new();
    crate::spawn_signal_handler(shutdown.clone());
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
        metrics: Some(k8rs_hollow::MetricsEndpoint {
            address: args.metrics_address,
            port: args.metrics_port,
        }),
        ..Default::default()
    };
    tracing::info!(count = config.count, "starting hollow nodes");
    k8rs_hollow::run(client, config, shutdown).await?;
    Ok(())
}
