//! The rules a CRD's schema must follow beyond being structural (upstream's
//! `ValidateCustomResourceDefinitionOpenAPISchema`): no `uniqueItems`, `properties` and
//! `additionalProperties` exclusive, no defaults in resource metadata, list and map types.

use super::node::{Additional, Node};
use crate::validation::{FieldError, Path};

const META_FIELDS: &[&str] = &["metadata", "kind", "apiVersion"];

/// Where in the resource a schema node sits.
#[derive(Clone, Default)]
struct Ctx {
    is_root: bool,
    inside_meta: bool,
    /// Why defaults are forbidden here, when they are.
    no_defaults: Option<String>,
}

/// All CRD schema-rule errors of `root` (at `at`).
pub(crate) fn crd_rule_errors(root: &Node, at: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if root.nullable {
        errs.push(FieldError::forbidden(
            &at.child("nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let ctx = Ctx {
        is_root: true,
        ..Ctx::default()
    };
    walk(root, at, &ctx, &mut errs);
    errs
}

fn walk(s: &Node, p: &Path, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    node_rules(s, p, ctx, errs);
    let plain = Ctx {
        is_root: false,
        ..ctx.clone()
    };
    if let Some(a) = &s.additional {
        if !s.properties.is_empty()
            && (matches!(a, Additional::Bool(false)) || a.schema().is_some())
        {
            errs.push(FieldError::forbidden(
                &p.child("additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Some(schema) = a.schema() {
            let mut sub = plain.clone();
            if ctx.inside_meta {
                sub.no_defaults =
                    Some("inside additionalProperties applying to object metadata".into());
            }
            walk(schema, &p.child("additionalProperties"), &sub, errs);
        }
    }
    for (k, f) in &s.properties {
        let mut sub = plain.clone();
        if (ctx.is_root || s.embedded) && META_FIELDS.contains(&k.as_str()) {
            sub.inside_meta = true;
            if ctx.is_root {
                sub.no_defaults = Some(format!("in top-level {k}"));
            }
        }
        walk(f, &p.child("properties").key(k), &sub, errs);
    }
    if let Some(n) = &s.not {
        walk(n, &p.child("not"), &plain, errs);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("oneOf", &s.one_of),
        ("anyOf", &s.any_of),
    ] {
        for (i, n) in list.iter().enumerate() {
            walk(n, &p.child(name).index(i), &plain, errs);
        }
    }
    if let Some(items) = &s.items {
        walk(items, &p.child("items"), &plain, errs);
    }
    list_and_map_types(s, p, errs);
}

fn node_rules(s: &Node, p: &Path, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    if let (Some(_), Some(reason)) = (&s.default, &ctx.no_defaults) {
        errs.push(FieldError::forbidden(
            &p.child("default"),
            format!("must not be set {reason}"),
        ));
    }
    if ctx.inside_meta && s.embedded {
        errs.push(FieldError::forbidden(
            &p.child("x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if s.unique_items {
        errs.push(FieldError::forbidden(
            &p.child("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if s.preserve_unknown == Some(false) {
        errs.push(FieldError::invalid(
            &p.child("x-kubernetes-preserve-unknown-fields"),
            false,
            "must be true or undefined",
        ));
    }
}

/// Pushes `Required` when the type is empty, else `Invalid`, for a type that must be `want`.
fn type_must_be(s: &Node, p: &Path, want: &str, why: &str, errs: &mut Vec<FieldError>) {
    let detail = format!("must be {want} if {why}");
    if s.ty.is_empty() {
        errs.push(FieldError::required(&p.child("type"), detail));
    } else {
        errs.push(FieldError::invalid(&p.child("type"), s.ty.clone(), detail));
    }
}

fn list_and_map_types(s: &Node, p: &Path, errs: &mut Vec<FieldError>) {
    if let Some(mt) = &s.map_type {
        if s.ty != "object" {
            type_must_be(s, p, "object", "x-kubernetes-map-type is specified", errs);
        }
        if mt != "atomic" && mt != "granular" {
            errs.push(FieldError::not_supported(
                &p.child("x-kubernetes-map-type"),
                mt.clone(),
                &["atomic", "granular"],
            ));
        }
    }
    if let Some(lt) = &s.list_type {
        if s.ty != "array" {
            type_must_be(s, p, "array", "x-kubernetes-list-type is specified", errs);
        } else if lt == "set" {
            atomic_set_items(s, p, errs);
        }
        if !["atomic", "set", "map"].contains(&lt.as_str()) {
            errs.push(FieldError::not_supported(
                &p.child("x-kubernetes-list-type"),
                lt.clone(),
                &["atomic", "set", "map"],
            ));
        }
    }
    if !s.list_map_keys.is_empty() {
        let detail = "must be map if x-kubernetes-list-map-keys is non-empty";
        match &s.list_type {
            None => errs.push(FieldError::required(
                &p.child("x-kubernetes-list-type"),
                detail,
            )),
            Some(lt) if lt != "map" => errs.push(FieldError::invalid(
                &p.child("x-kubernetes-list-type"),
                lt.clone(),
                detail,
            )),
            Some(_) => {}
        }
    }
    if s.list_type.as_deref() == Some("map") {
        list_map(s, p, errs);
    }
    map_set_keys(s, p, errs);
}

fn atomic_set_items(s: &Node, p: &Path, errs: &mut Vec<FieldError>) {
    let Some(is) = &s.items else {
        return;
    };
    let detail = "must be atomic as item of a list with x-kubernetes-list-type=set";
    let bad_list = is.ty == "array" && is.list_type.as_deref().is_some_and(|t| t != "atomic");
    let bad_map = is.ty == "object" && is.map_type.as_deref() != Some("atomic");
    if bad_list {
        let value = is.list_type.clone().unwrap_or_default();
        errs.push(FieldError::invalid(
            &p.child("items").child("x-kubernetes-list-type"),
            value,
            detail,
        ));
    }
    if bad_map {
        let value = is
            .list_type
            .clone()
            .map_or(serde_json::Value::Null, Into::into);
        errs.push(FieldError::invalid(
            &p.child("items").child("x-kubernetes-map-type"),
            value,
            detail,
        ));
    }
}

fn list_map(s: &Node, p: &Path, errs: &mut Vec<FieldError>) {
    if s.list_map_keys.is_empty() {
        errs.push(FieldError::required(
            &p.child("x-kubernetes-list-map-keys"),
            "must not be empty if x-kubernetes-list-type is map",
        ));
    }
    let Some(is) = &s.items else {
        errs.push(FieldError::required(
            &p.child("items"),
            "must have a schema if x-kubernetes-list-type is map",
        ));
        return;
    };
    if is.ty != "object" {
        errs.push(FieldError::invalid(
            &p.child("items").child("type"),
            is.ty.clone(),
            "must be object if parent array's x-kubernetes-list-type is map",
        ));
        return;
    }
    let keys_value = serde_json::Value::from(s.list_map_keys.clone());
    let mut seen: Vec<&str> = Vec::new();
    for k in &s.list_map_keys {
        match is.properties.get(k) {
            Some(f) if f.ty == "array" || f.ty == "object" => errs.push(FieldError::invalid(
                &p.child("items").child("properties").key(k).child("type"),
                is.ty.clone(),
                "must be a scalar type if parent array's x-kubernetes-list-type is map",
            )),
            Some(_) => {}
            None => errs.push(FieldError::invalid(
                &p.child("x-kubernetes-list-map-keys"),
                keys_value.clone(),
                "entries must all be names of item properties",
            )),
        }
        if seen.contains(&k.as_str()) {
            errs.push(FieldError::invalid(
                &p.child("x-kubernetes-list-map-keys"),
                keys_value.clone(),
                "must not contain duplicate entries",
            ));
        }
        seen.push(k);
    }
}

/// `validateMapListKeysMapSet`: items of sets and maps, and map keys, are never null.
fn map_set_keys(s: &Node, p: &Path, errs: &mut Vec<FieldError>) {
    let (Some(lt), Some(is)) = (&s.list_type, &s.items) else {
        return;
    };
    if lt != "set" && lt != "map" {
        return;
    }
    if is.nullable {
        errs.push(FieldError::forbidden(
            &p.child("items").child("nullable"),
            format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
        ));
    }
    if lt != "map" {
        return;
    }
    for k in &s.list_map_keys {
        let Some(f) = is.properties.get(k) else {
            continue;
        };
        let at = p.child("items").child("properties").key(k);
        if !is.required.contains(k) && f.default.is_none() {
            errs.push(FieldError::required(
                &at.child("default"),
                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
            ));
        }
        if f.nullable {
            errs.push(FieldError::forbidden(
                &at.child("nullable"),
                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
            ));
        }
    }
}
