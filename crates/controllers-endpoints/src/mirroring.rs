//! The EndpointSlice mirroring controller, as upstream's `endpointslicemirroring`: Endpoints
//! written by hand for a Service without a selector are mirrored into EndpointSlices managed by
//! `endpointslicemirroring-controller.k8s.io` and owned by the Endpoints.
//!
//! [`plan`] is one whole sync; [`crate::slices`] places the endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::runtime::{self, Queue, Requeue, SharedInformers};
use crate::slices::{self, Group, MANAGED_BY_LABEL, Plan, SERVICE_NAME_LABEL, SliceTemplate};
use crate::tracker::SliceTracker;
use crate::{Error, writes};

/// The `managed-by` value of mirrored slices.
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints labelled with this set to `true` are not mirrored.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Settings, upstream's `--concurrent-endpointslice-mirroring-syncs` and
/// `--mirroring-max-endpoints-per-subset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroringConfig {
    /// Endpoints synced at once (default 5).
    pub workers: usize,
    /// Endpoints mirrored into one slice (default 1000).
    pub max_endpoints_per_subset: usize,
}

impl Default for MirroringConfig {
    fn default() -> Self {
        MirroringConfig {
            workers: 5,
            max_endpoints_per_subset: 1000,
        }
    }
}

/// Whether `ep` should be mirrored for `svc`.
pub fn should_mirror(ep: &Endpoints, svc: Option<&Service>) -> bool {
    let Some(svc) = svc else {
        return false;
    };
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some();
    let labels = ep.metadata.labels.as_ref();
    let skip = labels
        .and_then(|l| l.get(SKIP_MIRROR_LABEL))
        .map(String::as_str)
        == Some("true");
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    !has_selector && !skip && !leader
}

fn to_endpoint(address: &EndpointAddress, ready: bool) -> Option<Endpoint> {
    address.ip.parse::<std::net::Ipv4Addr>().ok()?;
    Some(Endpoint {
        addresses: vec![address.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone().filter(|n| !n.is_empty()),
        target_ref: address.target_ref.clone(),
        ..Default::default()
    })
}

/// The endpoint groups of `ep`: one per subset (subsets with equal ports merge), at most `max`
/// endpoints each, ready addresses first.
pub fn desired(ep: &Endpoints, max: usize) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let unready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let endpoints: Vec<Endpoint> = ready
            .chain(unready)
            .filter_map(|(a, r)| to_endpoint(a, r))
            .take(max)
            .collect();
        match groups.iter_mut().find(|g| g.ports == ports) {
            Some(g) => g.endpoints.extend(endpoints),
            None => groups.push(Group { ports, endpoints }),
        }
    }
    groups
}

