//! ServiceLB, as k3s's: a `type: LoadBalancer` Service gets the nodes' addresses as its ingress
//! IPs (the service proxy on every node then serves it there). A port is one node-wide resource:
//! a later Service claiming a `port/protocol` that an earlier LoadBalancer Service holds stays
//! Pending (no ingress) until the port is free, as on k3s.
//!
//! [`plan`] is the pure decision over a snapshot; [`run`] is the watch-and-patch shell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};

/// Full resync period.
const RESYNC: Duration = Duration::from_secs(300);

/// A LoadBalancer Service's key and the ingress IPs it should have (empty: Pending).
pub type Wanted = BTreeMap<(String, String), Vec<String>>;

/// The ingress every LoadBalancer Service should have: the Ready nodes' InternalIPs (and
/// ExternalIPs), for Services whose ports are not taken by an older LoadBalancer Service.
pub fn plan(services: &[&Service], nodes: &[&Node]) -> Wanted {
    let mut ips: BTreeSet<String> = BTreeSet::new();
    for node in nodes.iter().filter(|n| ready(n)) {
        for a in node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
        {
            if a.type_ == "ExternalIP" || a.type_ == "InternalIP" {
                ips.insert(a.address.clone());
            }
        }
    }
    let mut lbs: Vec<&&Service> = services
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .filter(|s| {
            // Another load-balancer implementation was asked for: not ours.
            s.spec
                .as_ref()
                .and_then(|s| s.load_balancer_class.as_deref())
                .is_none()
        })
        .collect();
    // Oldest first (then by name), so the first claimant keeps its ports.
    lbs.sort_by_key(|s| {
        (
            s.metadata.creation_timestamp.clone().map(|t| t.0),
            s.metadata.namespace.clone(),
            s.metadata.name.clone(),
        )
    });
    let mut taken: HashMap<(i32, String), ()> = HashMap::new();
    let mut out = Wanted::new();
    for svc in lbs {
        let key = (
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let ports: Vec<(i32, String)> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
            .collect();
        if ports.iter().any(|p| taken.contains_key(p)) {
            out.insert(key, Vec::new());
            continue;
        }
        for p in ports {
            taken.insert(p, ());
        }
        out.insert(key, ips.iter().cloned().collect());
    }
    out
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn current(svc: &Service) -> Vec<String> {
    let mut ips: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect();
    ips.sort();
    ips
}

/// Runs ServiceLB until `shutdown`.
pub async fn run(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    let client = informers.client().clone();
    let (services, svc_changes) = informers.changes::<Service>();
    let (nodes, node_changes) = informers.changes::<Node>();
    let ready = vec![
        k8rs_controller_runtime::ready(&services),
        k8rs_controller_runtime::ready(&nodes),
    ];
    informer::run_loop(
        vec![svc_changes, node_changes],
        ready,
        RESYNC,
        shutdown,
        || {
            let client = client.clone();
            let (svcs, nodes) = (services.state(), nodes.state());
            async move {
                let svc_refs: Vec<&Service> = svcs.iter().map(AsRef::as_ref).collect();
                let node_refs: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
                let by_key: HashMap<(String, String), &Service> = svc_refs
                    .iter()
                    .map(|s| {
                        (
                            (
                                s.metadata.namespace.clone().unwrap_or_default(),
                                s.metadata.name.clone().unwrap_or_default(),
                            ),
                            *s,
                        )
                    })
                    .collect();
                let mut next = Next::Idle;
                for ((ns, name), ips) in plan(&svc_refs, &node_refs) {
                    if by_key.get(&(ns.clone(), name.clone())).map(|s| current(s)) == Some(ips.clone()) {
                        continue;
                    }
                    let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
                    let body = json!({"status": {"loadBalancer": {"ingress": ingress}}});
                    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
                    if let Err(err) = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await
                    {
                        tracing::warn!(%err, service = %format!("{ns}/{name}"), "writing load balancer status failed");
                        next = Next::Retry;
                    }
                }
                next
            }
        },
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .expect("node")
    }

    fn lb(name: &str, created: &str, port: i32) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]}
        }))
        .expect("service")
    }

    #[test]
    fn ready_node_addresses_become_ingress_and_a_taken_port_stays_pending() {
        let nodes = [
            node("a", "192.168.1.2", true),
            node("b", "192.168.1.3", true),
            node("c", "192.168.1.4", false),
        ];
        let first = lb("first", "2026-01-01T00:00:00Z", 80);
        let second = lb("second", "2026-01-02T00:00:00Z", 80);
        let other = lb("other", "2026-01-03T00:00:00Z", 443);
        let mut cluster_ip = lb("plain", "2026-01-01T00:00:00Z", 80);
        cluster_ip.spec.as_mut().expect("spec").type_ = Some("ClusterIP".into());
        let svcs = [&second, &first, &other, &cluster_ip];
        let node_refs: Vec<&Node> = nodes.iter().collect();
        let wanted = plan(&svcs, &node_refs);
        let key = |n: &str| ("default".to_string(), n.to_string());
        assert_eq!(wanted[&key("first")], ["192.168.1.2", "192.168.1.3"]);
        assert!(wanted[&key("second")].is_empty(), "port 80 is taken");
        assert_eq!(wanted[&key("other")].len(), 2);
        assert!(!wanted.contains_key(&key("plain")));
    }
}
