//! One sync over fixtures, asserting the exact actions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::sync::{Action, MSG_WAIT_FOR_FIRST_CONSUMER, Target, sync_claim, sync_volume};
use crate::testutil::{ClaimBuilder, VolumeBuilder, class};
use crate::volume::{ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, reference_to};

fn storage(size: &str) -> Option<BTreeMap<String, Quantity>> {
    Some(BTreeMap::from([(
        "storage".to_owned(),
        Quantity(size.into()),
    )]))
}

fn rwo() -> Option<Vec<String>> {
    Some(vec!["ReadWriteOnce".into()])
}

/// The four actions of a complete bind of `default/<claim>` to `volume` of `size`.
fn full_bind(
    claim: &k8s_openapi::api::core::v1::PersistentVolumeClaim,
    volume: &str,
    size: &str,
) -> Vec<Action> {
    vec![
        Action::BindVolume {
            volume: volume.into(),
            claim_ref: reference_to(claim),
            by_controller: true,
        },
        Action::VolumePhase {
            volume: volume.into(),
            phase: "Bound",
            message: None,
        },
        Action::BindClaim {
            claim: "default/data".into(),
            volume: volume.into(),
            by_controller: true,
        },
        Action::ClaimStatus {
            claim: "default/data".into(),
            phase: "Bound",
            capacity: storage(size),
            access_modes: rwo(),
        },
    ]
}

fn claim_event(warning: bool, reason: &'static str, message: &str) -> Action {
    Action::Event {
        target: Target::Claim("default/data".into()),
        warning,
        reason,
        message: message.into(),
    }
}

#[test]
fn binds_the_smallest_volume_that_fits() {
    let claim = ClaimBuilder::new("data").request("1Gi").build();
    let volumes = vec![
        VolumeBuilder::new("small", "512Mi").arc(),
        VolumeBuilder::new("big", "5Gi").arc(),
        VolumeBuilder::new("right", "2Gi").arc(),
        VolumeBuilder::new("classy", "1Gi").class("fast").arc(),
        VolumeBuilder::new("taken", "1Gi")
            .claim("other", Some("other-uid"))
            .phase("Bound")
            .arc(),
        VolumeBuilder::new("released", "1Gi")
            .phase("Released")
            .arc(),
    ];
    assert_eq!(
        sync_claim(&claim, &volumes, None),
        full_bind(&claim, "right", "2Gi")
    );
}

#[test]
fn prefers_volumes_with_fewest_access_modes_then_selector() {
    let claim = ClaimBuilder::new("data").build();
    let volumes = vec![
        VolumeBuilder::new("wide", "1Gi")
            .modes(&["ReadWriteOnce", "ReadOnlyMany"])
            .arc(),
        VolumeBuilder::new("narrow", "5Gi").arc(),
        VolumeBuilder::new("rox", "1Gi")
            .modes(&["ReadOnlyMany"])
            .arc(),
    ];
    assert_eq!(
        sync_claim(&claim, &volumes, None),
        full_bind(&claim, "narrow", "5Gi")
    );
    let picky = ClaimBuilder::new("data").selector("tier", "gold").build();
    let mut labelled = volumes.clone();
    labelled.push(
        VolumeBuilder::new("gold", "9Gi")
            .label("tier", "gold")
            .arc(),
    );
    assert_eq!(
        sync_claim(&picky, &labelled, None),
        full_bind(&picky, "gold", "9Gi")
    );
}

#[test]
fn a_volume_pre_bound_by_the_user_wins_and_keeps_its_annotations() {
    let claim = ClaimBuilder::new("data").build();
    let volumes = vec![
        VolumeBuilder::new("fit", "1Gi").arc(),
        VolumeBuilder::new("mine", "8Gi").claim("data", None).arc(),
    ];
    let mut want = full_bind(&claim, "mine", "8Gi");
    want[0] = Action::BindVolume {
        volume: "mine".into(),
        claim_ref: reference_to(&claim),
        by_controller: false,
    };
    assert_eq!(sync_claim(&claim, &volumes, None), want);
}

