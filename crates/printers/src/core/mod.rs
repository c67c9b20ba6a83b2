//! Printers for the core (`""` group, `v1`) resources.

mod event;
mod node;
mod pod;
mod service;
mod volume;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{
    CONFIG_MAP_DATA, RC_SPEC_REPLICAS, RC_SPEC_SELECTOR, RC_STATUS_READY_REPLICAS,
    RC_STATUS_REPLICAS, SECRET_DATA, SECRET_TYPE, SERVICE_ACCOUNT_SECRETS,
};
use crate::format::{
    CONTAINERS_DESC, IMAGES_DESC, age, age_column, arr_at, col, container_cells, format_labels,
    int_at, map_len, name, name_column, obj_at, str_at, wide,
};
use crate::{Printer, TablePrinter, default_printer, quantity};

pub(crate) use event::EVENT;

/// The printer for a core resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    let p: &'static dyn Printer = match resource {
        "pods" => &pod::POD,
        "podtemplates" => &POD_TEMPLATE,
        "replicationcontrollers" => &REPLICATION_CONTROLLER,
        "services" => &service::SERVICE,
        "endpoints" => &service::ENDPOINTS,
        "nodes" => &node::NODE,
        "namespaces" => &NAMESPACE,
        "events" => &EVENT,
        "secrets" => &SECRET,
        "serviceaccounts" => &SERVICE_ACCOUNT,
        "configmaps" => &CONFIG_MAP,
        "persistentvolumes" => &volume::PERSISTENT_VOLUME,
        "persistentvolumeclaims" => &volume::PERSISTENT_VOLUME_CLAIM,
        "resourcequotas" => &RESOURCE_QUOTA,
        "componentstatuses" => &COMPONENT_STATUS,
        "limitranges" => default_printer(),
        _ => return None,
    };
    Some(p)
}

// ---------------------------------------------------------------------------------------------
// podtemplates

static POD_TEMPLATE: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Containers", "string", CONTAINERS_DESC),
        col("Images", "string", IMAGES_DESC),
        col("Pod Labels", "string", "The labels for the pod template."),
    ],
    row: pod_template_row,
};

fn pod_template_row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(arr_at(obj, "/template/spec/containers"));
    let labels = format_labels(obj_at(obj, "/template/metadata/labels"));
    vec![name(obj), names, images, Value::from(labels)]
}

// ---------------------------------------------------------------------------------------------
// replicationcontrollers

static REPLICATION_CONTROLLER: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Desired", "integer", RC_SPEC_REPLICAS),
        col("Current", "integer", RC_STATUS_REPLICAS),
        col("Ready", "integer", RC_STATUS_READY_REPLICAS),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
        wide("Selector", "string", RC_SPEC_SELECTOR),
    ],
    row: replication_controller_row,
};

fn replication_controller_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(arr_at(obj, "/spec/template/spec/containers"));
    vec![
        name(obj),
        Value::from(int_at(obj, "/spec/replicas")),
        Value::from(int_at(obj, "/status/replicas")),
        Value::from(int_at(obj, "/status/readyReplicas")),
        age(obj, now),
        names,
        images,
        Value::from(format_labels(obj_at(obj, "/spec/selector"))),
    ]
}

// ---------------------------------------------------------------------------------------------
// namespaces, secrets, serviceaccounts, configmaps

static NAMESPACE: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Status", "string", "The status of the namespace"),
        age_column(),
    ],
    row: namespace_row,
};

fn namespace_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/status/phase")),
        age(obj, now),
    ]
}

static SECRET: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Type", "string", SECRET_TYPE),
        col("Data", "string", SECRET_DATA),
        age_column(),
    ],
    row: secret_row,
};

fn secret_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // `stringData` is merged into `data` when the object is decoded, so count both.
    let data = obj_at(obj, "/data");
    let extra = obj_at(obj, "/stringData")
        .into_iter()
        .flatten()
        .filter(|(k, _)| !data.is_some_and(|d| d.contains_key(*k)))
        .count();
    let count = data.map_or(0, |d| d.len()) + extra;
    vec![
        name(obj),
        Value::from(str_at(obj, "/type")),
        Value::from(count),
        age(obj, now),
    ]
}

static SERVICE_ACCOUNT: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Secrets", "string", SERVICE_ACCOUNT_SECRETS),
        age_column(),
    ],
    row: service_account_row,
};

fn service_account_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let secrets = arr_at(obj, "/secrets").len();
    vec![name(obj), Value::from(secrets), age(obj, now)]
}

static CONFIG_MAP: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Data", "string", CONFIG_MAP_DATA),
        age_column(),
    ],
    row: config_map_row,
};

fn config_map_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let count = map_len(obj, "/data") + map_len(obj, "/binaryData");
    vec![name(obj), Value::from(count), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------
// resourcequotas

static RESOURCE_QUOTA: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col(
            "Request",
            "string",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        col(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
        age_column(),
    ],
    row: resource_quota_row,
};

/// `resource: used/hard` for each hard limit, sorted by resource name; `limits.*` resources go
/// to the Limit column, the rest to Request.
fn resource_quota_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut resources: Vec<&String> = obj_at(obj, "/status/hard")
        .into_iter()
        .flat_map(|m| m.keys())
        .collect();
    resources.sort();
    let used = obj_at(obj, "/status/used");
    let hard = obj_at(obj, "/status/hard");
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let used_q = quantity::cell(used.and_then(|m| m.get(resource)));
        let hard_q = quantity::cell(hard.and_then(|m| m.get(resource)));
        let entry = format!("{resource}: {used_q}/{hard_q}");
        if resource.starts_with("limits.") {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name(obj),
        Value::from(requests.join(", ")),
        Value::from(limits.join(", ")),
        age(obj, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// componentstatuses

static COMPONENT_STATUS: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Status", "string", "Status of the component conditions"),
        col("Message", "string", "Message of the component conditions"),
        col("Error", "string", "Error of the component conditions"),
    ],
    row: component_status_row,
};

fn component_status_row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let healthy = arr_at(obj, "/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => {
            let status = if str_at(c, "/status") == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            };
            (status, str_at(c, "/message"), str_at(c, "/error"))
        }
        None => ("Unknown", "", ""),
    };
    vec![
        name(obj),
        Value::from(status),
        Value::from(message),
        Value::from(error),
    ]
}

#[cfg(test)]
mod tests;
