//! The decisions of one sync, as upstream's `syncClaim` and `syncVolume`: objects in, the API
//! actions to take out. No IO.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::volume::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER, annotation, check_volume_satisfies_claim, claim_class, claim_key,
    claim_ref, find_best_match, is_bound_to_claim, is_delay_binding, reference_to, volume_name,
    volume_phase,
};

/// Upstream's event message for an unbound claim of a delay-binding class.
pub const MSG_WAIT_FOR_FIRST_CONSUMER: &str =
    "waiting for first consumer to be created before binding";

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The claim `namespace/name`.
    Claim(String),
    /// The volume of this name.
    Volume(String),
}

/// One API action of a sync.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the volume's `spec.claimRef` (and `bound-by-controller` when the controller chose it).
    BindVolume {
        volume: String,
        claim_ref: ObjectReference,
        by_controller: bool,
    },
    /// Undo a binding: drop the `claimRef` the controller made, or only the uid of a user's.
    UnbindVolume { volume: String },
    /// Set the volume's `status.phase` (and `status.message`).
    VolumePhase {
        volume: String,
        phase: &'static str,
        message: Option<String>,
    },
    /// Set the claim's `spec.volumeName` and `bind-completed` (and `bound-by-controller` when
    /// the controller chose the volume).
    BindClaim {
        claim: String,
        volume: String,
        by_controller: bool,
    },
    /// Set the claim's status: phase, and capacity and access modes of its volume.
    ClaimStatus {
        claim: String,
        phase: &'static str,
        capacity: Option<BTreeMap<String, Quantity>>,
        access_modes: Option<Vec<String>>,
    },
    /// Annotate the claim with the external provisioner expected to provision it.
    SetProvisioner { claim: String, provisioner: String },
    /// Record an event.
    Event {
        target: Target,
        warning: bool,
        reason: &'static str,
        message: String,
    },
}

fn event(target: Target, warning: bool, reason: &'static str, message: String) -> Action {
    Action::Event {
        target,
        warning,
        reason,
        message,
    }
}

fn name_of(volume: &PersistentVolume) -> String {
    volume.metadata.name.clone().unwrap_or_default()
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Upstream's `updateClaimStatus`: the status action, if anything changes.
fn claim_status(
    claim: &PersistentVolumeClaim,
    phase: &'static str,
    volume: Option<&PersistentVolume>,
) -> Option<Action> {
    let status = claim.status.clone().unwrap_or_default();
    let (capacity, access_modes) = match volume.and_then(|v| v.spec.as_ref()) {
        Some(spec) => (spec.capacity.clone(), spec.access_modes.clone()),
        None => (None, None),
    };
    let same_capacity = match (&status.capacity, &capacity) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            crate::volume::storage_of(Some(a)) == crate::volume::storage_of(Some(b))
        }
        _ => false,
    };
    let unchanged =
        claim_phase(claim) == phase && same_capacity && status.access_modes == access_modes;
    (!unchanged).then(|| Action::ClaimStatus {
        claim: claim_key(claim),
        phase,
        capacity,
        access_modes,
    })
}

/// `claim_status` with an event, emitted only when the phase changes.
fn claim_status_with_event(
    claim: &PersistentVolumeClaim,
    phase: &'static str,
    reason: &'static str,
    message: &str,
) -> Vec<Action> {
    if claim_phase(claim) == phase {
        return vec![];
    }
    let mut out: Vec<Action> = claim_status(claim, phase, None).into_iter().collect();
    out.push(event(
        Target::Claim(claim_key(claim)),
        true,
        reason,
        message.into(),
    ));
    out
}

fn volume_phase_action(
    volume: &PersistentVolume,
    phase: &'static str,
    message: Option<String>,
) -> Option<Action> {
    (volume_phase(volume) != phase).then(|| Action::VolumePhase {
        volume: name_of(volume),
        phase,
        message,
    })
}

