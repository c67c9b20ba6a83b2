//! The pure model: Services and EndpointSlices turned into service ports and their endpoints,
//! and upstream's endpoint selection (ready endpoints; serving-but-terminating ones only when no
//! ready one exists; internal and external traffic policies).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::config::Cidr;
use crate::nft::Proto;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Upstream's label asking kube-proxy to ignore a Service (another proxy serves it).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The default session-affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// A Service's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of one Service: namespace, name, port name and protocol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub service: ServiceName,
    pub port: String,
    pub protocol: Proto,
}

impl ServicePortName {
    /// `ns/name/proto/port`, the base of its chain names.
    pub fn chain_base(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.service.namespace, self.service.name, self.protocol, self.port
        )
    }
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

/// What the proxy needs of one Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortInfo {
    pub name: ServicePortName,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    pub load_balancer_ips: Vec<Ipv4Addr>,
    pub source_ranges: Vec<Cidr>,
    /// `sessionAffinity: ClientIP` with this timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local` on an externally reachable Service.
    pub external_local: bool,
    /// The healthCheckNodePort of an `externalTrafficPolicy: Local` Service.
    pub health_check_node_port: Option<u16>,
}

impl ServicePortInfo {
    /// A plain ClusterIP Service port `name` at `cluster_ip:port`: no NodePort, external
    /// addresses, session affinity or Local traffic policies.
    pub fn cluster_ip(name: ServicePortName, cluster_ip: Ipv4Addr, port: u16) -> ServicePortInfo {
        ServicePortInfo {
            name,
            cluster_ip,
            port,
            node_port: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            source_ranges: Vec::new(),
            affinity_timeout: None,
            internal_local: false,
            external_local: false,
            health_check_node_port: None,
        }
    }

    /// NodePort, externalIPs or load-balancer addresses reach it from outside.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// Some traffic uses the cluster-wide endpoints.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_local || (self.externally_accessible() && !self.external_local)
    }

    /// Some traffic uses only this node's endpoints.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_local || self.external_local
    }
}

/// One endpoint of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node.
    pub local: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// The ports of a Service the proxy serves; none for headless, ExternalName, non-IPv4 or
/// Services another proxy claims.
pub fn service_ports(svc: &Service) -> Vec<ServicePortInfo> {
    let Some(service) = service_name(&svc.metadata) else {
        return Vec::new();
    };
    let labels = svc.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL)) {
        return Vec::new();
    }
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return Vec::new();
    }
    let Some(cluster_ip) = cluster_ipv4(spec) else {
        return Vec::new();
    };
    let external_ips = parse_ips(spec.external_ips.iter().flatten());
    let load_balancer_ips = if kind == "LoadBalancer" {
        lb_ingress_ips(svc)
    } else {
        Vec::new()
    };
    let source_ranges: Vec<Cidr> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|r| r.parse().ok())
        .collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let etp_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = parse_proto(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let node_port = match kind {
            "NodePort" | "LoadBalancer" => port.node_port.and_then(|p| u16::try_from(p).ok()),
            _ => None,
        }
        .filter(|p| *p != 0);
        let mut info = ServicePortInfo {
            name: ServicePortName {
                service: service.clone(),
                port: port.name.clone().unwrap_or_default(),
                protocol,
            },
            cluster_ip,
            port: number,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            source_ranges: source_ranges.clone(),
            affinity_timeout,
            internal_local,
            external_local: false,
            health_check_node_port: None,
        };
        info.external_local = etp_local && info.externally_accessible();
        if info.external_local {
            info.health_check_node_port = spec
                .health_check_node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
        }
        out.push(info);
    }
    out
}

fn service_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ServiceName> {
    Some(ServiceName {
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name: meta.name.clone()?,
    })
}

