//! The in-memory view the resolver answers from: Services, EndpointSlices, Pods (only those with a
//! hostname and a subdomain) and Namespaces, reduced to what DNS needs and indexed so that an
//! update costs the size of the one Service it touches, not the size of the cluster.
//!
//! One writer (the watch tasks) and many readers (the query path) share it through
//! [`Catalog`], a cheap handle over a read-write lock held for microseconds.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// `namespace/name` of an object.
pub(crate) type Key = (String, String);

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What kind of records a Service gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A virtual IP: A/AAAA records of the cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// No virtual IP: the records are the ready endpoints'.
    Headless,
    /// A CNAME to this (lowercase, no trailing dot) name.
    ExternalName(String),
    /// An ExternalName Service whose name is empty or an IP: no records (as CoreDNS).
    Invalid,
}

/// One Service or endpoint port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortRecord {
    /// The port's name; unnamed ports are empty.
    pub name: String,
    /// `tcp`, `udp` or `sctp`, lowercase.
    pub protocol: String,
    pub port: u16,
}

/// A Service reduced to its DNS data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceRecord {
    pub kind: ServiceKind,
    pub ports: Vec<PortRecord>,
    pub publish_not_ready: bool,
}

/// One endpoint address of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointRecord {
    pub ip: IpAddr,
    /// The endpoint's `hostname`, or the address with dashes for the dots (CoreDNS's choice of
    /// the spec's "unique, system-assigned identifier").
    pub hostname: String,
    pub ready: bool,
}

/// An EndpointSlice reduced to its DNS data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceRecord {
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub service: String,
    pub endpoints: Vec<EndpointRecord>,
    pub ports: Vec<PortRecord>,
}

/// A Pod with `spec.hostname` and `spec.subdomain`, reduced to its DNS data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodRecord {
    pub hostname: String,
    pub subdomain: String,
    pub ips: Vec<IpAddr>,
    pub ready: bool,
}

/// The name a PTR record points to: `[hostname.]service.namespace.svc.<zone>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PtrTarget {
    pub namespace: String,
    pub service: String,
    pub hostname: Option<String>,
}

/// A ready endpoint of a Service, as the resolver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint<'a> {
    pub ip: IpAddr,
    pub hostname: &'a str,
    pub ports: &'a [PortRecord],
}

/// The indexed contents; read through [`Catalog::read`].
#[derive(Debug, Default)]
pub(crate) struct Inner {
    namespaces: HashSet<String>,
    services: HashMap<Key, ServiceRecord>,
    slices: HashMap<Key, SliceRecord>,
    slices_by_service: HashMap<Key, BTreeSet<String>>,
    pods: HashMap<Key, PodRecord>,
    pods_by_subdomain: HashMap<Key, BTreeSet<String>>,
    ptr: HashMap<IpAddr, BTreeSet<PtrTarget>>,
    ptr_by_service: HashMap<Key, Vec<(IpAddr, PtrTarget)>>,
    serial: u32,
}

/// A shared handle on the DNS view of the cluster. Cloning is cheap.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    inner: Arc<RwLock<Inner>>,
}