/// Upstream's `bind`: both directions and both statuses, each only when it is not yet so.
pub fn bind(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Vec<Action> {
    let mut out = Vec::new();
    let r = claim_ref(volume);
    let complete = r.is_some_and(|r| {
        is_bound_to_claim(volume, claim) && r.uid.as_deref() == claim.metadata.uid.as_deref()
    });
    if !complete {
        out.push(Action::BindVolume {
            volume: name_of(volume),
            claim_ref: reference_to(claim),
            by_controller: !is_bound_to_claim(volume, claim),
        });
    }
    out.extend(volume_phase_action(volume, "Bound", None));
    let named = volume_name(claim) == name_of(volume);
    if !named || annotation(&claim.metadata, ANN_BIND_COMPLETED).is_none() {
        out.push(Action::BindClaim {
            claim: claim_key(claim),
            volume: name_of(volume),
            by_controller: !named,
        });
    }
    out.extend(claim_status(claim, "Bound", Some(volume)));
    out
}

/// Upstream's `syncClaim` for one claim, given all volumes and the claim's class (if found).
pub fn sync_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    class: Option<&StorageClass>,
) -> Vec<Action> {
    if annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some() {
        sync_bound_claim(claim, volumes)
    } else {
        sync_unbound_claim(claim, volumes, class)
    }
}

fn find<'a>(volumes: &'a [Arc<PersistentVolume>], name: &str) -> Option<&'a PersistentVolume> {
    volumes
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some(name))
        .map(|v| v.as_ref())
}

fn sync_unbound_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    class: Option<&StorageClass>,
) -> Vec<Action> {
    let wanted = volume_name(claim);
    if wanted.is_empty() {
        return match find_best_match(claim, volumes, is_delay_binding(class)) {
            Some(volume) => bind(&volume, claim),
            None => no_volume_found(claim, class),
        };
    }
    let key = Target::Claim(claim_key(claim));
    let pending = || claim_status(claim, "Pending", None);
    let Some(volume) = find(volumes, wanted) else {
        return pending().into_iter().collect();
    };
    if claim_ref(volume).is_none() {
        return match check_volume_satisfies_claim(volume, claim) {
            Ok(()) => bind(volume, claim),
            Err(why) => {
                let msg = format!("Cannot bind to requested volume {wanted:?}: {why}");
                let mut out = vec![event(key, true, "VolumeMismatch", msg)];
                out.extend(pending());
                out
            }
        };
    }
    if is_bound_to_claim(volume, claim) {
        return bind(volume, claim);
    }
    let msg = format!("volume {wanted:?} already bound to a different claim.");
    let mut out = vec![event(key, true, "FailedBinding", msg)];
    if annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        out.extend(pending());
    }
    out
}

fn no_volume_found(claim: &PersistentVolumeClaim, class: Option<&StorageClass>) -> Vec<Action> {
    let key = Target::Claim(claim_key(claim));
    let selected = annotation(&claim.metadata, ANN_SELECTED_NODE).is_some();
    let mut out = Vec::new();
    if is_delay_binding(class) && !selected {
        let msg = MSG_WAIT_FOR_FIRST_CONSUMER.to_owned();
        out.push(event(key, false, "WaitForFirstConsumer", msg));
    } else if !claim_class(claim).is_empty() {
        return provision(claim, class);
    } else {
        let msg = "no persistent volumes available for this claim and no storage class is set";
        out.push(event(key, false, "FailedBinding", msg.into()));
    }
    out.extend(claim_status(claim, "Pending", None));
    out
}

/// Upstream's `provisionClaim` for external provisioners: annotate the claim for the
/// provisioner and say that it is expected to act.
fn provision(claim: &PersistentVolumeClaim, class: Option<&StorageClass>) -> Vec<Action> {
    let key = Target::Claim(claim_key(claim));
    let Some(class) = class else {
        let msg = format!(
            "storageclass.storage.k8s.io {:?} not found",
            claim_class(claim)
        );
        return vec![event(key, true, "ProvisioningFailed", msg)];
    };
    let provisioner = class.provisioner.as_str();
    if provisioner.starts_with("kubernetes.io/") {
        let msg = format!("no volume plugin matched name: {provisioner}");
        return vec![event(key, true, "ProvisioningFailed", msg)];
    }
    let mut out = Vec::new();
    if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(provisioner) {
        out.push(Action::SetProvisioner {
            claim: claim_key(claim),
            provisioner: provisioner.into(),
        });
    }
    let msg = format!(
        "Waiting for a volume to be created either by the external provisioner '{provisioner}' \
         or manually by the system administrator. If volume creation is delayed, please verify \
         that the provisioner is running and correctly registered."
    );
    out.push(event(key, false, "ExternalProvisioning", msg));
    out
}

