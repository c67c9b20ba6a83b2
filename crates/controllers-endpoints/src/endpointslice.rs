//! The EndpointSlice controller, as upstream's: discovery.k8s.io/v1 EndpointSlices (IPv4) for
//! every Service with a selector, at most `max_endpoints_per_slice` endpoints each, labelled
//! `kubernetes.io/service-name` and managed by `endpointslice-controller.k8s.io`, owned by the
//! Service. Pods changing update slices in place ([`crate::slices`]).
//!
//! [`desired`] turns a Service and its pods into endpoint groups; [`plan`] is one whole sync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio_util::sync::CancellationToken;

use crate::endpoints::sync::HEADLESS_LABEL;
use crate::podutil;
use crate::runtime::{self, Queue, Requeue, SharedInformers};
use crate::slices::{self, Group, MANAGED_BY_LABEL, Plan, SERVICE_NAME_LABEL, SliceTemplate};
use crate::tracker::SliceTracker;
use crate::trigger::{LAST_CHANGE_TRIGGER_TIME, TriggerTracker};
use crate::{Error, writes};

/// The `managed-by` value of this controller's slices and its event reporter name.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The node label a pod's zone comes from.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Settings, upstream's `--concurrent-service-endpoint-syncs` and
/// `--max-endpoints-per-slice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSliceConfig {
    /// Services synced at once (default 5).
    pub workers: usize,
    /// Endpoints per slice (default 100, upstream's limit is 1000).
    pub max_endpoints_per_slice: usize,
}

impl Default for EndpointSliceConfig {
    fn default() -> Self {
        EndpointSliceConfig {
            workers: 5,
            max_endpoints_per_slice: 100,
        }
    }
}

/// Upstream's `podToEndpoint`.
pub fn endpoint_for(pod: &Pod, svc: &Service, zone: Option<&str>) -> Option<Endpoint> {
    let ip = podutil::pod_ipv4(pod)?;
    let serving = podutil::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    Some(Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: podutil::hostname_for(pod, svc),
        node_name: node.filter(|n| !n.is_empty()),
        target_ref: Some(podutil::pod_ref(pod)),
        zone: zone.filter(|z| !z.is_empty()).map(str::to_string),
        ..Default::default()
    })
}

/// Upstream's `getEndpointPorts`: the Service's ports resolved for `pod`.
pub fn ports_for(pod: &Pod, svc: &Service) -> Vec<EndpointPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(podutil::find_port(pod, p)?),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

