//! Hollow nodes: thousands of simulated kubelets in one process, so the control plane can be
//! run and measured at scale on one machine, as kubemark and kwok do for Kubernetes.
//!
//! [`run`] registers `count` Node objects, keeps each alive as a kubelet does (a Lease renewed
//! every 10 s, a status heartbeat every minute) and plays the kubelet for the pods bound to them:
//! they get an address from the node's podCIDR and become Running and Ready at once; a deletion
//! request deletes them at once (the containers "stop" instantly); annotations make them exit
//! (for Jobs, see [`annotations`]) and report usage (for metrics, see [`usage`]).
//!
//! Cheap by construction: two watches for the whole process (bound pods, hollow nodes), one
//! heartbeat task spreading the renewals over the period, one timer wheel for container exits,
//! bounded write concurrency, responses not decoded. Stopping it leaves the nodes registered:
//! the control plane sees a node failure, as it should.
//!
//! This crate is a client of the API server: it must not depend on the API server or a store
//! crate.

pub mod annotations;
pub mod driver;
pub mod heartbeat;
pub mod images;
pub mod ip;
pub mod kubelet;
pub mod metrics;
pub mod node;
pub mod register;
pub mod serving;
pub mod status;
pub mod usage;
pub mod writer;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use annotations::{PodUsage, usage};
pub use metrics::MetricsEndpoint;
pub use serving::MetricsTls;
pub use usage::UsageTable;

/// Errors of the hollow nodes: only a configuration the API server would refuse stops them; API
/// errors are logged and retried.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// Fix the flags.
    #[error("invalid hollow node configuration: {0}")]
    InvalidConfig(String),
    /// The metrics endpoint could not be bound (a port in use): fix the flags.
    #[error("serving hollow node metrics failed: {0}")]
    MetricsServerFailed(String),
}

/// What the hollow nodes look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HollowConfig {
    /// How many nodes this process simulates.
    pub count: usize,
    /// Node `i` is named `{name_prefix}{i}` (default `hollow-node-`).
    pub name_prefix: String,
    /// CPU capacity of each node, a quantity (default `4`).
    pub cpu: String,
    /// Memory capacity of each node, a quantity (default `16Gi`).
    pub memory: String,
    /// Pod capacity of each node (default 110).
    pub pods: u32,
    /// `topology.kubernetes.io/zone` of every node, when given.
    pub zone: Option<String>,
    /// Images listed in each node's `status.images` (empty: [`images::DEFAULT_IMAGES`]).
    pub images: Vec<String>,
    /// Serve the kubelet's `/metrics/resource` for every node here; every node then advertises
    /// this address as its InternalIP and this port as its kubelet port. `None`: no metrics,
    /// each node has its own unroutable InternalIP and advertises port 10250.
    pub metrics: Option<MetricsEndpoint>,
    /// Where the metrics endpoint's serving certificate comes from (the API server verifies it
    /// against the cluster CA): by default a `kubelet-serving` CSR the cluster's signer signs.
    pub metrics_tls: MetricsTls,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            count: 1,
            name_prefix: "hollow-node-".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            zone: None,
            images: Vec::new(),
            metrics: None,
            metrics_tls: MetricsTls::default(),
        }
    }
}

/// Runs the hollow nodes until `shutdown`. Fails at once on a configuration the API server
/// would refuse; otherwise returns `Ok` at shutdown, leaving the nodes registered.
pub async fn run(
    client: kube::Client,
    config: HollowConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_usage(client, config, UsageTable::default(), shutdown).await
}

/// [`run`], recording the usage the pods report in `usage` for whoever serves metrics.
pub async fn run_with_usage(
    client: kube::Client,
    config: HollowConfig,
    usage: UsageTable,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    node::validate(&config)?;
    let mut config = config;
    let metrics = match config.metrics {
        Some(endpoint) => {
            let first = node::node_name(&config.name_prefix, 0);
            let bound = metrics::bind(endpoint, &config.metrics_tls, &first).await?;
            config.metrics = Some(bound.endpoint);
            tracing::info!(endpoint = ?bound.endpoint, "hollow node metrics served");
            Some(bound)
        }
        None => None,
    };
    let Some(registered) = register::register_all(&client, &config, &shutdown).await else {
        return Ok(());
    };
    tracing::info!(
        count = registered.len(),
        prefix = config.name_prefix,
        "hollow nodes registered"
    );
    let (urgent_tx, urgent_rx) = mpsc::unbounded_channel();
    let beats = registered
        .iter()
        .map(|r| heartbeat::HeartbeatNode {
            name: r.name.clone(),
            uid: r.uid.clone(),
        })
        .collect();
    let metrics = metrics.map(|bound| {
        if let (MetricsTls::Csr, Some(first)) = (&config.metrics_tls, registered.first()) {
            tokio::spawn(serving::rotate(
                client.clone(),
                first.name.clone(),
                bound.endpoint.address,
                bound.serving.clone(),
                shutdown.clone(),
            ));
        }
        let names = registered.iter().map(|r| r.name.clone()).collect();
        tokio::spawn(metrics::serve(
            bound,
            std::sync::Arc::new(names),
            usage.clone(),
            shutdown.clone(),
        ))
    });
    let heartbeat = tokio::spawn(heartbeat::run(
        client.clone(),
        beats,
        urgent_rx,
        shutdown.clone(),
    ));
    driver::run(client, &registered, usage, urgent_tx, shutdown).await;
    let _ = heartbeat.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(())
}

/// Compiles only while the public futures are `Send` (they run on a multi-threaded runtime).
#[allow(dead_code)]
fn run_is_send(client: kube::Client) -> impl Future<Output = Result<(), Error>> + Send {
    run(client, HollowConfig::default(), CancellationToken::new())
}
