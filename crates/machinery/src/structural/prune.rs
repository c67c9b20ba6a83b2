//! Pruning (upstream's `pruning.Prune`): object fields the schema does not specify are dropped,
//! except under `x-kubernetes-preserve-unknown-fields` and the `apiVersion`, `kind` and
//! `metadata` of a resource (the root or an `x-kubernetes-embedded-resource`).

use serde_json::Value;

use super::node::Node;

const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Prunes `x` against `s` (`root`: `s` describes a whole resource); returns the removed paths
/// as upstream prints them (`spec.foo`, `spec.items[0].bar`).
pub(crate) fn prune(x: &mut Value, s: &Node, root: bool) -> Vec<String> {
    let mut out = Vec::new();
    prune_value(x, Some(s), root, "", &mut out);
    out
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `resource`: `x` is a whole resource even if `s` does not say so (the root).
fn prune_value(x: &mut Value, s: Option<&Node>, resource: bool, path: &str, out: &mut Vec<String>) {
    if let Some(s) = s.filter(|s| s.preserves_unknown()) {
        skip_prune(x, s, resource, path, out);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                out.extend(map.keys().map(|k| child(path, k)));
                map.clear();
                return;
            };
            let mut removed = Vec::new();
            for (k, v) in map.iter_mut() {
                if (s.embedded || resource) && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let sub = child(path, k);
                if let Some(prop) = s.properties.get(k) {
                    prune_value(v, Some(prop), false, &sub, out);
                } else if let Some(a) = &s.additional {
                    prune_value(v, a.schema(), false, &sub, out);
                } else {
                    removed.push(k.clone());
                }
            }
            for k in removed {
                map.remove(&k);
                out.push(child(path, &k));
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                let sub = format!("{path}[{i}]");
                prune_value(v, item_schema, false, &sub, out);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones are pruned by
/// their own schemas.
fn skip_prune(x: &mut Value, s: &Node, resource: bool, path: &str, out: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if (s.embedded || resource) && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let sub = child(path, k);
                if let Some(prop) = s.properties.get(k) {
                    prune_value(v, Some(prop), false, &sub, out);
                } else if let Some(a) = &s.additional {
                    prune_value(v, a.schema(), false, &sub, out);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = s.items.as_deref() else {
                return;
            };
            for (i, v) in items.iter_mut().enumerate() {
                let sub = format!("{path}[{i}]");
                skip_prune(v, item_schema, false, &sub, out);
            }
        }
        _ => {}
    }
}
