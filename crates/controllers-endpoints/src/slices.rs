//! Placing endpoints into EndpointSlices with little churn, shared by the EndpointSlice and the
//! mirroring controllers (upstream's `reconciler.reconcileByAddressType`), without IO.
//!
//! Endpoints are grouped by their resolved ports (one slice holds one port set). Existing slices
//! keep the endpoints still wanted (updated in place when they changed); new endpoints fill slices
//! already being updated, then one unchanged slice that can take all of them, then new slices.
//! A slice that would be deleted while another is created is reused instead.

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// What every slice of one Service must look like.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceTemplate {
    pub namespace: String,
    /// `generateName` of new slices.
    pub generate_name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner: OwnerReference,
}

/// The endpoints wanted for one port set.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// The writes that bring the slices to the wanted state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

type PortKey = Vec<(Option<String>, Option<i32>, Option<String>, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// Identifies an endpoint across syncs: its addresses and target.
fn endpoint_key(ep: &Endpoint) -> (Vec<String>, Option<String>) {
    let mut addresses = ep.addresses.clone();
    addresses.sort();
    let target = ep
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone().or(r.name.clone()));
    (addresses, target)
}

/// Plans the writes for `groups` given the `existing` slices of the same owner.
pub fn reconcile(
    groups: Vec<Group>,
    existing: &[&EndpointSlice],
    tpl: &SliceTemplate,
    max_per_slice: usize,
) -> Plan {
    let max = max_per_slice.max(1);
    let mut plan = Plan::default();
    let mut by_key: BTreeMap<PortKey, Vec<EndpointSlice>> = BTreeMap::new();
    let mut doomed: Vec<EndpointSlice> = Vec::new();
    for slice in existing {
        if slice.address_type != "IPv4" {
            doomed.push((*slice).clone());
        } else {
            let key = port_key(slice.ports.as_deref().unwrap_or_default());
            by_key.entry(key).or_default().push((*slice).clone());
        }
    }
    let total: usize = groups.iter().map(|g| g.endpoints.len()).sum();
    let mut wanted_keys = Vec::new();
    for group in groups.into_iter().filter(|g| !g.endpoints.is_empty()) {
        let key = port_key(&group.ports);
        wanted_keys.push(key.clone());
        let slices = by_key.remove(&key).unwrap_or_default();
        place_group(group, slices, tpl, max, &mut plan, &mut doomed);
    }
    doomed.extend(by_key.into_values().flatten());
    if total == 0 {
        placeholder(tpl, &mut plan, &mut doomed);
    }
    // Reuse a slice about to be deleted rather than create one.
    let mut created = Vec::new();
    for new in plan.create.drain(..) {
        match doomed.pop() {
            Some(mut old) => {
                old.endpoints = new.endpoints;
                old.ports = new.ports;
                old.address_type = new.address_type;
                apply_meta(&mut old, tpl);
                plan.update.push(old);
            }
            None => created.push(new),
        }
    }
    plan.create = created;
    doomed.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    plan.delete = doomed;
    plan.update
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    plan
}

fn place_group(
    group: Group,
    slices: Vec<EndpointSlice>,
    tpl: &SliceTemplate,
    max: usize,
    plan: &mut Plan,
    doomed: &mut Vec<EndpointSlice>,
) {
    let mut wanted: BTreeMap<_, Endpoint> = group
        .endpoints
        .into_iter()
        .map(|ep| (endpoint_key(&ep), ep))
        .collect();
    let mut updating: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    for mut slice in slices {
        let mut changed = false;
        let mut kept = Vec::new();
        for ep in std::mem::take(&mut slice.endpoints) {
            match wanted.remove(&endpoint_key(&ep)) {
                Some(new) => {
                    changed |= new != ep;
                    kept.push(new);
                }
                None => changed = true,
            }
        }
        slice.endpoints = kept;
        if slice.endpoints.is_empty() {
            doomed.push(slice);
        } else if changed || kept_meta_differs(&slice, tpl) || slice.endpoints.len() > max {
            updating.push(slice);
        } else {
            unchanged.push(slice);
        }
    }
    // Over-full slices give their excess back to be placed again.
    for slice in &mut updating {
        while slice.endpoints.len() > max {
            if let Some(ep) = slice.endpoints.pop() {
                wanted.insert(endpoint_key(&ep), ep);
            }
        }
    }
    let mut rest: Vec<Endpoint> = wanted.into_values().collect();
    for slice in &mut updating {
        let room = max.saturating_sub(slice.endpoints.len()).min(rest.len());
        slice.endpoints.extend(rest.drain(..room));
    }
    for mut slice in updating {
        apply_meta(&mut slice, tpl);
        plan.update.push(slice);
    }
    // Upstream's step 5: full new slices while at least `max` remain; a remainder goes into the
    // fullest unchanged slice that can take all of it, else into one more new slice.
    while !rest.is_empty() {
        if rest.len() < max
            && let Some(i) = fullest_fit(&unchanged, rest.len(), max)
        {
            let mut slice = unchanged.remove(i);
            slice.endpoints.append(&mut rest);
            apply_meta(&mut slice, tpl);
            plan.update.push(slice);
            break;
        }
        let chunk: Vec<Endpoint> = rest.drain(..max.min(rest.len())).collect();
        plan.create.push(new_slice(tpl, group.ports.clone(), chunk));
    }
}

