//! Validation of `metadata` on create and update, as upstream's
//! `k8s.io/apimachinery/pkg/api/validation` (`objectmeta.go`, `generic.go`) and the label and
//! managed-fields rules of `pkg/apis/meta/v1/validation`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ManagedFieldsEntry, ObjectMeta, OwnerReference,
};
use serde::Serialize;
use serde_json::Value;

use super::field::{FieldError, Path};
use super::names;

/// Upstream's `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";
/// Upstream's `TotalAnnotationSizeLimitB`: 256 KiB over all keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * (1 << 10);
/// Upstream's `IsNegativeErrorMsg`.
pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";
/// Upstream's `FieldManagerMaxLength`.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;
/// Upstream's `MaxSubresourceNameLength`.
pub const MAX_SUBRESOURCE_NAME_LENGTH: usize = 256;

const FINALIZER_ORPHAN_DEPENDENTS: &str = "orphan";
const FINALIZER_DELETE_DEPENDENTS: &str = "foregroundDeletion";

/// Upstream's `maskTrailingDash`, reproduced with its quirk: a `generateName` ending in `-` is
/// checked with its last two characters replaced by `a`.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1
        && let Some(stripped) = name.strip_suffix('-')
    {
        let mut head: String = stripped.to_owned();
        head.pop();
        head.push('a');
        return head;
    }
    name.to_owned()
}

/// `NameIsDNSSubdomain`: the name rule of most kinds (`prefix` is true for `generateName`).
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        return names::is_dns1123_subdomain(&mask_trailing_dash(name));
    }
    names::is_dns1123_subdomain(name)
}

/// `NameIsDNSLabel`: the name rule of namespaces and a few other kinds.
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        return names::is_dns1123_label(&mask_trailing_dash(name));
    }
    names::is_dns1123_label(name)
}

/// `NameIsDNS1035Label`: the name rule of services.
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        return names::is_dns1035_label(&mask_trailing_dash(name));
    }
    names::is_dns1035_label(name)
}

/// `ValidatePathSegmentName`: the name rule of kinds whose names only have to be a URL path
/// segment (RBAC roles and bindings, for example).
pub fn validate_path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for illegal in [".", ".."] {
            if name == illegal {
                return vec![format!("may not be '{illegal}'")];
            }
        }
    }
    ["/", "%"]
        .into_iter()
        .filter(|illegal| name.contains(illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

/// `ValidateNonnegativeField`.
pub fn validate_nonnegative_field(value: i64, path: &Path) -> Vec<FieldError> {
    if value < 0 {
        return vec![FieldError::invalid(path, value, IS_NEGATIVE_ERROR_MSG)];
    }
    Vec::new()
}

/// `ValidateLabels`: keys are qualified names, values valid label values; errors on the
/// `labels` path itself, as upstream.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for msg in names::is_qualified_name(k) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
        for msg in names::is_valid_label_value(v) {
            errs.push(FieldError::invalid(path, v.as_str(), msg));
        }
    }
    errs
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitively), total size of keys and
/// values at most [`TOTAL_ANNOTATION_SIZE_LIMIT_B`].
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for k in annotations.keys() {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
    }
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::too_long(
            path,
            Some(TOTAL_ANNOTATION_SIZE_LIMIT_B),
        ));
    }
    errs
}

/// Upstream's `schema.ParseGroupVersion` as used by `FromAPIVersionAndKind`: the version, empty
/// when the apiVersion does not parse.
fn group_version(api_version: &str) -> (&str, &str) {
    if api_version.is_empty() || api_version == "/" {
        return ("", "");
    }
    match api_version.matches('/').count() {
        0 => ("", api_version),
        1 => api_version.split_once('/').unwrap_or(("", "")),
        _ => ("", ""),
    }
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn validate_owner_reference(r: &OwnerReference, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (group, version) = group_version(&r.api_version);
    if version.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("apiVersion"),
            r.api_version.as_str(),
            "version must not be empty",
        ));
    }
    if r.kind.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("kind"),
            "",
            "kind must not be empty",
        ));
    }
    if r.name.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("name"),
            "",
            "name must not be empty",
        ));
    }
    if r.uid.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("uid"),
            "",
            "uid must not be empty",
        ));
    }
    if group.is_empty() && version == "v1" && r.kind == "Event" {
        errs.push(FieldError::invalid(
            path,
            to_value(r),
            format!(
                "{group}/{version}, Kind={} is disallowed from being an owner",
                r.kind
            ),
        ));
    }
    errs
}

