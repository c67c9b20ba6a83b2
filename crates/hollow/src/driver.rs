//! The pod loop: one watch of every bound pod and one of the hollow nodes feed the
//! [`Kubelet`] state machine; its writes go to the [`Writer`] lanes. Thousands of nodes cost
//! two watches, not two per node.

use std::collections::{HashMap, HashSet};
use std::pin::pin;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::kubelet::Kubelet;
use crate::node::{INSTANCE_TYPE, INSTANCE_TYPE_LABEL, conditions_drifted};
use crate::register::Registered;
use crate::usage::UsageTable;
use crate::writer::Writer;

/// Pod writes in flight at once.
const WRITE_LANES: usize = 32;

/// What the loop keeps beside the kubelet: node indices, and the nodes whose drifted
/// conditions were already reported to the heartbeat.
struct Nodes {
    index: HashMap<String, usize>,
    reported: HashSet<usize>,
    urgent: mpsc::UnboundedSender<usize>,
}

/// Plays the kubelet for every pod bound to `registered` until `shutdown`.
pub async fn run(
    client: kube::Client,
    registered: &[Registered],
    usage: UsageTable,
    urgent: mpsc::UnboundedSender<usize>,
    shutdown: CancellationToken,
) {
    let mut kubelet = Kubelet::new(
        registered
            .iter()
            .map(|r| (r.name.clone(), r.ip, r.pod_cidr.clone())),
        usage,
    );
    let mut nodes = Nodes {
        index: registered
            .iter()
            .map(|r| (r.name.clone(), r.index))
            .collect(),
        reported: HashSet::new(),
        urgent,
    };
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
    let mut lanes = JoinSet::new();
    let writer = Writer::spawn(&client, WRITE_LANES, &failed_tx, &mut lanes);
    let pod_watch = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields("spec.nodeName!="),
    )
    .default_backoff();
    let node_watch = watcher(
        Api::<Node>::all(client),
        watcher::Config::default().labels(&format!("{INSTANCE_TYPE_LABEL}={INSTANCE_TYPE}")),
    )
    .default_backoff();
    let (mut pod_watch, mut node_watch) = (pin!(pod_watch), pin!(node_watch));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = pod_watch.next() => match event {
                Some(Ok(event)) => on_pod(&mut kubelet, event),
                Some(Err(err)) => tracing::warn!(%err, "hollow nodes: watching pods failed; retrying"),
                None => break,
            },
            event = node_watch.next() => match event {
                Some(Ok(event)) => on_node(&mut kubelet, &mut nodes, event),
                Some(Err(err)) => tracing::warn!(%err, "hollow nodes: watching nodes failed; retrying"),
                None => break,
            },
            Some(f) = failed_rx.recv() => kubelet.write_failed(f.key, f.uid, f.pod_gone),
            Some(timer) = kubelet.next_timer(), if kubelet.has_timers() => {
                kubelet.timer_fired(timer, Utc::now());
            }
        }
        for write in kubelet.take_writes() {
            writer.submit(write);
        }
    }
    drop(writer);
    lanes.shutdown().await;
}

fn on_pod(kubelet: &mut Kubelet, event: watcher::Event<Pod>) {
    match event {
        watcher::Event::Init => kubelet.list_started(),
        watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
            kubelet.pod_applied(&pod, Utc::now());
        }
        watcher::Event::InitDone => kubelet.list_done(Utc::now()),
        watcher::Event::Delete(pod) => kubelet.pod_deleted(&pod, Utc::now()),
    }
}

fn on_node(kubelet: &mut Kubelet, nodes: &mut Nodes, event: watcher::Event<Node>) {
    let (watcher::Event::InitApply(node) | watcher::Event::Apply(node)) = event else {
        return;
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let Some(&index) = nodes.index.get(name) else {
        return;
    };
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref());
    kubelet.node_seen(name, cidr, Utc::now());
    if !conditions_drifted(&node) {
        nodes.reported.remove(&index);
    } else if nodes.reported.insert(index) {
        tracing::info!(
            node = name,
            "hollow node: conditions changed by another component; reporting ready"
        );
        let _ = nodes.urgent.send(index);
    }
}
