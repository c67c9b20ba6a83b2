//! Defaulting (upstream's `structuraldefaulting.Default`): a property's `default` is set where
//! the property is absent, or null while the schema is not nullable; defaults of array items and
//! `additionalProperties` values replace non-nullable nulls. Set defaults are themselves
//! defaulted further down.

use serde_json::Value;

use super::node::Node;

/// Applies the defaults of `s` to `x`, in place.
pub(crate) fn apply(x: &mut Value, s: &Node) {
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else {
                    continue;
                };
                let absent = map.get(k).is_none_or(|v| is_non_nullable_null(v, prop));
                if absent {
                    map.insert(k.clone(), d.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    apply(v, prop);
                } else if let Some(add) = s.additional.as_ref().and_then(|a| a.schema()) {
                    replace_null(v, add);
                    apply(v, add);
                }
            }
        }
        Value::Array(items) => {
            let Some(is) = s.items.as_deref() else {
                return;
            };
            for v in items.iter_mut() {
                replace_null(v, is);
                apply(v, is);
            }
        }
        _ => {}
    }
}

fn replace_null(v: &mut Value, s: &Node) {
    if let (true, Some(d)) = (is_non_nullable_null(v, s), &s.default) {
        *v = d.clone();
    }
}

/// A null where the schema is not nullable and has a default to put instead.
fn is_non_nullable_null(v: &Value, s: &Node) -> bool {
    v.is_null() && !s.nullable && s.default.is_some()
}