#[test]
fn a_provisioned_volume_completes_the_binding() {
    let claim = ClaimBuilder::new("data")
        .class("local-path")
        .annotation(ANN_SELECTED_NODE, "n1")
        .build();
    let pv = VolumeBuilder::new("pvc-data-uid", "1Gi")
        .class("local-path")
        .claim("data", Some("data-uid"))
        .annotation(ANN_PROVISIONED_BY, "rancher.io/local-path")
        .phase("Pending")
        .arc();
    let wffc = class(
        "local-path",
        "rancher.io/local-path",
        "WaitForFirstConsumer",
    );
    let mut want = full_bind(&claim, "pvc-data-uid", "1Gi");
    want.remove(0);
    assert_eq!(sync_claim(&claim, &[pv], Some(&wffc)), want);
}

#[test]
fn requested_volume_name() {
    let claim = ClaimBuilder::new("data").volume("pv1").build();
    assert_eq!(sync_claim(&claim, &[], None), vec![]);
    let small = VolumeBuilder::new("pv1", "100Mi").arc();
    assert_eq!(
        sync_claim(&claim, &[small], None),
        vec![claim_event(
            true,
            "VolumeMismatch",
            "Cannot bind to requested volume \"pv1\": requested PV is too small"
        )]
    );
    let other = VolumeBuilder::new("pv1", "1Gi")
        .claim("other", Some("o"))
        .arc();
    assert_eq!(
        sync_claim(&claim, &[other], None),
        vec![claim_event(
            true,
            "FailedBinding",
            "volume \"pv1\" already bound to a different claim."
        )]
    );
    let free = VolumeBuilder::new("pv1", "1Gi").arc();
    let mut want = full_bind(&claim, "pv1", "1Gi");
    want[2] = Action::BindClaim {
        claim: "default/data".into(),
        volume: "pv1".into(),
        by_controller: false,
    };
    assert_eq!(sync_claim(&claim, &[free], None), want);
}

#[test]
fn wait_for_first_consumer_waits_for_the_selected_node() {
    let wffc = class(
        "local-path",
        "rancher.io/local-path",
        "WaitForFirstConsumer",
    );
    let claim = ClaimBuilder::new("data").class("local-path").build();
    // An available static volume of the class is left to the scheduler.
    let pv = VolumeBuilder::new("static", "1Gi")
        .class("local-path")
        .arc();
    assert_eq!(
        sync_claim(&claim, &[pv], Some(&wffc)),
        vec![claim_event(
            false,
            "WaitForFirstConsumer",
            MSG_WAIT_FOR_FIRST_CONSUMER
        )]
    );
    let selected = ClaimBuilder::new("data")
        .class("local-path")
        .annotation(ANN_SELECTED_NODE, "n1")
        .build();
    let msg = "Waiting for a volume to be created either by the external provisioner \
               'rancher.io/local-path' or manually by the system administrator. If volume \
               creation is delayed, please verify that the provisioner is running and correctly \
               registered.";
    assert_eq!(
        sync_claim(&selected, &[], Some(&wffc)),
        vec![
            Action::SetProvisioner {
                claim: "default/data".into(),
                provisioner: "rancher.io/local-path".into()
            },
            claim_event(false, "ExternalProvisioning", msg),
        ]
    );
    let annotated = ClaimBuilder::new("data")
        .class("local-path")
        .annotation(ANN_SELECTED_NODE, "n1")
        .annotation(ANN_STORAGE_PROVISIONER, "rancher.io/local-path")
        .build();
    assert_eq!(
        sync_claim(&annotated, &[], Some(&wffc)),
        vec![claim_event(false, "ExternalProvisioning", msg)]
    );
}

#[test]
fn claims_nothing_can_serve() {
    let bare = ClaimBuilder::new("data").build();
    assert_eq!(
        sync_claim(&bare, &[], None),
        vec![claim_event(
            false,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set"
        )]
    );
    let missing = ClaimBuilder::new("data").class("gone").build();
    assert_eq!(
        sync_claim(&missing, &[], None),
        vec![claim_event(
            true,
            "ProvisioningFailed",
            "storageclass.storage.k8s.io \"gone\" not found"
        )]
    );
    let manual = class("manual", "kubernetes.io/no-provisioner", "Immediate");
    let claim = ClaimBuilder::new("data").class("manual").build();
    assert_eq!(
        sync_claim(&claim, &[], Some(&manual)),
        vec![claim_event(
            true,
            "ProvisioningFailed",
            "no volume plugin matched name: kubernetes.io/no-provisioner"
        )]
    );
}