/// The unchanged slice with the most endpoints that still has room for `n` more.
fn fullest_fit(unchanged: &[EndpointSlice], n: usize, max: usize) -> Option<usize> {
    unchanged
        .iter()
        .enumerate()
        .filter(|(_, s)| s.endpoints.len() + n <= max)
        .max_by_key(|(_, s)| s.endpoints.len())
        .map(|(i, _)| i)
}

/// A Service with no endpoints keeps one empty slice.
fn placeholder(tpl: &SliceTemplate, plan: &mut Plan, doomed: &mut Vec<EndpointSlice>) {
    let at = doomed
        .iter()
        .position(|s| s.endpoints.is_empty() && s.address_type == "IPv4");
    match at {
        Some(i) => {
            let mut slice = doomed.remove(i);
            let ports_empty = slice.ports.as_ref().is_none_or(Vec::is_empty);
            if !ports_empty || kept_meta_differs(&slice, tpl) {
                slice.ports = None;
                apply_meta(&mut slice, tpl);
                plan.update.push(slice);
            }
        }
        None => plan.create.push(new_slice(tpl, Vec::new(), Vec::new())),
    }
}

fn kept_meta_differs(slice: &EndpointSlice, tpl: &SliceTemplate) -> bool {
    slice.metadata.labels.as_ref() != Some(&tpl.labels)
        || !slice
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == tpl.owner.uid)
}

fn apply_meta(slice: &mut EndpointSlice, tpl: &SliceTemplate) {
    slice.metadata.labels = Some(tpl.labels.clone());
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(tpl.annotations.clone());
    let owners = slice.metadata.owner_references.get_or_insert_with(Vec::new);
    if !owners.iter().any(|o| o.uid == tpl.owner.uid) {
        owners.push(tpl.owner.clone());
    }
}

fn new_slice(
    tpl: &SliceTemplate,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(tpl.generate_name.clone()),
            namespace: Some(tpl.namespace.clone()),
            labels: Some(tpl.labels.clone()),
            annotations: (!tpl.annotations.is_empty()).then(|| tpl.annotations.clone()),
            owner_references: Some(vec![tpl.owner.clone()]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: (!ports.is_empty()).then_some(ports),
    }
}

/// Whether `slice` is managed by the controller named `manager` (its managed-by label): the
/// controllers share one cache of every slice and each reads only its own.
pub fn managed_by(slice: &EndpointSlice, manager: &str) -> bool {
    let labels = slice.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(manager)
}

/// `namespace/service` of a slice, from its service-name label.
pub fn owner_key(slice: &EndpointSlice) -> Option<String> {
    let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(format!(
        "{}/{svc}",
        slice.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

/// Upstream's `getEndpointSlicePrefix`: the owner's name and a dash, cut so that a generated
/// suffix still fits a name.
pub fn generate_name(owner: &str) -> String {
    let mut prefix = format!("{owner}-");
    if prefix.len() > 58 {
        prefix.truncate(57);
        prefix.push('-');
    }
    prefix
}

#[cfg(test)]
#[path = "slices_tests.rs"]
mod tests;
