//! What volumes and claims mean to each other, as upstream's storage helpers and the PV index:
//! classes, access and volume modes, capacity, pre-binding and the best match for a claim.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Set on a claim once its binding is complete.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a volume or claim whose binding the controller (not the user) chose.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Names the provisioner that created a volume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Names the provisioner expected to provision a claim.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The deprecated beta form of [`ANN_STORAGE_PROVISIONER`], still written for old provisioners.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set by the scheduler on a `WaitForFirstConsumer` claim: the node its first consumer runs on.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The deprecated class annotation, which wins over `storageClassName` when set.
pub const ANN_BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The provisioner of classes whose volumes are only ever created by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// `namespace/name` of a claim.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

/// `namespace/name` of the claim a volume's `claimRef` names.
pub fn claim_ref_key(r: &ObjectReference) -> String {
    format!(
        "{}/{}",
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default()
    )
}

/// The value of annotation `key` of an object's metadata.
pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The claim's class: the beta annotation, else `storageClassName`, else `""`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    annotation(&claim.metadata, ANN_BETA_CLASS)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The volume's class: the beta annotation, else `storageClassName`, else `""`.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    annotation(&volume.metadata, ANN_BETA_CLASS)
        .or_else(|| volume.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The `storage` entry of a resource list, in bytes (0 when absent or unparsable).
pub fn storage_of(list: Option<&BTreeMap<String, Quantity>>) -> i128 {
    list.and_then(|l| l.get("storage"))
        .and_then(k8rs_api::quantity::value)
        .unwrap_or(0)
}

/// The storage a claim requests.
pub fn requested(claim: &PersistentVolumeClaim) -> i128 {
    storage_of(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

/// The storage a volume offers.
pub fn capacity(volume: &PersistentVolume) -> i128 {
    storage_of(volume.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// The volume's phase (`""` when unset).
pub fn volume_phase(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The volume's `claimRef`.
pub fn claim_ref(volume: &PersistentVolume) -> Option<&ObjectReference> {
    volume.spec.as_ref()?.claim_ref.as_ref()
}

/// The volume the claim names in `spec.volumeName` (`""` when unset).
pub fn volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// Whether the volume's `claimRef` names this claim (and, when it has a uid, this very claim).
pub fn is_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = claim_ref(volume) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// Whether the class delays binding until a pod is scheduled.
pub fn is_delay_binding(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or("Filesystem")
}

fn volume_modes_match(
    claim: Option<&PersistentVolumeClaimSpec>,
    volume: &PersistentVolume,
) -> bool {
    volume_mode(claim.and_then(|s| s.volume_mode.as_ref()))
        == volume_mode(volume.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
}

fn access_modes(volume: &PersistentVolume) -> &[String] {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_match(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let offered = access_modes(volume);
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
}

/// Upstream's `checkVolumeSatisfyClaim`: why `volume` cannot serve `claim`, if it cannot.
pub fn check_volume_satisfies_claim(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    if volume.metadata.deletion_timestamp.is_some() {
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        return Err(format!("the volume is marked for deletion {name:?}"));
    }
    if capacity(volume) < requested(claim) {
        return Err("requested PV is too small".into());
    }
    if volume_class(volume) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if !volume_modes_match(claim.spec.as_ref(), volume) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_match(claim, volume) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// Upstream's `findBestMatchForClaim`: among volumes offering the claim's access modes (those
/// with the fewest modes first), a volume pre-bound to the claim, else the smallest available,
/// unclaimed volume of the claim's class, selector and volume mode that is big enough. In
/// delay-binding mode only pre-bound volumes are taken: the scheduler picks the others.
pub fn find_best_match(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    let mut candidates: Vec<&Arc<PersistentVolume>> = volumes
        .iter()
        .filter(|v| access_modes_match(claim, v))
        .collect();
    candidates.sort_by_key(|v| access_modes(v).len());
    let mut sizes: Vec<usize> = candidates.iter().map(|v| access_modes(v).len()).collect();
    sizes.dedup();
    sizes.into_iter().find_map(|size| {
        let group = candidates
            .iter()
            .filter(|v| access_modes(v).len() == size)
            .copied();
        find_matching(claim, group, delay_binding).cloned()
    })
}

fn find_matching<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl Iterator<Item = &'a Arc<PersistentVolume>>,
    delay_binding: bool,
) -> Option<&'a Arc<PersistentVolume>> {
    let request = requested(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let selector = match selector.map(Selector::from_label_selector) {
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return None,
        None => None,
    };
    let no_labels = BTreeMap::new();
    let mut best: Option<&Arc<PersistentVolume>> = None;
    for volume in volumes {
        if !volume_modes_match(claim.spec.as_ref(), volume)
            || volume.metadata.deletion_timestamp.is_some()
            || capacity(volume) < request
        {
            continue;
        }
        if is_bound_to_claim(volume, claim) {
            return Some(volume);
        }
        let labels = volume.metadata.labels.as_ref().unwrap_or(&no_labels);
        let free = !delay_binding
            && volume_phase(volume) == "Available"
            && claim_ref(volume).is_none()
            && selector.as_ref().is_none_or(|s| s.matches(labels))
            && volume_class(volume) == claim_class(claim);
        if free && best.is_none_or(|b| capacity(b) > capacity(volume)) {
            best = Some(volume);
        }
    }
    best
}

/// An `ObjectReference` to `claim` as a volume's `claimRef` holds it.
pub fn reference_to(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}