/// Labels and annotations from the Endpoints, owned by them.
pub fn template(ep: &Endpoints) -> SliceTemplate {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = ep.metadata.labels.clone().unwrap_or_default();
    labels.remove(SKIP_MIRROR_LABEL);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = ep.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(LAST_APPLIED);
    SliceTemplate {
        namespace: ep.metadata.namespace.clone().unwrap_or_default(),
        generate_name: slices::generate_name(&name),
        labels,
        annotations,
        owner: OwnerReference {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            name,
            uid: ep.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

/// One sync: the writes that mirror `ep` (or remove the mirror).
pub fn plan(
    ep: Option<&Endpoints>,
    svc: Option<&Service>,
    existing: &[&EndpointSlice],
    max: usize,
) -> Plan {
    match ep.filter(|ep| should_mirror(ep, svc)) {
        Some(ep) => slices::reconcile(desired(ep, max), existing, &template(ep), max),
        None => {
            let mut delete: Vec<EndpointSlice> = existing.iter().map(|s| (*s).clone()).collect();
            delete.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            Plan {
                delete,
                ..Plan::default()
            }
        }
    }
}

struct Ctx {
    client: kube::Client,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    tracker: SliceTracker,
    max: usize,
}

/// Runs the mirroring controller until `shutdown`, on the process's shared Service, Endpoints
/// and EndpointSlice caches (of the slices, it reads only those it manages).
pub async fn run(
    informers: SharedInformers,
    config: MirroringConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<String> = Queue::default();
    let services = informers.subscribe::<Service, _>(enqueue(queue.clone()));
    let endpoints = informers.subscribe::<Endpoints, _>(enqueue(queue.clone()));
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
        runtime::ready(&endpoints),
        runtime::ready(&slices),
    ];
    let ctx = Arc::new(Ctx {
        client,
        services,
        endpoints,
        slices,
        tracker: SliceTracker::default(),
        max: config.max_endpoints_per_subset,
    });
    let sync = move |key: String| {
        let ctx = ctx.clone();
        async move { sync_key(&ctx, &key).await }
    };
    runtime::run_synced(
        "endpointslice-mirroring",
        waits,
        queue,
        config.workers,
        shutdown,
        sync,
    )
    .await?;
    Ok(())
}

/// A change callback that queues the object's own key.
fn enqueue<K: kube::Resource>(q: Queue<String>) -> impl Fn(runtime::Change<'_, K>) + Send {
    move |(old, new)| {
        if let Some(obj) = new.or(old) {
            q.add(runtime::key_of(obj));
        }
    }
}

async fn sync_key(ctx: &Ctx, key: &str) -> Result<Requeue, Error> {
    let (namespace, _) = runtime::split_key(key);
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
    let ep = runtime::lookup(&ctx.endpoints, key);
    let svc = runtime::lookup(&ctx.services, key);
    let plan = plan(ep.as_deref(), svc.as_deref(), &existing, ctx.max);
    if plan.is_empty() {
        return Ok(None);
    }
    writes::apply(&ctx.client, namespace, key, plan, &ctx.tracker)
        .await
        .map(|()| None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ServiceBuilder;
    use serde_json::json;

    fn endpoints() -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "default", "uid": "uid-ep",
                         "labels": {"team": "a"}},
            "subsets": [{
                "addresses": [{"ip": "192.0.2.1", "hostname": "h1"}],
                "notReadyAddresses": [{"ip": "192.0.2.2"}, {"ip": "2001:db8::1"}],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]
            }]
        }))
        .expect("fixture")
    }

    #[test]
    fn mirrors_selectorless_endpoints() {
        let svc = ServiceBuilder::new("ext").no_selector().build();
        let ep = endpoints();
        let plan = plan(Some(&ep), Some(&svc), &[], 1000);
        assert_eq!(plan.create.len(), 1);
        let slice = &plan.create[0];
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels[SERVICE_NAME_LABEL], "ext");
        assert_eq!(labels["team"], "a");
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Endpoints", "uid-ep")
        );
        assert_eq!(slice.endpoints.len(), 2, "the IPv6 address is not mirrored");
        let ready: Vec<_> = slice
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().and_then(|c| c.ready))
            .collect();
        assert_eq!(ready, [Some(true), Some(false)]);
        assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("h1"));
        assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(443));
    }

    #[test]
    fn does_not_mirror_for_selectors_skip_label_or_missing_service() {
        let ep = endpoints();
        let with_selector = ServiceBuilder::new("ext").build();
        let mut existing = plan(
            Some(&ep),
            Some(&ServiceBuilder::new("ext").no_selector().build()),
            &[],
            1000,
        )
        .create
        .remove(0);
        existing.metadata.name = Some("ext-abc".into());
        assert_eq!(
            plan(Some(&ep), Some(&with_selector), &[&existing], 1000)
                .delete
                .len(),
            1
        );
        assert_eq!(plan(Some(&ep), None, &[&existing], 1000).delete.len(), 1);
        let mut skipped = ep.clone();
        skipped
            .metadata
            .labels
            .get_or_insert_default()
            .insert(SKIP_MIRROR_LABEL.into(), "true".into());
        let svc = ServiceBuilder::new("ext").no_selector().build();
        assert_eq!(
            plan(Some(&skipped), Some(&svc), &[&existing], 1000)
                .delete
                .len(),
            1
        );
        assert!(plan(Some(&ep), Some(&svc), &[&existing], 1000).is_empty());
    }
}