/// `ValidateOwnerReferences`: each reference complete, not an Event, at most one controller.
pub fn validate_owner_references(refs: &[OwnerReference], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        errs.extend(validate_owner_reference(r, path));
        if r.controller != Some(true) {
            continue;
        }
        let current = format!("{}/{}", r.kind, r.name);
        match &first_controller {
            Some(first) => errs.push(FieldError::invalid(
                path,
                to_value(&refs),
                format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
            )),
            None => first_controller = Some(current),
        }
    }
    errs
}

/// `ValidateFinalizers`: qualified names, not both `orphan` and `foregroundDeletion`.
pub fn validate_finalizers(finalizers: &[String], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in finalizers {
        for msg in names::is_qualified_name(f) {
            errs.push(FieldError::invalid(path, f.as_str(), msg));
        }
    }
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has(FINALIZER_ORPHAN_DEPENDENTS) && has(FINALIZER_DELETE_DEPENDENTS) {
        errs.push(FieldError::invalid(
            path,
            to_value(&finalizers),
            format!("finalizer {FINALIZER_ORPHAN_DEPENDENTS} and {FINALIZER_DELETE_DEPENDENTS} cannot be both set"),
        ));
    }
    errs
}

/// `ValidateFieldManager`: at most 128 bytes of printable characters.
pub fn validate_field_manager(manager: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errs.push(FieldError::too_long(path, Some(FIELD_MANAGER_MAX_LENGTH)));
    }
    for (i, c) in manager.char_indices() {
        if c.is_control() {
            errs.push(FieldError::invalid(
                path,
                manager,
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    errs
}

/// `ValidateManagedFields`.
pub fn validate_managed_fields(entries: &[ManagedFieldsEntry], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = path.index(i);
        let operation = entry.operation.as_deref().unwrap_or_default();
        if !matches!(operation, "Apply" | "Update") {
            errs.push(FieldError::invalid(
                &path.child("operation"),
                operation,
                "must be `Apply` or `Update`",
            ));
        }
        let fields_type = entry.fields_type.as_deref().unwrap_or_default();
        if !fields_type.is_empty() && fields_type != "FieldsV1" {
            errs.push(FieldError::invalid(
                &path.child("fieldsType"),
                fields_type,
                "must be `FieldsV1`",
            ));
        }
        let manager = entry.manager.as_deref().unwrap_or_default();
        errs.extend(validate_field_manager(manager, &path.child("manager")));
        let subresource = entry.subresource.as_deref().unwrap_or_default();
        if subresource.len() > MAX_SUBRESOURCE_NAME_LENGTH {
            errs.push(FieldError::too_long(
                &path.child("subresource"),
                Some(MAX_SUBRESOURCE_NAME_LENGTH),
            ));
        }
    }
    errs
}

/// `ValidateObjectMeta` for a create: `name` or `generateName` present and valid per `name_fn`
/// (called with `prefix = true` for `generateName`), `namespace` present and a DNS label for
/// namespaced kinds and absent otherwise, non-negative generation, labels, annotations, owner
/// references, finalizers and managed fields.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: impl Fn(&str, bool) -> Vec<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                &path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = meta.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(&path.child("name"), name, msg));
        }
    }
    errs.extend(validate_namespace_presence(meta, namespaced, path));
    errs.extend(validate_nonnegative_field(
        meta.generation.unwrap_or_default(),
        &path.child("generation"),
    ));
    errs.extend(validate_labels_annotations_owners(meta, path));
    if let Some(finalizers) = &meta.finalizers {
        errs.extend(validate_finalizers(finalizers, &path.child("finalizers")));
    }
    errs.extend(validate_meta_managed_fields(meta, path));
    errs
}

