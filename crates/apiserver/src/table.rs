//! Server-side printing: lists, objects and watch events as `meta.k8s.io/v1` Tables with
//! upstream's columns, and as PartialObjectMetadata.

use serde_json::{Value, json};

use crate::registry::ResourceDef;

/// A Table of `objects`. `include` is the `includeObject` policy: `None` (no object),
/// `Object` (the whole object) or, by default, `Metadata` (PartialObjectMetadata).
pub fn table(
    def: &ResourceDef,
    objects: impl Iterator<Item = Value>,
    revision: Option<i64>,
    continue_token: &str,
    include: Option<&str>,
) -> Value {
    let printer = k8rs_printers::printer_for(def.group, def.plural)
        .unwrap_or(k8rs_printers::default_printer());
    let now = chrono::Utc::now();
    let custom = def
        .custom
        .as_ref()
        .filter(|c| !c.printer_columns.is_empty());
    let columns: Vec<Value> = match custom {
        Some(c) => custom_columns(&c.printer_columns),
        None => printer
            .columns()
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    };
    let rows: Vec<Value> = objects
        .map(|obj| {
            let cells = match custom {
                Some(c) => custom_row(&c.printer_columns, &obj, now),
                None => printer.row(&obj, now),
            };
            let object = match include {
                Some("None") => Value::Null,
                Some("Object") => obj,
                _ => partial(&obj),
            };
            let mut row = json!({"cells": cells});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rev) = revision {
        meta["resourceVersion"] = rev.to_string().into();
    }
    if !continue_token.is_empty() {
        meta["continue"] = continue_token.into();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A custom resource's columns: the name, then its definition's `additionalPrinterColumns`.
fn custom_columns(printer_columns: &[Value]) -> Vec<Value> {
    let name = json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0});
    std::iter::once(name)
        .chain(printer_columns.iter().map(|c| {
            json!({
                "name": c["name"],
                "type": c["type"],
                "format": c["format"].as_str().unwrap_or_default(),
                "description": c["description"].as_str().unwrap_or_default(),
                "priority": c["priority"].as_i64().unwrap_or(0),
            })
        }))
        .collect()
}

/// A custom resource's cells: simple JSON paths (`.spec.replicas`, `.status.items[0].name`);
/// `date` columns print as ages, as upstream.
fn custom_row(
    printer_columns: &[Value],
    obj: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Value> {
    let name = obj["metadata"]["name"].clone();
    std::iter::once(name)
        .chain(printer_columns.iter().map(|c| {
            let value = json_path(obj, c["jsonPath"].as_str().unwrap_or_default());
            match (c["type"].as_str(), value.as_str()) {
                (Some("date"), Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| {
                        k8rs_printers::human_duration(now - t.with_timezone(&chrono::Utc)).into()
                    })
                    .unwrap_or(Value::Null),
                _ => value,
            }
        }))
        .collect()
}

/// The value at a simple JSON path, or null (also for the filter expressions it does not read).
fn json_path(obj: &Value, path: &str) -> Value {
    let mut at = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (field, indexes) = part.split_once('[').unwrap_or((part, ""));
        if !field.is_empty() {
            at = &at[field];
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            match index.trim_end_matches(']').parse::<usize>() {
                Ok(i) => at = &at[i],
                Err(_) => return Value::Null,
            }
        }
    }
    at.clone()
}

/// The object's metadata as a PartialObjectMetadata.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}
