//! Provisioning and deletion decisions over fixtures.

use std::path::Path;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::*;
use crate::testutil::{ClaimBuilder, VolumeBuilder, class};

fn ours(claim: ClaimBuilder) -> ClaimBuilder {
    claim
        .class("local-path")
        .annotation(ANN_STORAGE_PROVISIONER, PROVISIONER)
}

fn decide_for(claim: &PersistentVolumeClaim, mode: &str) -> Decision {
    let class = class("local-path", PROVISIONER, mode);
    decide(
        claim,
        Some(&class),
        false,
        Path::new("/var/lib/k8rs/storage"),
    )
}

#[test]
fn provisions_a_host_path_volume_on_the_selected_node() {
    let claim = ours(ClaimBuilder::new("data").request("3Gi"))
        .annotation(ANN_SELECTED_NODE, "node-1")
        .build();
    let Decision::Provision(pv) = decide_for(&claim, "WaitForFirstConsumer") else {
        panic!("expected a volume");
    };
    let want = serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": "pvc-data-uid",
            "annotations": {
                "pv.kubernetes.io/provisioned-by": "rancher.io/local-path",
                "local.path.provisioner/selected-node": "node-1",
            },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "3Gi"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": "default", "name": "data", "uid": "data-uid",
                "resourceVersion": "1",
            },
            "hostPath": {
                "path": "/var/lib/k8rs/storage/pvc-data-uid_default_data",
                "type": "DirectoryOrCreate",
            },
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]},
            ]}]}},
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "local-path",
            "volumeMode": "Filesystem",
        },
    });
    assert_eq!(serde_json::to_value(&*pv).ok(), Some(want));
}

#[test]
fn waits_for_the_handover_and_the_node() {
    let unannotated = ClaimBuilder::new("data")
        .class("local-path")
        .annotation(ANN_SELECTED_NODE, "n1")
        .build();
    assert_eq!(
        decide_for(&unannotated, "WaitForFirstConsumer"),
        Decision::Nothing
    );
    let no_node = ours(ClaimBuilder::new("data")).build();
    assert_eq!(
        decide_for(&no_node, "WaitForFirstConsumer"),
        Decision::Nothing
    );
    assert_eq!(
        decide_for(&no_node, "Immediate"),
        Decision::Fail(
            "failed to provision volume with StorageClass \"local-path\": configuration error, \
             no node was specified"
                .into()
        )
    );
    let bound = ours(ClaimBuilder::new("data"))
        .annotation(ANN_SELECTED_NODE, "n1")
        .volume("pv")
        .build();
    assert_eq!(
        decide_for(&bound, "WaitForFirstConsumer"),
        Decision::Nothing
    );
    let selected = ours(ClaimBuilder::new("data"))
        .annotation(ANN_SELECTED_NODE, "n1")
        .build();
    let other = class("other", "example.com/csi", "Immediate");
    let root = Path::new("/r");
    assert_eq!(
        decide(&selected, Some(&other), false, root),
        Decision::Nothing
    );
    let wffc = class("local-path", PROVISIONER, "WaitForFirstConsumer");
    assert_eq!(
        decide(&selected, Some(&wffc), true, root),
        Decision::Nothing
    );
    let shared = ours(ClaimBuilder::new("data").modes(&["ReadWriteMany"]))
        .annotation(ANN_SELECTED_NODE, "n1")
        .build();
    assert!(matches!(
        decide_for(&shared, "WaitForFirstConsumer"),
        Decision::Fail(m) if m.ends_with("access modes")
    ));
}

#[test]
fn deletes_only_its_released_delete_volumes() {
    let released = || {
        VolumeBuilder::new("pvc-x", "1Gi")
            .policy("Delete")
            .annotation(ANN_PROVISIONED_BY, PROVISIONER)
            .phase("Released")
    };
    assert!(should_delete(&released().build()));
    assert!(!should_delete(&released().phase("Bound").build()));
    assert!(!should_delete(&released().policy("Retain").build()));
    let foreign = released()
        .annotation(ANN_PROVISIONED_BY, "example.com/csi")
        .build();
    assert!(!should_delete(&foreign));
}

#[test]
fn the_default_class_is_k3s_local_path() {
    let sc = serde_json::to_value(default_storage_class()).ok();
    assert_eq!(
        sc,
        Some(serde_json::json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "local-path",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }))
    );
}