fn cluster_ipv4(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Option<Ipv4Addr> {
    let first = spec.cluster_ip.iter();
    let all = spec.cluster_ips.iter().flatten();
    first.chain(all).find_map(|ip| ip.parse::<Ipv4Addr>().ok())
}

fn lb_ingress_ips(svc: &Service) -> Vec<Ipv4Addr> {
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let ips = ingress
        .into_iter()
        .flatten()
        .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|i| i.ip.as_ref());
    parse_ips(ips)
}

fn parse_ips<'a>(ips: impl Iterator<Item = &'a String>) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = ips.filter_map(|ip| ip.parse().ok()).collect();
    out.sort();
    out.dedup();
    out
}

fn parse_proto(protocol: Option<&str>) -> Option<Proto> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        "SCTP" => Some(Proto::Sctp),
        _ => None,
    }
}

/// The Service an EndpointSlice belongs to, if it is an IPv4 slice with the service-name label.
pub fn slice_service(slice: &EndpointSlice) -> Option<ServiceName> {
    if slice.address_type != "IPv4" {
        return None;
    }
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ServiceName {
        namespace: slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: name.clone(),
    })
}

/// The endpoints of each (port name, protocol) of one Service, merged over its `slices`,
/// sorted, without duplicates (a duplicate that is ready wins).
pub fn slice_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node_name: &str,
) -> BTreeMap<(String, Proto), Vec<Endpoint>> {
    let mut merged: BTreeMap<(String, Proto), BTreeMap<(Ipv4Addr, u16), Endpoint>> =
        BTreeMap::new();
    for slice in slices {
        for port in slice.ports.iter().flatten() {
            let (Some(protocol), Some(number)) = (
                parse_proto(port.protocol.as_deref()),
                port.port.and_then(|p| u16::try_from(p).ok()),
            ) else {
                continue;
            };
            let key = (port.name.clone().unwrap_or_default(), protocol);
            let entry = merged.entry(key).or_default();
            for ep in &slice.endpoints {
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let endpoint = Endpoint {
                    ip,
                    port: number,
                    ready,
                    serving: cond.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
                    local: ep.node_name.as_deref() == Some(node_name),
                };
                let slot = entry
                    .entry((ip, number))
                    .or_insert_with(|| endpoint.clone());
                if !slot.ready && endpoint.ready {
                    *slot = endpoint;
                }
            }
        }
    }
    merged
        .into_iter()
        .map(|(k, eps)| (k, eps.into_values().collect()))
        .collect()
}

/// The endpoints one Service port uses on this node (upstream's CategorizeEndpoints).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Used by Cluster traffic policy.
    pub cluster: Vec<Endpoint>,
    /// Used by Local traffic policy.
    pub local: Vec<Endpoint>,
    /// Every endpoint some rule may send to (each gets a chain).
    pub reachable: Vec<Endpoint>,
    /// Some usable endpoint exists anywhere in the cluster.
    pub has_any: bool,
}

/// Selects the endpoints of `svc` among `endpoints`.
pub fn categorize(svc: &ServicePortInfo, endpoints: &[Endpoint]) -> Categorized {
    let mut out = Categorized::default();
    if svc.uses_cluster_endpoints() {
        out.cluster = pick(endpoints, |e| e.ready);
        if out.cluster.is_empty() {
            out.cluster = pick(endpoints, |e| e.serving && e.terminating);
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        out.reachable = out.cluster.clone();
        return out;
    }
    let usable = |e: &Endpoint| e.ready || (e.serving && e.terminating);
    out.has_any |= endpoints.iter().any(usable);
    out.local = pick(endpoints, |e| e.local && e.ready);
    if out.local.is_empty() {
        out.local = pick(endpoints, |e| e.local && e.serving && e.terminating);
    }
    if !svc.uses_cluster_endpoints() {
        out.reachable = out.local.clone();
        return out;
    }
    let mut all = out.cluster.clone();
    all.extend(out.local.iter().cloned());
    all.sort();
    all.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    out.reachable = all;
    out
}

fn pick(endpoints: &[Endpoint], keep: impl Fn(&Endpoint) -> bool) -> Vec<Endpoint> {
    endpoints.iter().filter(|e| keep(e)).cloned().collect()
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