/// The Service's selected pods as endpoint groups (one per resolved port set); `zones` maps
/// node names to their zone.
pub fn desired(svc: &Service, pods: &[&Pod], zones: &HashMap<String, String>) -> Vec<Group> {
    let Some(selector) = podutil::selector(svc) else {
        return Vec::new();
    };
    let mut groups: Vec<Group> = Vec::new();
    for pod in pods {
        if !podutil::selects(selector, pod.metadata.labels.as_ref())
            || !podutil::should_be_in_endpoints(pod, true)
        {
            continue;
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let zone = node.and_then(|n| zones.get(n)).map(String::as_str);
        let Some(ep) = endpoint_for(pod, svc, zone) else {
            continue;
        };
        let ports = ports_for(pod, svc);
        match groups.iter_mut().find(|g| g.ports == ports) {
            Some(g) => g.endpoints.push(ep),
            None => groups.push(Group {
                ports,
                endpoints: vec![ep],
            }),
        }
    }
    groups
}

/// What every slice of `svc` must carry: upstream's `setEndpointSliceLabels`, the trigger time
/// and the owner reference.
pub fn template(svc: &Service, trigger: Option<Timestamp>) -> SliceTemplate {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != SERVICE_NAME_LABEL && k != MANAGED_BY_LABEL && k != HEADLESS_LABEL)
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if !podutil::is_service_ip_set(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    let annotations = trigger
        .map(|t| BTreeMap::from([(LAST_CHANGE_TRIGGER_TIME.to_string(), t.to_string())]))
        .unwrap_or_default();
    SliceTemplate {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        generate_name: slices::generate_name(&name),
        labels,
        annotations,
        owner: OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name,
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

/// One sync: the writes for the Service (or its absence) given its current slices.
pub fn plan(
    svc: Option<&Service>,
    pods: &[&Pod],
    zones: &HashMap<String, String>,
    existing: &[&EndpointSlice],
    trigger: Option<Timestamp>,
    max_per_slice: usize,
) -> Plan {
    let Some(svc) = svc else {
        let mut delete: Vec<EndpointSlice> = existing.iter().map(|s| (*s).clone()).collect();
        delete.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        return Plan {
            delete,
            ..Plan::default()
        };
    };
    // As upstream: Services without a selector (their slices are written out of band, as the
    // API server does for `kubernetes`) and ExternalName Services are left alone.
    if podutil::selector(svc).is_none() || podutil::is_external_name(svc) {
        return Plan::default();
    }
    let groups = desired(svc, pods, zones);
    slices::reconcile(groups, existing, &template(svc, trigger), max_per_slice)
}

struct Ctx {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    triggers: TriggerTracker,
    tracker: SliceTracker,
    recorder: Recorder,
    max_per_slice: usize,
}

/// Runs the EndpointSlice controller until `shutdown`, on the process's shared Service, pod,
/// node and EndpointSlice caches (of the slices, it reads only those it manages).
pub async fn run(
    informers: SharedInformers,
    config: EndpointSliceConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<String> = Queue::default();
    let services = {
        let q = queue.clone();
        informers.subscribe::<Service, _>(move |(old, new)| {
            if let Some(svc) = new.or(old) {
                q.add(runtime::key_of(svc));
            }
        })
    };
    let pods = {
        let (q, services) = (queue.clone(), services.clone());
        informers.subscribe::<Pod, _>(move |(old, new)| {
            for key in crate::endpoints::services_of_pod(&services, old, new) {
                q.add(key);
            }
        })
    };
    let nodes = informers.store::<Node>();
    let slices = {
        let q = queue.clone();
        informers.subscribe::<EndpointSlice, _>(move |(old, new)| {
            let ours = new.or(old).filter(|s| slices::managed_by(s, MANAGED_BY));
            if let Some(key) = ours.and_then(slices::owner_key) {
                q.add(key);
            }
        })
    };
    let waits = vec![
        runtime::ready(&services),
        runtime::ready(&pods),
        runtime::ready(&nodes),
        runtime::ready(&slices),
    ];
    let reporter = Reporter {
        controller: MANAGED_BY.into(),
        instance: None,
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        services,
        pods,
        nodes,
        slices,
        triggers: TriggerTracker::default(),
        tracker: SliceTracker::default(),
        max_per_slice: config.max_endpoints_per_slice,
    });
    let sync = move |key: String| {
        let ctx = ctx.clone();
        async move { sync_key(&ctx, &key).await }
    };
    runtime::run_synced(
        "endpointslice",
        waits,
        queue,
        config.workers,
        shutdown,
        sync,
    )
    .await?;
    Ok(())
}

async fn sync_key(ctx: &Ctx, key: &str) -> Result<Requeue, Error> {
    let (namespace, _) = runtime::split_key(key);
    let service = runtime::lookup(&ctx.services, key);
    let existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| {
            slices::managed_by(s, MANAGED_BY) && slices::owner_key(s).as_deref() == Some(key)
        })
        .collect();
    let existing: Vec<&EndpointSlice> = existing.iter().map(Arc::as_ref).collect();
    if !ctx.tracker.in_sync(key, &existing) {
        return Err(Error::StaleCache(key.to_string()));
    }
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .collect();
    let pods: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
    let zones = zones_of(&ctx.nodes, &pods);
    let trigger = match service.as_deref() {
        Some(svc) => {
            let selected = selected_pods(svc, &pods);
            ctx.triggers.compute(key, svc, &selected)
        }
        None => {
            ctx.triggers.forget(key);
            (None, Default::default())
        }
    };
    let (trigger, seen) = trigger;
    let plan = plan(
        service.as_deref(),
        &pods,
        &zones,
        &existing,
        trigger,
        ctx.max_per_slice,
    );
    if plan.is_empty() {
        if service.is_none() {
            ctx.tracker.forget(key);
        } else {
            ctx.triggers.commit(seen);
        }
        return Ok(None);
    }
    let result = writes::apply(&ctx.client, namespace, key, plan, &ctx.tracker).await;
    if let (Err(err), Some(svc)) = (&result, service.as_deref()) {
        failed_event(ctx, svc, err).await;
    }
    result?;
    if service.is_some() {
        ctx.triggers.commit(seen);
    }
    Ok(None)
}

fn selected_pods<'a>(svc: &Service, pods: &[&'a Pod]) -> Vec<&'a Pod> {
    match podutil::selector(svc) {
        Some(sel) => pods
            .iter()
            .copied()
            .filter(|p| podutil::selects(sel, p.metadata.labels.as_ref()))
            .collect(),
        None => Vec::new(),
    }
}

fn zones_of(nodes: &Store<Node>, pods: &[&Pod]) -> HashMap<String, String> {
    let mut zones = HashMap::new();
    for pod in pods {
        let Some(name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if zones.contains_key(name) {
            continue;
        }
        let zone = nodes
            .get(&ObjectRef::new(name))
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned());
        if let Some(zone) = zone {
            zones.insert(name.to_string(), zone);
        }
    }
    zones
}

async fn failed_event(ctx: &Ctx, svc: &Service, err: &Error) {
    if matches!(err, Error::Write { source: kube::Error::Api(s), .. } if s.code == 409) {
        return;
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: Some(ns.clone()),
        name: Some(name.clone()),
        uid: svc.metadata.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "FailedToUpdateEndpointSlices".into(),
        note: Some(format!(
            "Error updating Endpoint Slices for Service {ns}/{name}: {err}"
        )),
        action: "Update".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(%err, "recording an event failed");
    }
}

#[cfg(test)]
#[path = "endpointslice_tests.rs"]
mod tests;
