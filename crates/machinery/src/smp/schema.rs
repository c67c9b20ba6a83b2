//! [`PatchSchema`] implementations: [`JsonSchemaDefinitions`], built from JSON-schema
//! definitions (as k8s-openapi's schemars `JsonSchema` impls or an OpenAPI document give them)
//! plus [`crate::patchmeta::PATCH_METADATA`], and [`EmptySchema`].

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{FieldPatchInfo, PatchSchema, Strategy};
use crate::patchmeta::PATCH_METADATA;

/// A schema that knows no fields: every list is replaced, every map merged.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptySchema;

impl PatchSchema for EmptySchema {
    fn lookup(&self, _def: &str, _field: &str) -> Option<FieldPatchInfo> {
        None
    }
}

#[derive(Debug, Clone, Default)]
struct Definition {
    fields: HashMap<String, FieldPatchInfo>,
    /// The metadata of every key of a map type (`additionalProperties`).
    any_key: Option<FieldPatchInfo>,
}

/// Patch metadata read from JSON-schema definitions.
///
/// Properties are resolved through `$ref` (`#/definitions/NAME`, `#/$defs/NAME` or
/// `#/components/schemas/NAME`), `allOf` of one schema, `items` and `additionalProperties`;
/// inline object schemas become synthetic definitions named `<definition>/<field>`. Patch
/// strategies and merge keys come from `x-kubernetes-patch-strategy` /
/// `x-kubernetes-patch-merge-key` where the schema carries them, and from a patch metadata table
/// (by default [`PATCH_METADATA`]).
///
/// With k8s-openapi's types:
/// ```
/// use k8s_openapi::schemars::SchemaGenerator;
/// use k8rs_machinery::smp::JsonSchemaDefinitions;
///
/// let mut generator = SchemaGenerator::default();
/// generator.subschema_for::<k8s_openapi::api::apps::v1::Deployment>();
/// let schema = JsonSchemaDefinitions::new(generator.definitions());
/// ```
#[derive(Debug, Clone, Default)]
pub struct JsonSchemaDefinitions {
    definitions: HashMap<String, Definition>,
}

impl JsonSchemaDefinitions {
    /// Reads `definitions` (name -> schema) and applies [`PATCH_METADATA`].
    pub fn new(definitions: &Map<String, Value>) -> Self {
        Self::with_patch_metadata(definitions, PATCH_METADATA)
    }

    /// Reads `definitions` and applies `table` (`(definition, field, strategy, merge key)`).
    pub fn with_patch_metadata(
        definitions: &Map<String, Value>,
        table: &[(&str, &str, &str, Option<&str>)],
    ) -> Self {
        let mut out = Self::default();
        for (name, schema) in definitions {
            out.add_definition(name, schema);
        }
        for (def, field, strategy, merge_key) in table {
            let info = out
                .definitions
                .entry((*def).to_owned())
                .or_default()
                .fields
                .entry((*field).to_owned())
                .or_default();
            info.strategy = Strategy::parse(strategy).unwrap_or_default();
            info.merge_key = merge_key.map(str::to_owned);
        }
        out
    }

    /// Reads the definitions of a whole document: `definitions` (OpenAPI v2, draft-07),
    /// `$defs` (draft 2019-09 and later) or `components.schemas` (OpenAPI v3).
    pub fn from_document(document: &Value) -> Self {
        let empty = Map::new();
        let definitions = ["definitions", "$defs"]
            .iter()
            .find_map(|k| document.get(k))
            .or_else(|| document.get("components").and_then(|c| c.get("schemas")))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        Self::new(definitions)
    }

    /// Whether a definition of this name is known.
    pub fn contains(&self, def: &str) -> bool {
        self.definitions.contains_key(def)
    }

    fn add_definition(&mut self, name: &str, schema: &Value) {
        let mut def = Definition::default();
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (field, property) in properties {
                let hint = format!("{name}/{field}");
                let info = self.field_info(&hint, property);
                def.fields.insert(field.clone(), info);
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            def.any_key = Some(self.field_info(&format!("{name}/*"), extra));
        }
        self.definitions.insert(name.to_owned(), def);
    }

