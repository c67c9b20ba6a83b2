//! Printers for `storage.k8s.io/v1`: storageclasses (with the `(default)` marker), csidrivers,
//! csinodes, volumeattachments.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{
    CSI_DRIVER_ATTACH_REQUIRED, CSI_DRIVER_MODES, CSI_DRIVER_POD_INFO_ON_MOUNT,
    CSI_DRIVER_REQUIRES_REPUBLISH, CSI_DRIVER_STORAGE_CAPACITY, CSI_DRIVER_TOKEN_REQUESTS,
    STORAGE_CLASS_ALLOW_EXPANSION, STORAGE_CLASS_BINDING_MODE, STORAGE_CLASS_PROVISIONER,
    STORAGE_CLASS_RECLAIM_POLICY, VOLUME_ATTACHMENT_SOURCE_PV, VOLUME_ATTACHMENT_SPEC_ATTACHER,
    VOLUME_ATTACHMENT_SPEC_NODE_NAME, VOLUME_ATTACHMENT_STATUS_ATTACHED,
};
use crate::format::{
    age, age_column, arr_at, bool_at, col, name, name_column, obj_at, opt_bool, opt_str, str_at,
};
use crate::{Column, Printer, TablePrinter};

/// The printer for a `storage.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    let p: &'static dyn Printer = match resource {
        "storageclasses" => &STORAGE_CLASS,
        "csidrivers" => &CSI_DRIVER,
        "csinodes" => &CSI_NODE,
        "volumeattachments" => &VOLUME_ATTACHMENT,
        _ => return None,
    };
    Some(p)
}

/// The annotations that mark the default storage class (GA and beta).
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

static STORAGE_CLASS: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Provisioner", "string", STORAGE_CLASS_PROVISIONER),
        col("ReclaimPolicy", "string", STORAGE_CLASS_RECLAIM_POLICY),
        col("VolumeBindingMode", "string", STORAGE_CLASS_BINDING_MODE),
        col(
            "AllowVolumeExpansion",
            "string",
            STORAGE_CLASS_ALLOW_EXPANSION,
        ),
        age_column(),
    ],
    row: storage_class_row,
};

fn storage_class_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut class_name = str_at(obj, "/metadata/name").to_string();
    if is_default_class(obj) {
        class_name.push_str(" (default)");
    }
    vec![
        Value::from(class_name),
        Value::from(str_at(obj, "/provisioner")),
        Value::from(opt_str(obj, "/reclaimPolicy").unwrap_or("Delete")),
        Value::from(opt_str(obj, "/volumeBindingMode").unwrap_or("Immediate")),
        Value::from(bool_at(obj, "/allowVolumeExpansion")),
        age(obj, now),
    ]
}

/// Whether an annotation marks the class as the cluster default.
fn is_default_class(obj: &Value) -> bool {
    let Some(annotations) = obj_at(obj, "/metadata/annotations") else {
        return false;
    };
    DEFAULT_CLASS_ANNOTATIONS
        .iter()
        .any(|key| annotations.get(*key).and_then(Value::as_str) == Some("true"))
}

static CSI_DRIVER: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("AttachRequired", "boolean", CSI_DRIVER_ATTACH_REQUIRED),
        col("PodInfoOnMount", "boolean", CSI_DRIVER_POD_INFO_ON_MOUNT),
        col("StorageCapacity", "boolean", CSI_DRIVER_STORAGE_CAPACITY),
        col("TokenRequests", "string", CSI_DRIVER_TOKEN_REQUESTS),
        col(
            "RequiresRepublish",
            "boolean",
            CSI_DRIVER_REQUIRES_REPUBLISH,
        ),
        col("Modes", "string", CSI_DRIVER_MODES),
        age_column(),
    ],
    row: csi_driver_row,
};

