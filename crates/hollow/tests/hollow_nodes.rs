//! Hollow nodes and node IPAM against the real API server binary: nodes register and get a
//! podCIDR, a pod bound to one runs with an address from it, exits when told to, goes at once
//! when deleted; the Lease is renewed; conditions changed by someone else are reported again;
//! an exhausted cluster CIDR gives a `CIDRNotAvailable` event.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{Server, eventually};
use k8rs_controllers::nodeipam::{self, NodeIpamConfig};
use k8rs_hollow::HollowConfig;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn hollow(count: usize, prefix: &str) -> HollowConfig {
    HollowConfig {
        count,
        name_prefix: prefix.into(),
        zone: Some("zone-a".into()),
        ..HollowConfig::default()
    }
}

fn pod(name: &str, node: &str, annotations: serde_json::Value, policy: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"nodeName": node, "restartPolicy": policy,
                 "containers": [{"name": "app", "image": "nginx:1.27"}]},
    }))
    .expect("a pod")
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (Some((net, prefix)), Ok(ip)) = (k8rs_hollow::ip::parse_cidr(cidr), ip.parse::<Ipv4Addr>())
    else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net)
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    Some(conditions.iter().find(|c| c.type_ == kind)?.status.clone())
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_run_pods_and_stay_alive() {
    let server = Server::start().await;
    let client = server.client().await;
    let shutdown = CancellationToken::new();
    let ipam = tokio::spawn(nodeipam::run(
        k8rs_controller_runtime::SharedInformers::new(client.clone(), shutdown.clone()),
        NodeIpamConfig::default(),
        shutdown.clone(),
    ));
    let hollow_run = tokio::spawn(k8rs_hollow::run(
        client.clone(),
        hollow(3, "hollow-node-"),
        shutdown.clone(),
    ));

    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually(WAIT, "three ready nodes with podCIDRs", || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                node_ready(n) && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some()
            })
            .count();
        if ready != 3 {
            return None;
        }
        list.items
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some("hollow-node-1"))
    })
    .await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], "hollow-node-1");
    assert_eq!(labels["topology.kubernetes.io/zone"], "zone-a");
    let spec = node.spec.clone().unwrap_or_default();
    let cidr = spec.pod_cidr.clone().unwrap_or_default();
    let network = cidr.split('/').next().unwrap_or_default();
    assert!(
        in_cidr(network, "10.42.0.0/16") && cidr.ends_with("/24"),
        "{cidr}"
    );
    assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
    let internal_ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_default();

    // A pod bound by hand runs with an address from the node's podCIDR.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("web", "hollow-node-1", json!({}), "Always"),
    )
    .await
    .expect("create pod");
    let running = eventually(WAIT, "web Running and Ready", || async {
        let p = pods.get("web").await.ok()?;
        let phase = p.status.as_ref()?.phase.clone()?;
        (phase == "Running" && condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    let status = running.status.clone().unwrap_or_default();
    let pod_ip = status.pod_ip.clone().unwrap_or_default();
    assert!(in_cidr(&pod_ip, &cidr), "{pod_ip} not in {cidr}");
    assert!(
        pod_ip.ends_with(".2"),
        "first address after the gateway: {pod_ip}"
    );
    assert_eq!(status.host_ip.as_deref(), Some(internal_ip.as_str()));
    let container = &status.container_statuses.clone().unwrap_or_default()[0];
    assert!(container.ready && container.started == Some(true));
    assert!(
        container
            .container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("containerd://"))
    );
    assert_eq!(condition(&running, "PodScheduled").as_deref(), Some("True"));

    // A job pod exits after its run duration.
    let annotations = json!({"hollow.k8rs.io/run-duration": "1s", "hollow.k8rs.io/exit-code": "0"});
    pods.create(
        &PostParams::default(),
        &pod("job", "hollow-node-2", annotations, "Never"),
    )
    .await
    .expect("create job pod");
    eventually(WAIT, "job Succeeded", || async {
        let p = pods.get("job").await.ok()?;
        (p.status?.phase.as_deref() == Some("Succeeded")).then_some(())
    })
    .await;

    // Deleting a pod removes it at once.
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    eventually(WAIT, "web gone", || async {
        matches!(pods.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;

    // Conditions another component changes are reported healthy again.
    let unknown = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown",
        "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}]}});
    nodes
        .patch_status(
            "hollow-node-0",
            &PatchParams::default(),
            &Patch::Strategic(&unknown),
        )
        .await
        .expect("mark unknown");
    eventually(WAIT, "hollow-node-0 Ready again", || async {
        node_ready(&nodes.get("hollow-node-0").await.ok()?).then_some(())
    })
    .await;

    // The Lease is renewed every 10 s.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = eventually(WAIT, "the lease", || async {
        leases.get("hollow-node-0").await.ok()
    })
    .await;
    let spec = lease.spec.clone().unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("hollow-node-0"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = &lease.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", "hollow-node-0")
    );
    let first = spec.renew_time.clone();
    eventually(WAIT, "the lease renewed", || async {
        let renewed = leases.get("hollow-node-0").await.ok()?.spec?.renew_time;
        (renewed != first).then_some(())
    })
    .await;

    // Stopping leaves the nodes registered: the control plane must see them fail.
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), hollow_run).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    let _ = ipam.await;
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_cluster_cidr_reports_cidr_not_available() {
    let server = Server::start().await;
    let client = server.client().await;
    let shutdown = CancellationToken::new();
    let config = NodeIpamConfig {
        cluster_cidr: (Ipv4Addr::new(10, 99, 0, 0), 24),
        node_cidr_mask_size: 24,
    };
    tokio::spawn(nodeipam::run(
        k8rs_controller_runtime::SharedInformers::new(client.clone(), shutdown.clone()),
        config,
        shutdown.clone(),
    ));
    tokio::spawn(k8rs_hollow::run(
        client.clone(),
        hollow(2, "small-"),
        shutdown.clone(),
    ));

    let nodes: Api<Node> = Api::all(client.clone());
    let cidr_of = |n: &Node| n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    let (with, without) = eventually(WAIT, "one node with the only CIDR", || async {
        let list = nodes.list(&ListParams::default()).await.ok()?.items;
        let with: Vec<&Node> = list.iter().filter(|n| cidr_of(n).is_some()).collect();
        let without: Vec<&Node> = list.iter().filter(|n| cidr_of(n).is_none()).collect();
        (with.len() == 1 && without.len() == 1).then(|| {
            (
                with[0].metadata.name.clone().unwrap_or_default(),
                without[0].metadata.name.clone().unwrap_or_default(),
            )
        })
    })
    .await;

    let events: Api<Event> = Api::all(client.clone());
    let event = eventually(WAIT, "a CIDRNotAvailable event", || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.into_iter().find(|e| {
            e.reason.as_deref() == Some("CIDRNotAvailable")
                && e.involved_object.name.as_deref() == Some(without.as_str())
        })
    })
    .await;
    assert_eq!(
        event.message.as_deref(),
        Some(format!("Node {without} status is now: CIDRNotAvailable").as_str())
    );

    // The CIDR of a deleted node goes to the waiting one.
    nodes
        .delete(&with, &DeleteParams::default())
        .await
        .expect("delete node");
    let got = eventually(WAIT, "the waiting node gets the CIDR", || async {
        cidr_of(&nodes.get(&without).await.ok()?)
    })
    .await;
    assert_eq!(got, "10.99.0.0/24");
    shutdown.cancel();
}