/// The kinds of objects the catalog holds, for a re-list's "drop what was not listed".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Service,
    EndpointSlice,
    Pod,
    Namespace,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&self, svc: &Service) {
        let Some(key) = object_key(&svc.metadata) else {
            return;
        };
        let mut inner = self.write();
        inner.services.insert(key.clone(), service_record(svc));
        inner.reindex_ptr(&key);
        inner.bump();
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_endpoint_slice(&self, slice: &EndpointSlice) {
        let Some(key) = object_key(&slice.metadata) else {
            return;
        };
        let record = slice_record(slice);
        let mut inner = self.write();
        let old = inner.remove_slice(&key);
        let service = record.as_ref().map(|r| (key.0.clone(), r.service.clone()));
        if let (Some(record), Some(svc_key)) = (record, service.clone()) {
            inner
                .slices_by_service
                .entry(svc_key)
                .or_default()
                .insert(key.1.clone());
            inner.slices.insert(key.clone(), record);
        }
        for svc_key in [old, service].into_iter().flatten() {
            inner.reindex_ptr(&svc_key);
        }
        inner.bump();
    }

    /// Adds or replaces a Pod (only pods with a hostname and a subdomain are kept).
    pub fn apply_pod(&self, pod: &Pod) {
        let Some(key) = object_key(&pod.metadata) else {
            return;
        };
        let mut inner = self.write();
        inner.remove_pod(&key);
        if let Some(record) = pod_record(pod) {
            inner
                .pods_by_subdomain
                .entry((key.0.clone(), record.subdomain.clone()))
                .or_default()
                .insert(key.1.clone());
            inner.pods.insert(key, record);
        }
        inner.bump();
    }

    /// Adds a Namespace.
    pub fn apply_namespace(&self, ns: &Namespace) {
        if let Some(name) = &ns.metadata.name {
            let mut inner = self.write();
            inner.namespaces.insert(name.to_ascii_lowercase());
            inner.bump();
        }
    }

    /// Removes the object `namespace/name` of this kind (namespace is ignored for Namespaces).
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
        let mut inner = self.write();
        match kind {
            Kind::Service => {
                inner.services.remove(&key);
                inner.reindex_ptr(&key);
            }
            Kind::EndpointSlice => {
                if let Some(svc_key) = inner.remove_slice(&key) {
                    inner.reindex_ptr(&svc_key);
                }
            }
            Kind::Pod => inner.remove_pod(&key),
            Kind::Namespace => {
                inner.namespaces.remove(&key.1);
            }
        }
        inner.bump();
    }

    /// Removes every object of this kind whose key is not in `keep` (after a re-list).
    pub fn retain(&self, kind: Kind, keep: &HashSet<(String, String)>) {
        let stale: Vec<Key> = {
            let inner = self.read();
            match kind {
                Kind::Service => stale_keys(inner.services.keys(), keep),
                Kind::EndpointSlice => stale_keys(inner.slices.keys(), keep),
                Kind::Pod => stale_keys(inner.pods.keys(), keep),
                Kind::Namespace => inner
                    .namespaces
                    .iter()
                    .map(|n| (String::new(), n.clone()))
                    .filter(|k| !keep.contains(k))
                    .collect(),
            }
        };
        for (ns, name) in stale {
            self.delete(kind, &ns, &name);
        }
    }
}

fn stale_keys<'a>(keys: impl Iterator<Item = &'a Key>, keep: &HashSet<Key>) -> Vec<Key> {
    keys.filter(|k| !keep.contains(*k)).cloned().collect()
}

/// The catalog key of an object: lowercase `(namespace, name)`; Namespaces have an empty namespace.
pub(crate) fn object_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<Key> {
    let name = meta.name.as_deref()?.to_ascii_lowercase();
    let ns = meta.namespace.as_deref().unwrap_or("").to_ascii_lowercase();
    Some((ns, name))
}

impl Inner {
    fn bump(&mut self) {
        self.serial = self.serial.wrapping_add(1);
    }

    /// A number that changes with every update (the SOA serial).
    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    pub(crate) fn namespace_exists(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&ServiceRecord> {
        self.services.get(&(ns.to_owned(), name.to_owned()))
    }

    /// The Service's endpoints that DNS publishes (ready ones, or all with
    /// `publishNotReadyAddresses`), one per address.
    pub(crate) fn endpoints(&self, ns: &str, name: &str) -> Vec<Endpoint<'_>> {
        let key = (ns.to_owned(), name.to_owned());
        let publish_all = self
            .services
            .get(&key)
            .is_some_and(|svc| svc.publish_not_ready);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let Some(slice_names) = self.slices_by_service.get(&key) else {
            return out;
        };
        for slice_name in slice_names {
            let Some(slice) = self.slices.get(&(key.0.clone(), slice_name.clone())) else {
                continue;
            };
            for ep in &slice.endpoints {
                if (ep.ready || publish_all) && seen.insert((ep.ip, ep.hostname.as_str())) {
                    out.push(Endpoint {
                        ip: ep.ip,
                        hostname: &ep.hostname,
                        ports: &slice.ports,
                    });
                }
            }
        }
        out
    }

