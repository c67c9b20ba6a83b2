//! The node printer: STATUS from the Ready condition plus `SchedulingDisabled`, ROLES from the
//! `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::TablePrinter;
use crate::descriptions::{
    NODE_INFO_CONTAINER_RUNTIME_VERSION, NODE_INFO_KERNEL_VERSION, NODE_INFO_KUBELET_VERSION,
    NODE_INFO_OS_IMAGE, NODE_STATUS_ADDRESSES,
};
use crate::format::{
    age, age_column, arr_at, bool_at, col, name, name_column, obj_at, str_at, wide,
};

pub(crate) static NODE: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        age_column(),
        col("Version", "string", NODE_INFO_KUBELET_VERSION),
        wide("Internal-IP", "string", NODE_STATUS_ADDRESSES),
        wide("External-IP", "string", NODE_STATUS_ADDRESSES),
        wide("OS-Image", "string", NODE_INFO_OS_IMAGE),
        wide("Kernel-Version", "string", NODE_INFO_KERNEL_VERSION),
        wide(
            "Container-Runtime",
            "string",
            NODE_INFO_CONTAINER_RUNTIME_VERSION,
        ),
    ],
    row: node_row,
};

/// The label prefix that marks a node role: `node-role.kubernetes.io/<role>`.
const ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// The older role label: `kubernetes.io/role=<role>`.
const ROLE_LABEL: &str = "kubernetes.io/role";

fn node_row(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let roles = roles(node);
    let info = |field: &str| match str_at(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(node),
        Value::from(status(node)),
        Value::from(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles
        }),
        age(node, now),
        Value::from(str_at(node, "/status/nodeInfo/kubeletVersion")),
        Value::from(address(node, "InternalIP")),
        Value::from(address(node, "ExternalIP")),
        Value::from(info("osImage")),
        Value::from(info("kernelVersion")),
        Value::from(info("containerRuntimeVersion")),
    ]
}

/// `Ready`, `NotReady` or `Unknown` (no Ready condition), then `,SchedulingDisabled` when
/// cordoned.
fn status(node: &Value) -> String {
    let ready = arr_at(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| str_at(c, "/type") == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if bool_at(node, "/spec/unschedulable") {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// The node's roles, sorted and comma-separated.
fn roles(node: &Value) -> String {
    let roles: BTreeSet<&str> = obj_at(node, "/metadata/labels")
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| match key.strip_prefix(ROLE_PREFIX) {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None if key == ROLE_LABEL => value.as_str().filter(|v| !v.is_empty()),
            None => None,
        })
        .collect();
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The first address of the given type, or `<none>`.
fn address(node: &Value, type_: &str) -> String {
    arr_at(node, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == type_)
        .map_or_else(
            || "<none>".to_string(),
            |a| str_at(a, "/address").to_string(),
        )
}
