//! Merging maps: directives on maps, `$retainKeys`, and the per-key walk that dispatches lists
//! to [`super::list`].

use serde_json::{Map, Value};

use super::{
    DELETE_FROM_PRIMITIVE_LIST_PREFIX, DIRECTIVE_MARKER, Error, PatchSchema, RETAIN_KEYS_DIRECTIVE,
    SET_ELEMENT_ORDER_PREFIX, Strategy,
};
use crate::gofmt;

/// The metadata of one field, resolved against the schema (unknown fields get defaults).
pub(super) struct Meta {
    pub child: Option<String>,
    pub strategy: Strategy,
    pub merge_key: String,
}

/// The merge algorithm over one schema.
pub(super) struct Merger<'a> {
    pub schema: &'a dyn PatchSchema,
}

impl Merger<'_> {
    pub(super) fn meta(&self, def: Option<&str>, field: &str) -> Meta {
        let info = def
            .and_then(|d| self.schema.lookup(d, field))
            .unwrap_or_default();
        Meta {
            child: info.child,
            strategy: info.strategy,
            merge_key: info.merge_key.unwrap_or_default(),
        }
    }

    /// Upstream's `mergeMap`.
    pub(super) fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        def: Option<&str>,
    ) -> Result<Map<String, Value>, Error> {
        if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
            let directive = directive.clone();
            return directive_in_map(&directive, patch);
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_set_element_order(&mut original, &mut patch, def)?;
        for (key, value) in patch {
            self.merge_entry(&mut original, key, value, def)?;
        }
        Ok(original)
    }

    fn merge_entry(
        &self,
        original: &mut Map<String, Value>,
        key: String,
        patch_value: Value,
        def: Option<&str>,
    ) -> Result<(), Error> {
        let (key, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?, true)
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            original.remove(&key);
            return Ok(());
        }
        let Some(original_value) = original.remove(&key) else {
            if !delete_list {
                insert_patch_value(original, key, patch_value);
            }
            return Ok(());
        };
        if !same_json_type(&original_value, &patch_value) {
            if delete_list {
                original.insert(key, original_value);
            } else {
                insert_patch_value(original, key, patch_value);
            }
            return Ok(());
        }
        let merged = match (original_value, patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                let meta = self.meta(def, &key);
                if meta.strategy == Strategy::Replace {
                    Value::Object(p)
                } else {
                    Value::Object(self.merge_map(o, p, meta.child.as_deref())?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                let meta = self.meta(def, &key);
                if meta.strategy.merges() || delete_list {
                    let child = meta.child.as_deref();
                    Value::Array(self.merge_slice(o, p, child, &meta.merge_key, delete_list)?)
                } else {
                    Value::Array(p)
                }
            }
            (_, p) => p,
        };
        original.insert(key, merged);
        Ok(())
    }
}

/// `$patch` on a map: `replace` takes the patch (minus the directive), `delete` empties it.
fn directive_in_map(
    directive: &Value,
    mut patch: Map<String, Value>,
) -> Result<Map<String, Value>, Error> {
    match directive.as_str() {
        Some("replace") => {
            patch.remove(DIRECTIVE_MARKER);
            Ok(patch)
        }
        Some("delete") => Ok(Map::new()),
        _ => Err(Error::BadPatchType {
            patch_type: gofmt::v(directive),
            map: gofmt::v(&Value::Object(patch)),
        }),
    }
}

/// Upstream's `applyRetainKeysDirective` (when applying a patch): drop keys of `original` not
/// listed, after checking the patch only sets listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), Error> {
    let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(Error::BadPatchFormatForRetainKeys);
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(Error::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// The field name after `<prefix>/`.
pub(super) fn extract_key(key: &str, prefix: &str) -> Result<String, Error> {
    match key.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_owned()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX => {
            Err(Error::BadPatchFormatForPrimitiveList)
        }
        _ => Err(Error::BadPatchFormatForSetElementOrderList),
    }
}

/// Stores a patch value for a key the original lacks (or holds with another type): nulls
/// dropped, directives removed, and nothing stored if the value itself is a directive.
fn insert_patch_value(original: &mut Map<String, Value>, key: String, mut value: Value) {
    discard_nulls(&mut value);
    if let Some(value) = remove_directives(value) {
        original.insert(key, value);
    }
}

fn discard_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Upstream's `removeDirectives`: maps holding `$patch` are dropped (`None`), recursively.
pub(super) fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            let kept = map
                .into_iter()
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(kept))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// Whether two values have the same Go type once decoded.
pub(super) fn same_json_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}
