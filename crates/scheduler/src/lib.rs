//! The kube-scheduler of k8rs: assigns pending pods to nodes as upstream's kube-scheduler does.
//!
//! It is a client of the API server like every component but the API server: kube-runtime
//! watchers over pods and nodes feed its own [`cache`] and scheduling [`queue`]; it binds through
//! the `pods/binding` subresource and reports through events and pod conditions. With leader
//! election only the holder of the `kube-system/kube-scheduler` Lease schedules.
//!
//! The [`framework`] has upstream's extension points as small traits and a [`framework::Status`]
//! whose code decides how a pod is retried; [`plugins`] holds one plugin per module and upstream's
//! default profile. [`schedule`] is the pure algorithm, [`scheduler`] the loop around it.
//!
//! Must not depend on the API server or any store crate: everything goes through `kube::Client`.
//! Every write goes through [`api::ClusterApi`] and the lease through [`k8rs_leaderelection::LeaseStore`], so
//! the logic is tested with in-memory fakes.

pub mod api;
pub mod cache;
pub mod framework;
pub mod informers;
pub mod listers;
pub mod nodeinfo;
pub mod plugins;
pub mod podinfo;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod scheduler;
pub mod snapshot;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::events::Reporter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{KubeApi, SharedApi};
use crate::cache::Cache;
use k8rs_leaderelection::{ElectionConfig, run_while_leading};

/// The lease only the active scheduler holds.
pub const LEASE_NAME: &str = "kube-scheduler";
use crate::listers::Listers;
use crate::queue::{QueueConfig, SchedulingQueue};
use crate::schedule::Algorithm;
use crate::scheduler::{Handles, Scheduler};

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pod or node watch ended before its first list completed (the client is unusable).
    /// Restart the scheduler with a working client.
    #[error("the {0} informer stopped before it synced")]
    InformerStopped(&'static str),
}

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The `spec.schedulerName` this scheduler serves (`default-scheduler`).
    pub scheduler_name: String,
    /// `percentageOfNodesToScore`; `None` (or 0) is upstream's adaptive default.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Whether to schedule only while holding the `kube-scheduler` Lease.
    pub leader_election: bool,
    /// The lease holder identity (also the events' reporting instance).
    pub identity: String,
    /// Upstream's `parallelism` (16). Filtering and scoring currently run on the scheduling
    /// task; the value is kept for configuration parity.
    pub parallelism: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "k8rs".into());
        Self {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: None,
            leader_election: true,
            identity: format!("{host}_{:016x}", rand::random::<u64>()),
            parallelism: 16,
        }
    }
}

/// Runs the scheduler against the API server behind `client` until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: SchedulerConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (listers, writers) = Listers::new();
    let reporter = Reporter {
        controller: config.scheduler_name.clone(),
        instance: Some(config.identity.clone()),
    };
    let api: SharedApi = Arc::new(KubeApi::new(client.clone(), reporter));
    let framework = Arc::new(plugins::default_framework(listers, Arc::clone(&api)));
    let cache = Arc::new(Cache::new());
    let queue = Arc::new(SchedulingQueue::new(
        Arc::clone(&framework),
        QueueConfig::default(),
    ));
    let informers = shutdown.child_token();
    informers::spawn_reflectors(&client, writers, &queue, &informers);
    let (pods_synced, mut pods_ready) = watch::channel(false);
    let (nodes_synced, mut nodes_ready) = watch::channel(false);
    let pod_handler = informers::PodHandler::new(
        Arc::clone(&cache),
        Arc::clone(&queue),
        &config.scheduler_name,
    );
    tokio::spawn(informers::run_informer::<Pod, _>(
        client.clone(),
        pod_handler,
        pods_synced,
        informers.clone(),
    ));
    let node_handler = informers::NodeHandler::new(Arc::clone(&cache), Arc::clone(&queue));
    tokio::spawn(informers::run_informer::<Node, _>(
        client.clone(),
        node_handler,
        nodes_synced,
        informers.clone(),
    ));
    for (name, ready) in [("pod", &mut pods_ready), ("node", &mut nodes_ready)] {
        // The informers stop with `shutdown` too: a shutdown is never an informer failure.
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            ok = wait_until(ready, true) => {
                if !ok {
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    return Err(Error::InformerStopped(name));
                }
            }
        }
    }
    tracing::info!(name = %config.scheduler_name, "scheduler caches synced");
    let handles = Handles {
        framework,
        cache,
        queue,
        api,
        scheduler_name: config.scheduler_name.clone(),
    };
    if !config.leader_election {
        serve(&handles, &config, shutdown.child_token()).await;
        return Ok(());
    }
    lead_and_serve(client, handles, config, shutdown).await;
    Ok(())
}

/// Waits until the watched flag equals `value`; false when the sender is gone.
async fn wait_until(rx: &mut watch::Receiver<bool>, value: bool) -> bool {
    rx.wait_for(|v| *v == value).await.is_ok()
}

/// Schedules only while holding the `kube-scheduler` lease; releases it on shutdown.
async fn lead_and_serve(
    client: kube::Client,
    handles: Handles,
    config: SchedulerConfig,
    shutdown: CancellationToken,
) {
    let election = ElectionConfig::new(&config.identity);
    run_while_leading(client, LEASE_NAME, election, shutdown, |term| {
        serve(&handles, &config, term)
    })
    .await;
}

/// One leadership term: the queue's flush loops and the scheduling loop.
async fn serve(handles: &Handles, config: &SchedulerConfig, term: CancellationToken) {
    handles.queue.reopen();
    let flush = tokio::spawn({
        let (queue, term) = (Arc::clone(&handles.queue), term.clone());
        async move { queue.run_flush_loops(term).await }
    });
    let scheduler = Scheduler {
        handles: handles.clone(),
        algorithm: Algorithm::new(config.percentage_of_nodes_to_score),
    };
    scheduler.run(term.clone()).await;
    term.cancel();
    let _ = flush.await;
}

/// `run` must be spawnable on a multi-threaded runtime.
#[allow(dead_code)]
fn run_is_send(client: kube::Client) {
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&run(
        client,
        SchedulerConfig::default(),
        CancellationToken::new(),
    ));
}