fn validate_namespace_presence(
    meta: &ObjectMeta,
    namespaced: bool,
    path: &Path,
) -> Vec<FieldError> {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let ns_path = path.child("namespace");
    if !namespaced {
        if namespace.is_empty() {
            return Vec::new();
        }
        return vec![FieldError::forbidden(&ns_path, "not allowed on this type")];
    }
    if namespace.is_empty() {
        return vec![FieldError::required(&ns_path, "")];
    }
    name_is_dns_label(namespace, false)
        .into_iter()
        .map(|msg| FieldError::invalid(&ns_path, namespace, msg))
        .collect()
}

/// Labels, annotations and owner references: checked on create and update.
fn validate_labels_annotations_owners(meta: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(
            annotations,
            &path.child("annotations"),
        ));
    }
    if let Some(refs) = &meta.owner_references {
        errs.extend(validate_owner_references(
            refs,
            &path.child("ownerReferences"),
        ));
    }
    errs
}

fn validate_meta_managed_fields(meta: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    match &meta.managed_fields {
        Some(entries) => validate_managed_fields(entries, &path.child("managedFields")),
        None => Vec::new(),
    }
}

/// `ValidateImmutableField`: `field is immutable` unless `new == old`.
pub fn validate_immutable_field<T: PartialEq + Serialize>(
    new: &T,
    old: &T,
    path: &Path,
) -> Vec<FieldError> {
    if new == old {
        return Vec::new();
    }
    vec![FieldError::invalid(
        path,
        to_value(new),
        FIELD_IMMUTABLE_ERROR_MSG,
    )]
}

fn validate_no_new_finalizers(new: &[String], old: &[String], path: &Path) -> Vec<FieldError> {
    let old: BTreeSet<&String> = old.iter().collect();
    let extra: BTreeSet<&String> = new.iter().filter(|f| !old.contains(f)).collect();
    if extra.is_empty() {
        return Vec::new();
    }
    let quoted: Vec<String> = extra.iter().map(|f| crate::gofmt::quote(f)).collect();
    vec![FieldError::forbidden(
        path,
        format!(
            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            quoted.join(", ")
        ),
    )]
}

/// `ValidateObjectMetaUpdate`: no new finalizers while deleting, resourceVersion given,
/// generation not decremented; name, namespace, uid, creationTimestamp, deletionTimestamp and
/// deletionGracePeriodSeconds immutable; labels, annotations, owner references and managed
/// fields valid.
pub fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.deletion_timestamp.is_some() {
        errs.extend(validate_no_new_finalizers(
            new.finalizers.as_deref().unwrap_or_default(),
            old.finalizers.as_deref().unwrap_or_default(),
            &path.child("finalizers"),
        ));
    }
    if new
        .resource_version
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::invalid(
            &path.child("resourceVersion"),
            "",
            "must be specified for an update",
        ));
    }
    let new_generation = new.generation.unwrap_or_default();
    if new_generation < old.generation.unwrap_or_default() {
        errs.push(FieldError::invalid(
            &path.child("generation"),
            new_generation,
            "must not be decremented",
        ));
    }
    errs.extend(validate_immutables(new, old, path));
    errs.extend(validate_labels_annotations_owners(new, path));
    errs.extend(validate_meta_managed_fields(new, path));
    errs
}

fn validate_immutables(new: &ObjectMeta, old: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut errs = Vec::new();
    errs.extend(validate_immutable_field(
        &text(&new.name),
        &text(&old.name),
        &path.child("name"),
    ));
    errs.extend(validate_immutable_field(
        &text(&new.namespace),
        &text(&old.namespace),
        &path.child("namespace"),
    ));
    errs.extend(validate_immutable_field(
        &text(&new.uid),
        &text(&old.uid),
        &path.child("uid"),
    ));
    errs.extend(validate_immutable_field(
        &new.creation_timestamp,
        &old.creation_timestamp,
        &path.child("creationTimestamp"),
    ));
    errs.extend(validate_immutable_field(
        &new.deletion_timestamp,
        &old.deletion_timestamp,
        &path.child("deletionTimestamp"),
    ));
    errs.extend(validate_immutable_field(
        &new.deletion_grace_period_seconds,
        &old.deletion_grace_period_seconds,
        &path.child("deletionGracePeriodSeconds"),
    ));
    errs
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
