//! Persistent volumes and persistent volume claims.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{
    PV_SPEC_ACCESS_MODES, PV_SPEC_CAPACITY, PV_SPEC_CLAIM_REF, PV_SPEC_RECLAIM_POLICY,
    PV_SPEC_VOLUME_MODE, PV_STATUS_PHASE, PV_STATUS_REASON, PVC_SPEC_VOLUME_MODE,
    PVC_SPEC_VOLUME_NAME, PVC_STATUS_ACCESS_MODES, PVC_STATUS_CAPACITY, PVC_STATUS_PHASE,
};
use crate::format::{
    age, age_column, arr_at, col, is_deleting, name, name_column, obj_at, opt_str, str_at, wide,
};
use crate::{TablePrinter, quantity};

/// The annotation that predates `storageClassName` and wins over it.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

pub(crate) static PERSISTENT_VOLUME: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Capacity", "string", PV_SPEC_CAPACITY),
        col("Access Modes", "string", PV_SPEC_ACCESS_MODES),
        col("Reclaim Policy", "string", PV_SPEC_RECLAIM_POLICY),
        col("Status", "string", PV_STATUS_PHASE),
        col("Claim", "string", PV_SPEC_CLAIM_REF),
        col("StorageClass", "string", "StorageClass of the pv"),
        col(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pv",
        ),
        col("Reason", "string", PV_STATUS_REASON),
        age_column(),
        wide("VolumeMode", "string", PV_SPEC_VOLUME_MODE),
    ],
    row: persistent_volume_row,
};

fn persistent_volume_row(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match obj_at(pv, "/spec/claimRef") {
        Some(_) => format!(
            "{}/{}",
            str_at(pv, "/spec/claimRef/namespace"),
            str_at(pv, "/spec/claimRef/name")
        ),
        None => String::new(),
    };
    let class = beta_class(pv).unwrap_or_else(|| str_at(pv, "/spec/storageClassName"));
    vec![
        name(pv),
        Value::from(quantity::cell(pv.pointer("/spec/capacity/storage"))),
        Value::from(access_modes(arr_at(pv, "/spec/accessModes"))),
        Value::from(str_at(pv, "/spec/persistentVolumeReclaimPolicy")),
        Value::from(phase(pv)),
        Value::from(claim),
        Value::from(class),
        Value::from(unset(opt_str(pv, "/spec/volumeAttributesClassName"))),
        Value::from(str_at(pv, "/status/reason")),
        age(pv, now),
        Value::from(unset(opt_str(pv, "/spec/volumeMode"))),
    ]
}

pub(crate) static PERSISTENT_VOLUME_CLAIM: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Status", "string", PVC_STATUS_PHASE),
        col("Volume", "string", PVC_SPEC_VOLUME_NAME),
        col("Capacity", "string", PVC_STATUS_CAPACITY),
        col("Access Modes", "string", PVC_STATUS_ACCESS_MODES),
        col("StorageClass", "string", "StorageClass of the pvc"),
        col(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pvc",
        ),
        age_column(),
        wide("VolumeMode", "string", PVC_SPEC_VOLUME_MODE),
    ],
    row: persistent_volume_claim_row,
};

fn persistent_volume_claim_row(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let volume = str_at(pvc, "/spec/volumeName");
    // Capacity and access modes are only meaningful once the claim is bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity::cell(pvc.pointer("/status/capacity/storage")),
            access_modes(arr_at(pvc, "/status/accessModes")),
        )
    };
    let class = beta_class(pvc)
        .or_else(|| opt_str(pvc, "/spec/storageClassName"))
        .unwrap_or("");
    vec![
        name(pvc),
        Value::from(phase(pvc)),
        Value::from(volume),
        Value::from(capacity),
        Value::from(modes),
        Value::from(class),
        Value::from(unset(opt_str(pvc, "/spec/volumeAttributesClassName"))),
        age(pvc, now),
        Value::from(unset(opt_str(pvc, "/spec/volumeMode"))),
    ]
}

/// The phase, or `Terminating` while the object is being deleted.
fn phase(obj: &Value) -> &str {
    if is_deleting(obj) {
        "Terminating"
    } else {
        str_at(obj, "/status/phase")
    }
}

/// The storage class named by the beta annotation, if any.
fn beta_class(obj: &Value) -> Option<&str> {
    obj_at(obj, "/metadata/annotations")?
        .get(BETA_STORAGE_CLASS)?
        .as_str()
}

/// The value, or `<unset>`.
fn unset(v: Option<&str>) -> String {
    v.unwrap_or("<unset>").to_string()
}

/// Upstream's `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP`, each once, in that order.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    let all = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ];
    let short: Vec<&str> = all
        .iter()
        .filter(|(long, _)| has(long))
        .map(|(_, short)| *short)
        .collect();
    short.join(",")
}
