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
    let columns: Vec<Value> = printer
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
        .collect();
    let rows: Vec<Value> = objects
        .map(|obj| {
            let cells = printer.row(&obj, now);
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

/// The object's metadata as a PartialObjectMetadata.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}
