//! A measurement, not a check run by default: thousands of hollow nodes in this process against
//! the real server, pods bound round-robin, time until all run. Run with
//! `HOLLOW_SCALE_NODES=1000 HOLLOW_SCALE_PODS=3000 cargo test -p k8rs-hollow --test hollow_scale
//! -- --ignored --nocapture`.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{Server, eventually};
use futures::{StreamExt, stream};
use k8rs_controllers::nodeipam::{self, NodeIpamConfig};
use k8rs_hollow::HollowConfig;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn thousands_of_hollow_nodes() {
    let (node_count, pod_count) = (
        env("HOLLOW_SCALE_NODES", 1000),
        env("HOLLOW_SCALE_PODS", 3000),
    );
    let server = Server::start().await;
    let client = server.client().await;
    let shutdown = CancellationToken::new();
    let ipam = NodeIpamConfig {
        // 8192 node subnets of 125 pod addresses, clear of the 10.43.0.0/16 service range.
        cluster_cidr: (Ipv4Addr::new(10, 48, 0, 0), 12),
        node_cidr_mask_size: 25,
    };
    tokio::spawn(nodeipam::run(
        k8rs_controller_runtime::SharedInformers::new(client.clone(), shutdown.clone()),
        ipam,
        shutdown.clone(),
    ));
    let start = Instant::now();
    let config = HollowConfig {
        count: node_count,
        ..HollowConfig::default()
    };
    tokio::spawn(k8rs_hollow::run(client.clone(), config, shutdown.clone()));

    let nodes: Api<Node> = Api::all(client.clone());
    let limit = Duration::from_secs(600);
    eventually(limit, "every node with a podCIDR", || async {
        let list = nodes.list(&ListParams::default()).await.ok()?.items;
        let with_cidr = list
            .iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some())
            .count();
        (with_cidr == node_count).then_some(())
    })
    .await;
    println!(
        "{node_count} nodes registered with podCIDRs in {:?}",
        start.elapsed()
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    stream::iter(0..pod_count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p-{i}")},
                    "spec": {"nodeName": format!("hollow-node-{}", i % node_count),
                             "containers": [{"name": "app", "image": "nginx"}]},
                }))
                .expect("pod");
                pods.create(&PostParams::default(), &pod)
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let created = start.elapsed();
    eventually(limit, "every pod Running", || async {
        let list = pods.list(&ListParams::default()).await.ok()?.items;
        let running = list
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == pod_count).then_some(())
    })
    .await;
    println!(
        "{pod_count} pods created in {created:?}, all Running after {:?}",
        start.elapsed()
    );
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    eventually(Duration::from_secs(30), "a lease per node", || async {
        let count = leases.list(&ListParams::default()).await.ok()?.items.len();
        (count == node_count).then_some(())
    })
    .await;
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(str::to_string)
        .unwrap_or_default();
    println!("every node has its lease; this process (test client included): {rss}");
    shutdown.cancel();
}
