//! One sync of every quota, as upstream's `syncResourceQuota`: `status.hard` mirrors
//! `spec.hard`, `status.used` holds the fresh usage of each hard resource an evaluator tracks
//! (others keep their last observation), and a quota is written only when either changed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use super::quantity::Qty;
use super::usage::{self, Counts, Objects};

/// The cluster as the quota controller sees it.
#[derive(Default, Debug)]
pub struct Snapshot<'a> {
    pub pods: Vec<&'a Pod>,
    pub services: Vec<&'a Service>,
    pub claims: Vec<&'a PersistentVolumeClaim>,
    pub counts: Counts,
}

/// A status write: the quota (as read, for its resourceVersion) with its new status.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub namespace: String,
    pub name: String,
    pub status: ResourceQuotaStatus,
}

/// What one sync decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub updates: Vec<Update>,
    /// When the usage changes by itself (a deleted pod's grace period ends).
    pub wake_after: Option<Duration>,
}

fn ns_of(meta: &kube::api::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

/// The status updates every quota needs.
pub fn plan(quotas: &[&ResourceQuota], snap: &Snapshot, now: Timestamp) -> Plan {
    let mut objects: BTreeMap<&str, Objects> = quotas
        .iter()
        .map(|q| (ns_of(&q.metadata), Objects::default()))
        .collect();
    for p in &snap.pods {
        if let Some(o) = objects.get_mut(ns_of(&p.metadata)) {
            o.pods.push(p);
        }
    }
    for s in &snap.services {
        if let Some(o) = objects.get_mut(ns_of(&s.metadata)) {
            o.services.push(s);
        }
    }
    for c in &snap.claims {
        if let Some(o) = objects.get_mut(ns_of(&c.metadata)) {
            o.claims.push(c);
        }
    }
    let mut out = Plan {
        wake_after: next_expiry(&objects, now),
        ..Plan::default()
    };
    let empty = Objects::default();
    for q in quotas {
        let objs = objects.get(ns_of(&q.metadata)).unwrap_or(&empty);
        let used = usage::calculate(q, objs, &snap.counts, now);
        if let Some(status) = new_status(q, &used) {
            out.updates.push(Update {
                namespace: ns_of(&q.metadata).to_string(),
                name: q.metadata.name.clone().unwrap_or_default(),
                status,
            });
        }
    }
    out
}

/// How long until the first charged pod being deleted passes its grace period.
fn next_expiry(objects: &BTreeMap<&str, Objects>, now: Timestamp) -> Option<Duration> {
    objects
        .values()
        .flat_map(|o| &o.pods)
        .filter(|p| usage::is_charged(p, now))
        .filter_map(|p| usage::grace_expiry(p))
        .filter_map(|end| Duration::try_from(end.duration_since(now)).ok())
        // Past the end by a hair: the next sync will see the pod uncharged.
        .map(|d| d + Duration::from_millis(100))
        .min()
}

type List = BTreeMap<String, Quantity>;

fn canonical(q: &Quantity) -> Quantity {
    Quantity(Qty::parse(&q.0).map_or_else(|| q.0.clone(), |v| v.to_string()))
}

/// Equal by value (upstream's semantic equality of resource lists); absent equals empty.
fn same(a: Option<&List>, b: Option<&List>) -> bool {
    let empty = List::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k)
                .is_some_and(|w| match (Qty::parse(&v.0), Qty::parse(&w.0)) {
                    (Some(x), Some(y)) => x == y,
                    _ => v.0 == w.0,
                })
        })
}

/// The quota's new status, or `None` when it already holds it.
pub fn new_status(quota: &ResourceQuota, fresh: &usage::Usage) -> Option<ResourceQuotaStatus> {
    let hard = quota.spec.as_ref().and_then(|s| s.hard.as_ref());
    let old = quota.status.as_ref();
    let old_used = old.and_then(|s| s.used.as_ref());
    let mut used = List::new();
    for name in hard.into_iter().flatten().map(|(k, _)| k) {
        if let Some(q) = fresh.get(name) {
            used.insert(name.clone(), Quantity(q.to_string()));
        } else if let Some(q) = old_used.and_then(|u| u.get(name)) {
            used.insert(name.clone(), q.clone());
        }
    }
    let hard: List = hard
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), canonical(v)))
        .collect();
    let dirty =
        !same(Some(&hard), old.and_then(|s| s.hard.as_ref())) || !same(Some(&used), old_used);
    dirty.then_some(ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    })
}
