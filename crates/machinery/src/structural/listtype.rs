//! The checks upstream runs beside schema validation: embedded resources carry `apiVersion` and
//! `kind` (`objectmeta.Validate`), and `x-kubernetes-list-type` `set`/`map` lists have unique
//! items/keys (`listtype.ValidateListSetsAndMaps`). Paths are `field.Path`s: `spec.ports[1]`,
//! `spec.selector[app]` for map values.

use serde_json::{Map, Value};

use super::node::Node;
use super::validate::json_eq;
use crate::validation::{FieldError, Path};

/// Walks `x` (described by `s`, at `p`) and returns the errors in order.
pub(crate) fn check(s: &Node, x: &Value, p: &Path, errs: &mut Vec<FieldError>) {
    match x {
        Value::Object(map) => object(s, map, p, errs),
        Value::Array(items) => array(s, items, p, errs),
        _ => {}
    }
}

fn object(s: &Node, map: &Map<String, Value>, p: &Path, errs: &mut Vec<FieldError>) {
    if s.embedded {
        for key in ["apiVersion", "kind"] {
            if !map.contains_key(key) {
                errs.push(FieldError::required(&p.child(key), "must not be empty"));
            }
        }
    }
    let add = s.additional.as_ref().and_then(|a| a.schema());
    for (k, v) in map {
        if let Some(prop) = s.properties.get(k) {
            check(prop, v, &p.child(k), errs);
        } else if let Some(add) = add {
            check(add, v, &p.key(k), errs);
        }
    }
}

fn array(s: &Node, items: &[Value], p: &Path, errs: &mut Vec<FieldError>) {
    match s.list_type.as_deref() {
        Some("set") => {
            for i in second_occurrences(items) {
                errs.push(FieldError::duplicate(&p.index(i), items[i].clone()));
            }
        }
        Some("map") => list_map(s, items, p, errs),
        _ => {}
    }
    if let Some(is) = &s.items {
        for (i, x) in items.iter().enumerate() {
            check(is, x, &p.index(i), errs);
        }
    }
}

/// The indices where an item is seen for the second time (third and later are not reported).
fn second_occurrences(items: &[Value]) -> Vec<usize> {
    let mut seen: Vec<(&Value, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, x) in items.iter().enumerate() {
        match seen.iter_mut().find(|(v, _)| json_eq(v, x)) {
            Some((_, times)) => {
                *times += 1;
                if *times == 2 {
                    out.push(i);
                }
            }
            None => seen.push((x, 1)),
        }
    }
    out
}

fn list_map(s: &Node, items: &[Value], p: &Path, errs: &mut Vec<FieldError>) {
    if let Some((i, x)) = items
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_null() && !x.is_object())
    {
        errs.push(FieldError::invalid(
            &p.index(i),
            x.clone(),
            "must be an object for an array of list-type map",
        ));
        return;
    }
    let keys: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            for k in &s.list_map_keys {
                if let Some(v) = x.get(k) {
                    key.insert(k.clone(), v.clone());
                }
            }
            Value::Object(key)
        })
        .collect();
    for i in second_occurrences(&keys) {
        errs.push(FieldError::duplicate(&p.index(i), keys[i].clone()));
    }
}