fn sync_bound_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
) -> Vec<Action> {
    let wanted = volume_name(claim);
    if wanted.is_empty() {
        let msg = "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!";
        return claim_status_with_event(claim, "Lost", "ClaimLost", msg);
    }
    let Some(volume) = find(volumes, wanted) else {
        let msg = "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
        return claim_status_with_event(claim, "Lost", "ClaimLost", msg);
    };
    match claim_ref(volume) {
        None => bind(volume, claim),
        Some(r) if r.uid.as_deref() == claim.metadata.uid.as_deref() => bind(volume, claim),
        Some(_) => {
            let msg = "Two claims are bound to the same volume, this one is bound incorrectly";
            claim_status_with_event(claim, "Lost", "ClaimMisbound", msg)
        }
    }
}

/// Upstream's `syncVolume`, given the claim its `claimRef` names (looked up by name; `None`
/// when it does not exist).
pub fn sync_volume(
    volume: &PersistentVolume,
    claim: Option<&PersistentVolumeClaim>,
) -> Vec<Action> {
    let Some(r) = claim_ref(volume) else {
        return volume_phase_action(volume, "Available", None)
            .into_iter()
            .collect();
    };
    let Some(uid) = r.uid.as_deref().filter(|u| !u.is_empty()) else {
        // Pre-bound to a claim; the claim's sync binds it.
        return volume_phase_action(volume, "Available", None)
            .into_iter()
            .collect();
    };
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid));
    let Some(claim) = claim else {
        return release(volume);
    };
    let bound_to = volume_name(claim);
    if bound_to.is_empty() {
        // The claim's sync completes the binding.
        return vec![];
    }
    if bound_to == name_of(volume) {
        return volume_phase_action(volume, "Bound", None)
            .into_iter()
            .collect();
    }
    let provisioned = annotation(&volume.metadata, ANN_PROVISIONED_BY).is_some();
    if provisioned && reclaim_policy(volume) == "Delete" {
        return release(volume);
    }
    let mut out = vec![Action::UnbindVolume {
        volume: name_of(volume),
    }];
    out.extend(volume_phase_action(volume, "Available", None));
    out
}

fn reclaim_policy(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// The claim is gone: mark the volume Released (not over Failed) and reclaim it.
fn release(volume: &PersistentVolume) -> Vec<Action> {
    let phase = volume_phase(volume);
    let mut out = Vec::new();
    if phase != "Released" && phase != "Failed" {
        out.extend(volume_phase_action(volume, "Released", None));
    }
    out.extend(reclaim(volume));
    out
}

/// Upstream's `reclaimVolume`. Volumes of an external provisioner are deleted by it (the
/// local-path provisioner deletes its own); k8rs has no in-tree deleters or recyclers.
fn reclaim(volume: &PersistentVolume) -> Vec<Action> {
    let failed = |reason: &'static str, message: String| {
        if volume_phase(volume) == "Failed" {
            return vec![];
        }
        let target = Target::Volume(name_of(volume));
        let mut out: Vec<Action> = volume_phase_action(volume, "Failed", Some(message.clone()))
            .into_iter()
            .collect();
        out.push(event(target, true, reason, message));
        out
    };
    match reclaim_policy(volume) {
        "Recycle" => failed(
            "VolumeFailedRecycle",
            "No recycler plugin found for the volume!".into(),
        ),
        "Delete" => {
            let external = annotation(&volume.metadata, ANN_PROVISIONED_BY)
                .is_some_and(|p| !p.starts_with("kubernetes.io/"));
            if external {
                return vec![];
            }
            let name = name_of(volume);
            failed(
                "VolumeFailedDelete",
                format!(
                    "error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"
                ),
            )
        }
        _ => vec![],
    }
}
