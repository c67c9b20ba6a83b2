//! Whether a schema is structural (upstream's `ValidateStructural`: invariants and completeness),
//! with upstream's paths and messages.

use serde_json::{Value, json};

use super::node::Node;
use crate::validation::{FieldError, Path};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// All structural-schema errors of `root` (at `at`), sorted by message as upstream sorts them.
pub(crate) fn structural_errors(root: &Node, at: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    invariants(root, Level::Root, at, &mut errs);
    completeness(root, at, at, &mut errs);
    errs.sort_by_key(ToString::to_string);
    errs
}

fn invariants(s: &Node, lvl: Level, p: &Path, errs: &mut Vec<FieldError>) {
    if s.ty == "array" && s.items.is_none() {
        errs.push(FieldError::required(&p.child("items"), "must be specified"));
    }
    if let Some(items) = &s.items {
        invariants(items, Level::Item, &p.child("items"), errs);
    }
    for (k, v) in &s.properties {
        invariants(v, Level::Field, &p.child("properties").key(k), errs);
    }
    if let Some(a) = &s.additional {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                &p.child("additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Some(schema) = a.schema() {
            invariants(schema, Level::Field, &p.child("additionalProperties"), errs);
        }
    }
    extensions(s, p, errs);
    value_validation(
        s,
        is_int_or_string_any_of(s),
        first_all_of_int_or_string(s),
        p,
        errs,
    );
    types(s, lvl, p, errs);
    meta_invariants(s, lvl, p, errs);
    if s.embedded && !s.preserves_unknown() && s.properties.is_empty() {
        errs.push(FieldError::required(
            &p.child("properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

fn extensions(s: &Node, p: &Path, errs: &mut Vec<FieldError>) {
    if s.int_or_string && s.preserves_unknown() {
        errs.push(FieldError::invalid(
            &p.child("x-kubernetes-preserve-unknown-fields"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if s.int_or_string && s.embedded {
        errs.push(FieldError::invalid(
            &p.child("x-kubernetes-embedded-resource"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
}

fn types(s: &Node, lvl: Level, p: &Path, errs: &mut Vec<FieldError>) {
    let msg = "must be object if x-kubernetes-embedded-resource is true";
    if s.embedded && s.ty != "object" {
        if s.ty.is_empty() {
            errs.push(FieldError::required(&p.child("type"), msg));
        } else {
            errs.push(FieldError::invalid(&p.child("type"), s.ty.clone(), msg));
        }
    } else if s.ty.is_empty() && !s.int_or_string && !s.preserves_unknown() {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(&p.child("type"), detail));
    }
    if s.embedded && s.additional.is_some() {
        errs.push(FieldError::forbidden(
            &p.child("additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !s.ty.is_empty() && s.ty != "object" {
        errs.push(FieldError::invalid(
            &p.child("type"),
            s.ty.clone(),
            "must be object at the root",
        ));
    }
}

/// The rules about `apiVersion`, `kind` and `metadata` of a resource (root or embedded).
fn meta_invariants(s: &Node, lvl: Level, p: &Path, errs: &mut Vec<FieldError>) {
    let check = lvl == Level::Root || s.embedded;
    for key in ["kind", "apiVersion"] {
        if let Some(f) = s.properties.get(key).filter(|f| check && f.ty != "string") {
            let at = p.child("properties").key(key).child("type");
            errs.push(FieldError::invalid(&at, f.ty.clone(), "must be string"));
        }
    }
    let Some(meta) = s.properties.get("metadata") else {
        return;
    };
    let at = p.child("properties").key("metadata");
    if check && meta.ty != "object" {
        errs.push(FieldError::invalid(
            &at.child("type"),
            meta.ty.clone(),
            "must be object",
        ));
    }
    if lvl == Level::Root && !metadata_schema_is_trivial(&meta.raw) {
        errs.push(FieldError::forbidden(
            &at,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

/// Whether a root `metadata` schema says nothing beyond its type, a default and the schemas of
/// `name` and `generateName`.
fn metadata_schema_is_trivial(raw: &Value) -> bool {
    let Some(obj) = raw.as_object() else {
        return true;
    };
    obj.iter().all(|(k, v)| match k.as_str() {
        "type" | "default" => true,
        "properties" => v.as_object().is_none_or(|props| {
            let names =
                props.contains_key("name") as usize + props.contains_key("generateName") as usize;
            props.is_empty() || names == props.len()
        }),
        _ => is_zero(v),
    })
}

/// Whether a JSON value is what Go would see as a zero value.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

fn int_or_string_pair(any_of: &[Node]) -> bool {
    any_of.len() == 2
        && any_of[0].raw == json!({"type": "integer"})
        && any_of[1].raw == json!({"type": "string"})
}

fn is_int_or_string_any_of(s: &Node) -> bool {
    int_or_string_pair(&s.any_of)
}

fn first_all_of_int_or_string(s: &Node) -> bool {
    s.all_of
        .first()
        .is_some_and(|n| int_or_string_pair(&n.any_of))
}

/// `validateValueValidation`: the junctors under a node.
fn value_validation(
    s: &Node,
    skip_any_of: bool,
    skip_first_all_of: bool,
    p: &Path,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, v) in s.any_of.iter().enumerate() {
            nested(v, false, &p.child("anyOf").index(i), errs);
        }
    }
    for (i, v) in s.all_of.iter().enumerate() {
        nested(
            v,
            skip_first_all_of && i == 0,
            &p.child("allOf").index(i),
            errs,
        );
    }
    for (i, v) in s.one_of.iter().enumerate() {
        nested(v, false, &p.child("oneOf").index(i), errs);
    }
    if let Some(v) = &s.not {
        nested(v, false, &p.child("not"), errs);
    }
}

/// `validateNestedValueValidation`: a schema under a junctor may only carry value validations.
fn nested(v: &Node, skip_any_of: bool, p: &Path, errs: &mut Vec<FieldError>) {
    value_validation(v, skip_any_of, false, p, errs);
    if let Some(items) = &v.items {
        nested(items, false, &p.child("items"), errs);
    }
    for (k, f) in &v.properties {
        nested(f, false, &p.child("properties").key(k), errs);
    }
    let forbidden: [(bool, &str, &str); 14] = [
        (!v.ty.is_empty(), "type", "must be empty to be structural"),
        (
            v.additional.is_some(),
            "additionalProperties",
            "must be undefined to be structural",
        ),
        (
            v.default.is_some(),
            "default",
            "must be undefined to be structural",
        ),
        (v.has_title, "title", "must be empty to be structural"),
        (
            v.has_description,
            "description",
            "must be empty to be structural",
        ),
        (v.nullable, "nullable", "must be false to be structural"),
        (
            v.has_external_docs,
            "externalDocs",
            "must be undefined to be structural",
        ),
        (
            v.preserves_unknown(),
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        ),
        (
            v.embedded,
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        ),
        (
            v.int_or_string,
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        ),
        (
            !v.list_map_keys.is_empty(),
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ),
        (
            v.list_type.is_some(),
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ),
        (
            v.map_type.is_some(),
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ),
        (
            v.has_x_validations,
            "x-kubernetes-validations",
            "must be empty to be structural",
        ),
    ];
    for (set, key, detail) in forbidden {
        if set {
            errs.push(FieldError::forbidden(&p.child(key), detail));
        }
    }
    if v.properties.contains_key("metadata") {
        errs.push(FieldError::forbidden(
            &p.child("properties").key("metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// `validateStructuralCompleteness`: what the root's junctors name must exist structurally.
fn completeness(s: &Node, sp: &Path, vp: &Path, errs: &mut Vec<FieldError>) {
    junctors(s, Some(s), sp, vp, errs);
}

fn junctors(v: &Node, s: Option<&Node>, sp: &Path, vp: &Path, errs: &mut Vec<FieldError>) {
    if let Some(n) = &v.not {
        nested_complete(n, s, sp, &vp.child("not"), errs);
    }
    for (name, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, n) in list.iter().enumerate() {
            nested_complete(n, s, sp, &vp.child(name).index(i), errs);
        }
    }
}

fn nested_complete(v: &Node, s: Option<&Node>, sp: &Path, vp: &Path, errs: &mut Vec<FieldError>) {
    let Some(s) = s else {
        errs.push(FieldError::required(
            sp,
            format!("because it is defined in {vp}"),
        ));
        return;
    };
    junctors(v, Some(s), sp, vp, errs);
    if let Some(items) = &v.items {
        nested_complete(
            items,
            s.items.as_deref(),
            &sp.child("items"),
            &vp.child("items"),
            errs,
        );
    }
    for (k, f) in &v.properties {
        let vk = vp.child("properties").key(k);
        match s.properties.get(k) {
            Some(sf) => nested_complete(f, Some(sf), &sp.child("properties").key(k), &vk, errs),
            None => errs.push(FieldError::required(
                &sp.child("properties").key(k),
                format!("because it is defined in {vk}"),
            )),
        }
    }
}