#[test]
fn bound_claims() {
    let claim = ClaimBuilder::new("data").bound("pv1", "1Gi").build();
    let pv = VolumeBuilder::new("pv1", "1Gi")
        .claim("data", Some("data-uid"))
        .annotation(crate::volume::ANN_BOUND_BY_CONTROLLER, "yes")
        .phase("Bound")
        .arc();
    assert_eq!(sync_claim(&claim, &[pv], None), vec![]);
    assert_eq!(
        sync_claim(&claim, &[], None),
        vec![
            Action::ClaimStatus {
                claim: "default/data".into(),
                phase: "Lost",
                capacity: None,
                access_modes: None
            },
            claim_event(
                true,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
            ),
        ]
    );
    let stolen = VolumeBuilder::new("pv1", "1Gi")
        .claim("data", Some("older-uid"))
        .phase("Bound")
        .arc();
    let actions = sync_claim(&claim, &[stolen], None);
    assert!(
        matches!(
            &actions[1],
            Action::Event {
                reason: "ClaimMisbound",
                ..
            }
        ),
        "{actions:?}"
    );
}

fn phase(volume: &str, phase: &'static str) -> Action {
    Action::VolumePhase {
        volume: volume.into(),
        phase,
        message: None,
    }
}

#[test]
fn volumes_follow_their_claims() {
    let new: PersistentVolume = VolumeBuilder::new("pv1", "1Gi").phase("Pending").build();
    assert_eq!(sync_volume(&new, None), vec![phase("pv1", "Available")]);
    let claim = ClaimBuilder::new("data").bound("pv1", "1Gi").build();
    let bound = VolumeBuilder::new("pv1", "1Gi")
        .claim("data", Some("data-uid"))
        .build();
    assert_eq!(
        sync_volume(&bound, Some(&claim)),
        vec![phase("pv1", "Bound")]
    );
    // The claim's sync completes a binding the claim does not show yet.
    let unbound = ClaimBuilder::new("data").build();
    assert_eq!(sync_volume(&bound, Some(&unbound)), vec![]);
    // A claim of the same name but another uid is not this volume's claim.
    let mut recreated = ClaimBuilder::new("data").build();
    recreated.metadata.uid = Some("new-uid".into());
    assert_eq!(
        sync_volume(&bound, Some(&recreated)),
        vec![phase("pv1", "Released")]
    );
}

#[test]
fn released_volumes_are_reclaimed_by_policy() {
    let retain = VolumeBuilder::new("pv1", "1Gi")
        .claim("data", Some("data-uid"))
        .phase("Bound")
        .build();
    assert_eq!(sync_volume(&retain, None), vec![phase("pv1", "Released")]);
    let provisioned = VolumeBuilder::new("pv1", "1Gi")
        .claim("data", Some("data-uid"))
        .policy("Delete")
        .annotation(ANN_PROVISIONED_BY, "rancher.io/local-path")
        .phase("Bound")
        .build();
    assert_eq!(
        sync_volume(&provisioned, None),
        vec![phase("pv1", "Released")]
    );
    let manual = VolumeBuilder::new("pv1", "1Gi")
        .claim("data", Some("data-uid"))
        .policy("Delete")
        .phase("Released")
        .build();
    let msg = "error getting deleter volume plugin for volume \"pv1\": no deletable volume plugin matched";
    assert_eq!(
        sync_volume(&manual, None),
        vec![
            Action::VolumePhase {
                volume: "pv1".into(),
                phase: "Failed",
                message: Some(msg.into())
            },
            Action::Event {
                target: Target::Volume("pv1".into()),
                warning: true,
                reason: "VolumeFailedDelete",
                message: msg.into()
            },
        ]
    );
}

#[test]
fn a_volume_the_controller_bound_to_a_claim_bound_elsewhere_is_unbound() {
    let claim = ClaimBuilder::new("data").bound("pv2", "1Gi").build();
    let pv = VolumeBuilder::new("pv1", "1Gi")
        .claim("data", Some("data-uid"))
        .annotation(crate::volume::ANN_BOUND_BY_CONTROLLER, "yes")
        .phase("Bound")
        .build();
    assert_eq!(
        sync_volume(&pv, Some(&claim)),
        vec![
            Action::UnbindVolume {
                volume: "pv1".into()
            },
            phase("pv1", "Available"),
        ]
    );
}