fn csi_driver_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let token_requests = match obj.pointer("/spec/tokenRequests") {
        Some(Value::Array(requests)) => {
            let audiences: Vec<&str> = requests.iter().map(|t| str_at(t, "/audience")).collect();
            audiences.join(",")
        }
        _ => "<unset>".to_string(),
    };
    let modes: Vec<&str> = arr_at(obj, "/spec/volumeLifecycleModes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let modes = if modes.is_empty() {
        "<none>".to_string()
    } else {
        modes.join(",")
    };
    vec![
        name(obj),
        Value::from(opt_bool(obj, "/spec/attachRequired").unwrap_or(true)),
        Value::from(bool_at(obj, "/spec/podInfoOnMount")),
        Value::from(bool_at(obj, "/spec/storageCapacity")),
        Value::from(token_requests),
        Value::from(bool_at(obj, "/spec/requiresRepublish")),
        Value::from(modes),
        age(obj, now),
    ]
}

static CSI_NODE: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col(
            "Drivers",
            "integer",
            "Drivers indicates the number of CSI drivers registered on the node",
        ),
        age_column(),
    ],
    row: csi_node_row,
};

fn csi_node_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let drivers = arr_at(obj, "/spec/drivers").len();
    vec![name(obj), Value::from(drivers), age(obj, now)]
}

static VOLUME_ATTACHMENT: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        Column {
            format: "name",
            ..col("Attacher", "string", VOLUME_ATTACHMENT_SPEC_ATTACHER)
        },
        col("PV", "string", VOLUME_ATTACHMENT_SOURCE_PV),
        col("Node", "string", VOLUME_ATTACHMENT_SPEC_NODE_NAME),
        col("Attached", "boolean", VOLUME_ATTACHMENT_STATUS_ATTACHED),
        age_column(),
    ],
    row: volume_attachment_row,
};

fn volume_attachment_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/attacher")),
        Value::from(str_at(obj, "/spec/source/persistentVolumeName")),
        Value::from(str_at(obj, "/spec/nodeName")),
        Value::from(bool_at(obj, "/status/attached")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn storage_classes_with_default_marker() {
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": ago(86400 * 9),
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true});
        assert_eq!(
            print("storage.k8s.io", "storageclasses", &sc),
            json!([
                "local-path (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                true,
                "9d"
            ])
        );
        let plain = json!({"metadata": {"name": "slow", "annotations":
            {"storageclass.kubernetes.io/is-default-class": "false",
             "storageclass.beta.kubernetes.io/is-default-class": "yes"}},
            "provisioner": "example.com/nfs"});
        assert_eq!(
            print("storage.k8s.io", "storageclasses", &plain),
            json!([
                "slow",
                "example.com/nfs",
                "Delete",
                "Immediate",
                false,
                "<unknown>"
            ])
        );
        let beta = json!({"metadata": {"name": "old", "annotations":
            {"storageclass.beta.kubernetes.io/is-default-class": "true"}}});
        assert_eq!(
            print("storage.k8s.io", "storageclasses", &beta)[0],
            "old (default)"
        );
    }

    #[test]
    fn csi_objects_and_attachments() {
        let driver = json!({"metadata": {"name": "csi.example.com"},
            "spec": {"podInfoOnMount": true, "tokenRequests": [{"audience": "vault"}],
                     "volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        assert_eq!(
            print("storage.k8s.io", "csidrivers", &driver),
            json!([
                "csi.example.com",
                true,
                true,
                false,
                "vault",
                false,
                "Persistent,Ephemeral",
                "<unknown>"
            ])
        );
        let bare = json!({"metadata": {"name": "d"}, "spec": {"attachRequired": false}});
        assert_eq!(
            print("storage.k8s.io", "csidrivers", &bare),
            json!([
                "d",
                false,
                false,
                false,
                "<unset>",
                false,
                "<none>",
                "<unknown>"
            ])
        );
        let node = json!({"metadata": {"name": "n1"}, "spec": {"drivers": [{"name": "d"}]}});
        assert_eq!(
            print("storage.k8s.io", "csinodes", &node),
            json!(["n1", 1, "<unknown>"])
        );
        let va = json!({"metadata": {"name": "csi-123", "creationTimestamp": ago(20)},
            "spec": {"attacher": "csi.example.com", "nodeName": "n1",
                     "source": {"persistentVolumeName": "pv-1"}},
            "status": {"attached": true}});
        assert_eq!(
            print("storage.k8s.io", "volumeattachments", &va),
            json!(["csi-123", "csi.example.com", "pv-1", "n1", true, "20s"])
        );
    }
}
