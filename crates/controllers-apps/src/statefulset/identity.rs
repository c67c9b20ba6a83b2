//! The stable identity of a StatefulSet's pods, as upstream's `stateful_set_utils.go`: names
//! `SET-ORDINAL`, the pod-name and pod-index labels, hostname and subdomain, the claims made
//! from `volumeClaimTemplates` (`TEMPLATE-SET-ORDINAL`) and their owner references under the
//! PersistentVolumeClaim retention policy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::history::REVISION_HASH_LABEL;
use crate::pods;

/// The label carrying a pod's name (what a per-pod Service selects).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `RETAIN` or `DELETE`, as the retention policy spells them.
const DELETE: &str = "Delete";

/// The set's name.
pub fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

/// Splits `PARENT-ORDINAL`; `None` when the name has no ordinal.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

/// The pod's ordinal, if its name has one.
pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref()?).map(|(_, o)| o)
}

/// Whether the pod's name makes it a member of the set.
pub fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    pod.metadata
        .name
        .as_deref()
        .and_then(parent_and_ordinal)
        .is_some_and(|(parent, _)| parent == set_name(set))
}

/// `spec.ordinals.start` (0 by default).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (1 by default).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// Whether `ordinal` is one the set should run now.
pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

/// `SET-ORDINAL`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// `TEMPLATE-SET-ORDINAL`.
pub fn claim_name(set: &StatefulSet, template: &str, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", set_name(set))
}

fn service_name(set: &StatefulSet) -> Option<String> {
    set.spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

/// The claims the pod with `ordinal` needs, in template order: named per ordinal, labelled with
/// the template's labels and the selector's matchLabels (upstream's `getPersistentVolumeClaims`).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let match_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut claim = t.clone();
            let template = t.metadata.name.clone().unwrap_or_default();
            claim.metadata.name = Some(claim_name(set, &template, ordinal));
            claim.metadata.namespace = set.metadata.namespace.clone();
            let labels = claim.metadata.labels.get_or_insert_default();
            labels.extend(match_labels.clone());
            claim.status = None;
            claim
        })
        .collect()
}

/// Points the pod's volumes named like claim templates at the ordinal's claims, keeping its
/// other volumes (upstream's `updateStorage`).
pub fn update_storage(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let spec = pod.spec.get_or_insert_default();
    let current = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<Volume> = claim_templates(set)
        .iter()
        .map(|t| {
            let template = t.metadata.name.clone().unwrap_or_default();
            Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(set, &template, ordinal),
                    read_only: None,
                }),
                name: template,
                ..Default::default()
            }
        })
        .collect();
    let taken: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
    volumes.extend(current.into_iter().filter(|v| !taken.contains(&v.name)));
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// Sets the name, namespace and identity labels (upstream's `updateIdentity`).
pub fn update_identity(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// Whether the pod has the identity of its ordinal in the set.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(o) = ordinal(pod) else {
        return false;
    };
    let name = pod_name(set, o);
    is_member(set, pod)
        && pod.metadata.namespace == set.metadata.namespace
        && pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_NAME_LABEL))
            == Some(&name)
}

/// Whether the pod's volumes point at all of its ordinal's claims.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(o) = ordinal(pod) else {
        return false;
    };
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    claim_templates(set).iter().all(|t| {
        let template = t.metadata.name.clone().unwrap_or_default();
        volumes.iter().any(|v| {
            v.name == template
                && v.persistent_volume_claim.as_ref().map(|c| &c.claim_name)
                    == Some(&claim_name(set, &template, o))
        })
    })
}

/// The pod for `ordinal` from `template` (the template of the revision `revision`), labelled
/// with that revision's name (upstream's `newVersionedStatefulSetPod`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let mut pod = pods::pod_from_template(template, pods::owner_ref(set), &ns);
    pod.metadata.generate_name = None;
    update_identity(set, &mut pod, ordinal);
    let spec = pod.spec.get_or_insert_default();
    spec.hostname = Some(pod_name(set, ordinal));
    spec.subdomain = service_name(set);
    update_storage(set, &mut pod, ordinal);
    pod.metadata
        .labels
        .get_or_insert_default()
        .insert(REVISION_HASH_LABEL.into(), revision.into());
    pod
}

/// The revision name a pod was made from.
pub fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let is_delete = |v: Option<&String>| v.is_some_and(|v| v == DELETE);
    (
        is_delete(p.and_then(|p| p.when_deleted.as_ref())),
        is_delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// A controller reference to the pod named `name` with `uid`.
fn pod_ref(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn refers(r: &OwnerReference, api_version: &str, kind: &str, name: &str) -> bool {
    r.api_version == api_version && r.kind == kind && r.name == name
}

/// The owner references the claim of the pod `(name, uid)` should have under the set's
/// retention policy (upstream's `updateClaimOwnerRefForSetAndPod`): whenDeleted=Delete adds the
/// set, whenScaled=Delete adds the pod once it is scaled away (the set then no longer owns it).
/// `None` when the claim must not be touched (stale references to an earlier set or pod of the
/// same name, or with all-Retain nothing to fix).
pub fn claim_owners(
    set: &StatefulSet,
    claim_refs: &[OwnerReference],
    pod: (&str, &str),
    ordinal: i32,
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = policy(set);
    let set_uid = set.metadata.uid.as_deref().unwrap_or_default();
    let is_set = |r: &OwnerReference| refers(r, "apps/v1", "StatefulSet", set_name(set));
    let is_pod = |r: &OwnerReference| refers(r, "v1", "Pod", pod.0);
    let stale = claim_refs
        .iter()
        .any(|r| (is_set(r) && r.uid != set_uid) || (is_pod(r) && r.uid != pod.1));
    if stale {
        return None;
    }
    let other_controller = claim_refs
        .iter()
        .any(|r| !is_set(r) && !is_pod(r) && r.controller == Some(true));
    let mut refs: Vec<OwnerReference> = claim_refs
        .iter()
        .filter(|r| !is_set(r) && !is_pod(r))
        .cloned()
        .collect();
    if other_controller && (when_deleted || when_scaled) {
        return Some(refs);
    }
    let scaled_down = !in_range(set, ordinal);
    if when_scaled && scaled_down && !pod.1.is_empty() {
        refs.push(pod_ref(pod.0, pod.1));
    }
    if when_deleted && !(when_scaled && scaled_down) {
        refs.push(pods::owner_ref(set));
    }
    Some(refs)
}

/// Whether two owner reference lists hold the same references, in any order.
pub fn same_refs(a: &[OwnerReference], b: &[OwnerReference]) -> bool {
    let key = |r: &OwnerReference| (r.uid.clone(), r.kind.clone(), r.controller);
    let ka: BTreeMap<_, _> = a.iter().map(|r| (key(r), ())).collect();
    let kb: BTreeMap<_, _> = b.iter().map(|r| (key(r), ())).collect();
    a.len() == b.len() && ka == kb
}