    /// Addresses of the pods in `ns` with this hostname and subdomain (ready ones, or all when
    /// the Service publishes not-ready addresses).
    pub(crate) fn pod_addresses(
        &self,
        ns: &str,
        subdomain: &str,
        hostname: &str,
        publish_all: bool,
    ) -> Vec<IpAddr> {
        let Some(names) = self
            .pods_by_subdomain
            .get(&(ns.to_owned(), subdomain.to_owned()))
        else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|n| self.pods.get(&(ns.to_owned(), n.clone())))
            .filter(|p| p.hostname == hostname && (p.ready || publish_all))
            .flat_map(|p| p.ips.iter().copied())
            .collect()
    }

    pub(crate) fn ptr(&self, ip: &IpAddr) -> Option<&BTreeSet<PtrTarget>> {
        self.ptr.get(ip).filter(|set| !set.is_empty())
    }

    fn remove_slice(&mut self, key: &Key) -> Option<Key> {
        let old = self.slices.remove(key)?;
        let svc_key = (key.0.clone(), old.service);
        if let Some(set) = self.slices_by_service.get_mut(&svc_key) {
            set.remove(&key.1);
            if set.is_empty() {
                self.slices_by_service.remove(&svc_key);
            }
        }
        Some(svc_key)
    }

    fn remove_pod(&mut self, key: &Key) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        let sub_key = (key.0.clone(), old.subdomain);
        if let Some(set) = self.pods_by_subdomain.get_mut(&sub_key) {
            set.remove(&key.1);
            if set.is_empty() {
                self.pods_by_subdomain.remove(&sub_key);
            }
        }
    }

    /// Recomputes the PTR records one Service contributes: its cluster IPs, or a headless
    /// Service's published endpoints.
    fn reindex_ptr(&mut self, key: &Key) {
        for (ip, target) in self.ptr_by_service.remove(key).unwrap_or_default() {
            if let Some(set) = self.ptr.get_mut(&ip) {
                set.remove(&target);
                if set.is_empty() {
                    self.ptr.remove(&ip);
                }
            }
        }
        let fresh = self.ptr_contributions(key);
        for (ip, target) in &fresh {
            self.ptr.entry(*ip).or_default().insert(target.clone());
        }
        if !fresh.is_empty() {
            self.ptr_by_service.insert(key.clone(), fresh);
        }
    }

    fn ptr_contributions(&self, key: &Key) -> Vec<(IpAddr, PtrTarget)> {
        let target = |hostname: Option<&str>| PtrTarget {
            namespace: key.0.clone(),
            service: key.1.clone(),
            hostname: hostname.map(str::to_owned),
        };
        match self.services.get(key).map(|s| &s.kind) {
            Some(ServiceKind::ClusterIp(ips)) => ips.iter().map(|ip| (*ip, target(None))).collect(),
            Some(ServiceKind::Headless) => self
                .endpoints(&key.0, &key.1)
                .into_iter()
                .map(|ep| (ep.ip, target(Some(ep.hostname))))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn service_record(svc: &Service) -> ServiceRecord {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        external_name_kind(spec.external_name.as_deref().unwrap_or(""))
    } else {
        let ips: Vec<IpAddr> = spec
            .cluster_ips
            .clone()
            .filter(|ips| !ips.is_empty())
            .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ServiceKind::Headless
        } else {
            ServiceKind::ClusterIp(ips)
        }
    };
    let ports = spec
        .ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some(PortRecord {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                protocol: protocol(p.protocol.as_deref()),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    ServiceRecord {
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    }
}

fn external_name_kind(name: &str) -> ServiceKind {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.parse::<IpAddr>().is_ok() {
        ServiceKind::Invalid
    } else {
        ServiceKind::ExternalName(name)
    }
}

fn protocol(p: Option<&str>) -> String {
    p.unwrap_or("TCP").to_ascii_lowercase()
}

fn slice_record(slice: &EndpointSlice) -> Option<SliceRecord> {
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)?
        .to_ascii_lowercase();
    let mut endpoints = Vec::new();
    for ep in &slice.endpoints {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        for addr in &ep.addresses {
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            let hostname = ep
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| dashed(ip));
            endpoints.push(EndpointRecord {
                ip,
                hostname,
                ready,
            });
        }
    }
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortRecord {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                protocol: protocol(p.protocol.as_deref()),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    Some(SliceRecord {
        service,
        endpoints,
        ports,
    })
}

/// `10.1.2.3` -> `10-1-2-3`; `fd00::1` -> `fd00--1`.
pub(crate) fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn pod_record(pod: &Pod) -> Option<PodRecord> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let subdomain = spec.subdomain.as_deref().filter(|s| !s.is_empty())?;
    let status = pod.status.as_ref()?;
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    if ips.is_empty() {
        return None;
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Some(PodRecord {
        hostname: hostname.to_ascii_lowercase(),
        subdomain: subdomain.to_ascii_lowercase(),
        ips,
        ready,
    })
}