    /// The metadata of a property schema; inline object schemas are registered under `hint`.
    fn field_info(&mut self, hint: &str, schema: &Value) -> FieldPatchInfo {
        let schema = unwrap_all_of(schema);
        let mut info = FieldPatchInfo::default();
        let element = match schema.get("items") {
            Some(items) => {
                info.list = true;
                unwrap_all_of(items)
            }
            None => schema,
        };
        info.child = self.type_name(hint, element);
        if let Some(strategy) = schema
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .and_then(Strategy::parse)
        {
            info.strategy = strategy;
        }
        info.merge_key = schema
            .get("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
            .map(str::to_owned);
        info
    }

    /// The definition describing `schema`: its `$ref` target, or a synthetic one for an inline
    /// object or map schema.
    fn type_name(&mut self, hint: &str, schema: &Value) -> Option<String> {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return Some(ref_name(reference));
        }
        let is_object = schema.get("properties").is_some()
            || schema
                .get("additionalProperties")
                .is_some_and(Value::is_object);
        if !is_object {
            return None;
        }
        self.add_definition(hint, schema);
        Some(hint.to_owned())
    }
}

fn unwrap_all_of(schema: &Value) -> &Value {
    match schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([only]) => only,
        _ => schema,
    }
}

/// The definition name a local `$ref` points to (JSON-pointer unescaped).
fn ref_name(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.replace("~1", "/").replace("~0", "~")
}

impl PatchSchema for JsonSchemaDefinitions {
    fn lookup(&self, def: &str, field: &str) -> Option<FieldPatchInfo> {
        let d = self.definitions.get(def)?;
        d.fields.get(field).or(d.any_key.as_ref()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_refs_items_maps_and_extensions() {
        let doc = json!({
            "definitions": {
                "T": {
                    "properties": {
                        "list": {"type": "array", "items": {"$ref": "#/definitions/Item"},
                                 "x-kubernetes-patch-strategy": "merge",
                                 "x-kubernetes-patch-merge-key": "name"},
                        "one": {"allOf": [{"$ref": "#/$defs/Item"}]},
                        "map": {"type": "object", "additionalProperties": {"$ref": "#/definitions/Item"}},
                        "inline": {"type": "object", "properties": {"x": {"type": "array", "items": {"type": "string"}}}},
                        "plain": {"type": "string"}
                    }
                },
                "Item": {"properties": {"name": {"type": "string"}}}
            }
        });
        let s = JsonSchemaDefinitions::from_document(&doc);
        let list = s.lookup("T", "list").expect("list");
        assert!(list.list);
        assert_eq!(list.child.as_deref(), Some("Item"));
        assert_eq!(list.strategy, Strategy::Merge);
        assert_eq!(list.merge_key.as_deref(), Some("name"));
        assert_eq!(
            s.lookup("T", "one").and_then(|i| i.child).as_deref(),
            Some("Item")
        );
        let map = s
            .lookup("T", "map")
            .and_then(|i| i.child)
            .expect("map child");
        assert_eq!(
            s.lookup(&map, "anything").and_then(|i| i.child).as_deref(),
            Some("Item")
        );
        let inline = s
            .lookup("T", "inline")
            .and_then(|i| i.child)
            .expect("inline child");
        assert_eq!(inline, "T/inline");
        assert!(
            s.lookup(&inline, "x")
                .is_some_and(|i| i.list && i.child.is_none())
        );
        assert_eq!(s.lookup("T", "plain"), Some(FieldPatchInfo::default()));
        assert_eq!(s.lookup("T", "missing"), None);
        assert_eq!(s.lookup("Nope", "x"), None);
    }

    #[test]
    fn table_overrides_and_adds() {
        let defs = json!({"P": {"properties": {"volumes": {"type": "array", "items": {"$ref": "#/definitions/V"}}}}});
        let table = [("P", "volumes", "merge,retainKeys", Some("name"))];
        let s =
            JsonSchemaDefinitions::with_patch_metadata(defs.as_object().expect("object"), &table);
        let info = s.lookup("P", "volumes").expect("volumes");
        assert_eq!(info.strategy, Strategy::MergeRetainKeys);
        assert_eq!(info.merge_key.as_deref(), Some("name"));
        assert_eq!(info.child.as_deref(), Some("V"));
    }

    #[test]
    fn ref_names_unescape() {
        assert_eq!(
            ref_name("#/definitions/io.k8s.api.core.v1.Pod"),
            "io.k8s.api.core.v1.Pod"
        );
        assert_eq!(ref_name("#/$defs/a~1b~0c"), "a/b~c");
    }
}
