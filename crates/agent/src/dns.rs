//! Cluster DNS on the server's node: the DNS server listens on the gateway address of the
//! node's pod bridge (the first address of its podCIDR), which pods on every node reach through
//! the pod network but hosts outside the cluster do not; the `kube-system/kube-dns` Service
//! (at the tenth address of the service CIDR) gets an EndpointSlice pointing there, so the
//! service proxy DNATs pods' queries to it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The namespace and name of the DNS Service, as upstream's.
const NAMESPACE: &str = "kube-system";
const SERVICE: &str = "kube-dns";
const FIELD_MANAGER: &str = "k8rs-dns";

/// Where cluster DNS runs and what it serves.
#[derive(Debug, Clone)]
pub struct ClusterDns {
    /// The kube-dns Service's ClusterIP (`10.43.0.10`).
    pub service_ip: Ipv4Addr,
    pub cluster_domain: String,
    /// The pods' bridge, which gets the gateway address the server listens on.
    pub bridge: String,
}

/// The gateway address of `pod_cidr` (`10.42.0.0/24` -> `10.42.0.1`) and its prefix length.
pub fn gateway(pod_cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (net, prefix) = pod_cidr.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 30)?;
    Some((Ipv4Addr::from(u32::from(net) + 1), prefix))
}

/// Runs cluster DNS once the node has a podCIDR (sent on `pod_cidr`), until `shutdown`.
pub async fn run(
    client: kube::Client,
    node_name: String,
    config: ClusterDns,
    mut pod_cidr: watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let cidr = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        got = pod_cidr.wait_for(Option::is_some) => match got {
            Ok(cidr) => cidr.clone().unwrap_or_default(),
            Err(_) => return Ok(()),
        },
    };
    let (gw, prefix) = gateway(&cidr).ok_or_else(|| Error::Dns(format!("bad podCIDR {cidr:?}")))?;
    ensure_bridge(&config.bridge, gw, prefix)?;
    let dns = k8rs_dns::DnsConfig {
        cluster_domain: config.cluster_domain.clone(),
        bind: vec![SocketAddr::from((gw, 53))],
        ..Default::default()
    };
    let bound = k8rs_dns::bind(dns)
        .await
        .map_err(|e| Error::Dns(e.to_string()))?;
    tracing::info!(address = %gw, "cluster DNS listening");
    publish(&client, &node_name, config.service_ip, gw).await?;
    bound
        .serve(client, shutdown)
        .await
        .map_err(|e| Error::Dns(e.to_string()))
}

/// Makes sure the pods' bridge exists, is up and holds the gateway address (the CNI bridge
/// plugin later adopts it as is).
fn ensure_bridge(bridge: &str, gw: Ipv4Addr, prefix: u8) -> Result<(), Error> {
    let ip = |args: &[&str]| -> Result<std::process::Output, Error> {
        Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| Error::Dns(format!("running ip: {e}")))
    };
    if !ip(&["link", "show", bridge])?.status.success() {
        let out = ip(&["link", "add", bridge, "type", "bridge"])?;
        if !out.status.success() {
            return Err(Error::Dns(format!(
                "creating bridge {bridge}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let addr = format!("{gw}/{prefix}");
    let shown = ip(&["-4", "addr", "show", "dev", bridge])?;
    if !String::from_utf8_lossy(&shown.stdout).contains(&format!("inet {addr} ")) {
        let out = ip(&["addr", "add", &addr, "dev", bridge])?;
        if !out.status.success() {
            return Err(Error::Dns(format!(
                "adding {addr} to {bridge}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    ip(&["link", "set", bridge, "up"])?;
    Ok(())
}

/// Creates or updates the kube-dns Service and this node's EndpointSlice for it.
async fn publish(
    client: &kube::Client,
    node: &str,
    service_ip: Ipv4Addr,
    gw: Ipv4Addr,
) -> Result<(), Error> {
    let api_err = |e: kube::Error| Error::Dns(format!("publishing the kube-dns Service: {e}"));
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let ports = |proto: &str, name: &str| (name.to_string(), proto.to_string());
    let wanted = [ports("UDP", "dns"), ports("TCP", "dns-tcp")];
    let service = Service {
        metadata: ObjectMeta {
            name: Some(SERVICE.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(
                [
                    ("k8s-app", "kube-dns"),
                    ("kubernetes.io/cluster-service", "true"),
                    ("kubernetes.io/name", "k8rs-dns"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(service_ip.to_string()),
            ports: Some(
                wanted
                    .iter()
                    .map(|(name, proto)| ServicePort {
                        name: Some(name.clone()),
                        port: 53,
                        protocol: Some(proto.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    };
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    // A JSON merge patch replaces `spec.ports` whole. (Server-side apply would merge the two
    // port-53 entries by port alone: k8rs's apply is a strategic merge, whose key for Service
    // ports is `port`, not upstream SSA's `port` + `protocol`.)
    let merge = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match services
        .patch(SERVICE, &merge, &Patch::Merge(&service))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let post = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            services.create(&post, &service).await.map_err(api_err)?;
        }
        Err(e) => return Err(api_err(e)),
    }
    let slice_name = format!("{SERVICE}-{node}");
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name.clone()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(
                [
                    ("kubernetes.io/service-name", SERVICE),
                    ("endpointslice.kubernetes.io/managed-by", "dns.k8rs.io"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![gw.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some(node.to_string()),
            ..Default::default()
        }],
        ports: Some(
            wanted
                .iter()
                .map(|(name, proto)| EndpointPort {
                    name: Some(name.clone()),
                    port: Some(53),
                    protocol: Some(proto.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    slices
        .patch(&slice_name, &params, &Patch::Apply(&slice))
        .await
        .map_err(api_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_first_address() {
        assert_eq!(
            gateway("10.42.3.0/24"),
            Some((Ipv4Addr::new(10, 42, 3, 1), 24))
        );
        assert_eq!(gateway("10.42.3.0"), None);
        assert_eq!(gateway("nonsense/24"), None);
    }
}
