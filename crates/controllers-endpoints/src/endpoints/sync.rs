//! One sync of the Endpoints controller as a pure function: the Service, its namespace's pods and
//! the current Endpoints in, the one write to make (if any) out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::jiff::Timestamp;

use crate::podutil;
use crate::trigger::LAST_CHANGE_TRIGGER_TIME;

/// The most addresses one Endpoints object holds (upstream's `maxCapacity`).
pub const MAX_CAPACITY: usize = 1000;
/// Set on Endpoints whose addresses were cut to [`MAX_CAPACITY`].
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Set (empty) on the Endpoints of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// The write one sync makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Create(Endpoints),
    Update(Endpoints),
    Delete { namespace: String, name: String },
}

/// What one sync sees.
pub struct Snapshot<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The Service, unless it is gone.
    pub service: Option<&'a Service>,
    /// The pods of the Service's namespace.
    pub pods: &'a [&'a Pod],
    pub current: Option<&'a Endpoints>,
    /// The earliest unpublished change, from the trigger tracker.
    pub trigger: Option<Timestamp>,
}

/// Upstream's `syncService`.
pub fn sync(snap: &Snapshot<'_>) -> Option<Action> {
    let Some(svc) = snap.service else {
        return snap.current.map(|_| Action::Delete {
            namespace: snap.namespace.to_string(),
            name: snap.name.to_string(),
        });
    };
    if podutil::is_external_name(svc) {
        return None;
    }
    let selector = podutil::selector(svc)?;
    let pods: Vec<&Pod> = snap
        .pods
        .iter()
        .copied()
        .filter(|p| podutil::selects(selector, p.metadata.labels.as_ref()))
        .collect();
    let subsets = subsets_for(svc, &pods);
    let svc_labels = svc.metadata.labels.clone().unwrap_or_default();
    if let Some(current) = snap.current
        && current.subsets.clone().unwrap_or_default() == subsets
        && labels_without_headless(current) == svc_labels
        && capacity_annotation_correct(current)
    {
        return None;
    }
    let mut desired = snap.current.cloned().unwrap_or_else(|| Endpoints {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(snap.name.to_string()),
            namespace: Some(snap.namespace.to_string()),
            ..Default::default()
        },
        ..Default::default()
    });
    desired.subsets = Some(subsets);
    let annotations = desired
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match snap.trigger {
        Some(t) => annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), rfc3339_nano(t)),
        None => annotations.remove(LAST_CHANGE_TRIGGER_TIME),
    };
    if truncate(&mut desired) {
        annotations_of(&mut desired).insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations_of(&mut desired).remove(OVER_CAPACITY);
    }
    let mut labels = svc_labels;
    if podutil::is_service_ip_set(svc) {
        labels.remove(HEADLESS_LABEL);
    } else {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    desired.metadata.labels = Some(labels);
    Some(if snap.current.is_some() {
        Action::Update(desired)
    } else {
        Action::Create(desired)
    })
}

fn annotations_of(ep: &mut Endpoints) -> &mut BTreeMap<String, String> {
    ep.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

/// `time.RFC3339Nano` in UTC.
pub fn rfc3339_nano(t: Timestamp) -> String {
    t.to_string()
}

fn labels_without_headless(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    labels
}

fn capacity_annotation_correct(ep: &Endpoints) -> bool {
    let count: usize = ep
        .subsets
        .iter()
        .flatten()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len) + not_ready(s).len())
        .sum();
    count <= MAX_CAPACITY
        && !ep
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(OVER_CAPACITY))
}

fn not_ready(s: &EndpointSubset) -> &[EndpointAddress] {
    s.not_ready_addresses.as_deref().unwrap_or_default()
}

type PortKey = Vec<(String, i32, String, String)>;

/// The subsets for `pods`, repacked as upstream's `RepackSubsets`: addresses with the same
/// resolved ports share a subset; addresses sorted by IP, ports by name.
pub fn subsets_for(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let svc_ports = spec.ports.unwrap_or_default();
    let headless = !podutil::is_service_ip_set(svc);
    let mut groups: BTreeMap<PortKey, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        if !podutil::should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(ip) = podutil::pod_ipv4(pod) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: podutil::hostname_for(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(podutil::pod_ref(pod)),
        };
        let key: PortKey = if svc_ports.is_empty() {
            if !headless {
                continue;
            }
            Vec::new()
        } else {
            let mut key: PortKey = svc_ports
                .iter()
                .filter_map(|p| {
                    let port = podutil::find_port(pod, p)?;
                    Some((
                        p.name.clone().unwrap_or_default(),
                        port,
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        p.app_protocol.clone().unwrap_or_default(),
                    ))
                })
                .collect();
            if key.is_empty() {
                continue;
            }
            key.sort();
            key.dedup();
            key
        };
        let group = groups.entry(key).or_default();
        if publish || podutil::is_ready(pod) {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(key, (mut ready, mut unready))| {
            ready.sort_by(address_order);
            unready.sort_by(address_order);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!unready.is_empty()).then_some(unready),
                ports: (!key.is_empty()).then(|| key.into_iter().map(to_port).collect()),
            }
        })
        .collect()
}

fn address_order(a: &EndpointAddress, b: &EndpointAddress) -> std::cmp::Ordering {
    let uid = |x: &EndpointAddress| x.target_ref.as_ref().and_then(|r| r.uid.clone());
    a.ip.cmp(&b.ip).then_with(|| uid(a).cmp(&uid(b)))
}

fn to_port((name, port, protocol, app_protocol): (String, i32, String, String)) -> EndpointPort {
    EndpointPort {
        name: (!name.is_empty()).then_some(name),
        port,
        protocol: Some(protocol),
        app_protocol: (!app_protocol.is_empty()).then_some(app_protocol),
    }
}

/// Upstream's `truncateEndpoints`: keeps at most [`MAX_CAPACITY`] addresses, ready ones first,
/// each subset keeping its share (rounded up). Returns whether anything was cut.
pub fn truncate(ep: &mut Endpoints) -> bool {
    let subsets = ep.subsets.get_or_insert_with(Vec::new);
    let ready: usize = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let unready: usize = subsets.iter().map(|s| not_ready(s).len()).sum();
    if ready + unready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, unready)
    };
    let mut room = max;
    for subset in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            subset.addresses.as_ref().map_or(0, Vec::len)
        } else {
            not_ready(subset).len()
        };
        let share = (in_subset * max).div_ceil(total).min(room);
        if truncate_ready {
            if let Some(a) = subset.addresses.as_mut() {
                a.truncate(share);
                room -= a.len();
            }
            subset.not_ready_addresses = None;
        } else if let Some(a) = subset.not_ready_addresses.as_mut() {
            a.truncate(share);
            room -= a.len();
        }
    }
    true
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
