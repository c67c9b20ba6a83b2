//! Object metadata, labels, annotations and label selectors, as upstream's
//! `apimachinery/pkg/api/validation` and `apis/meta/v1/validation`, plus small shared helpers
//! (immutability, non-negative numbers, semantic equality).

use std::collections::BTreeMap;

use k8rs_machinery::labels::Selector;
use k8rs_machinery::validation as mv;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use serde::Serialize;
use serde_json::Value;

use crate::NameRule;
use crate::field::{
    Bad, FieldError, Path, bad_map, forbidden, go_quote, go_strings, invalid, required,
};
use crate::names::{is_qualified_name, is_valid_label_value};

pub const FIELD_IMMUTABLE: &str = mv::FIELD_IMMUTABLE_ERROR_MSG;
pub const IS_NEGATIVE: &str = mv::IS_NEGATIVE_ERROR_MSG;
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// `Invalid value: <new>: field is immutable`.
pub fn immutable(path: &Path, new_value: impl Into<Bad>) -> FieldError {
    invalid(path, new_value, FIELD_IMMUTABLE)
}

/// Upstream's `ValidateNonnegativeField`.
pub fn non_negative(value: i64, path: &Path) -> Vec<FieldError> {
    if value < 0 {
        vec![invalid(path, value, IS_NEGATIVE)]
    } else {
        vec![]
    }
}

/// Equality that, like upstream's `equality.Semantic`, treats unset, null and empty lists/maps
/// alike.
pub fn semantic_eq<T: Serialize>(a: &T, b: &T) -> bool {
    let norm = |v: &T| prune(serde_json::to_value(v).unwrap_or(Value::Null));
    norm(a) == norm(b)
}

fn prune(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let out: serde_json::Map<String, Value> = map
                .into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect();
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(prune).collect()),
        other => other,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The JSON paths whose values differ between `old` and `new`, each as `path: old -> new`; used
/// to explain "may not change" errors (upstream prints a Go diff there).
pub fn diff<T: Serialize>(old: &T, new: &T) -> String {
    let old = prune(serde_json::to_value(old).unwrap_or(Value::Null));
    let new = prune(serde_json::to_value(new).unwrap_or(Value::Null));
    let mut out = Vec::new();
    diff_values("", &old, &new, &mut out);
    out.join("\n")
}

fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_values(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("  {path}: {a} -> {b}")),
        _ => {}
    }
}

/// Upstream's core `ValidateObjectMeta`: the generic rules plus standard finalizer names.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = mv::validate_object_meta(meta, namespaced, |n, p| rule.validate(n, p), path);
    errs.extend(kube_finalizer_names(meta, path));
    errs
}

/// Upstream's core `ValidateObjectMetaUpdate`.
pub fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = mv::validate_object_meta_update(new, old, path);
    errs.extend(kube_finalizer_names(new, path));
    errs
}

fn kube_finalizer_names(meta: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    let fp = path.child("finalizers");
    let mut errs = Vec::new();
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        errs.extend(kube_finalizer_name(f, &fp.index(i)));
    }
    errs
}

/// `validateKubeFinalizerName`: an unprefixed finalizer must be a standard one.
fn kube_finalizer_name(name: &str, path: &Path) -> Vec<FieldError> {
    if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        return vec![invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        )];
    }
    vec![]
}

/// `validateFinalizerName` (namespace `spec.finalizers`): qualified and standard.
pub fn validate_finalizer_name(name: &str, path: &Path) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = is_qualified_name(name)
        .into_iter()
        .map(|m| invalid(path, name, &m))
        .collect();
    errs.extend(kube_finalizer_name(name, path));
    errs
}

/// Upstream's `ValidateLabelName`.
pub fn validate_label_name(name: &str, path: &Path) -> Vec<FieldError> {
    is_qualified_name(name)
        .into_iter()
        .map(|m| invalid(path, name, &m))
        .collect()
}

/// Upstream's `ValidateLabels`: errors point at the map, not the key.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &Path) -> Vec<FieldError> {
    labels
        .map(|l| mv::validate_labels(l, path))
        .unwrap_or_default()
}

/// Upstream's `ValidateAnnotations`.
pub fn validate_annotations(
    ann: Option<&BTreeMap<String, String>>,
    path: &Path,
) -> Vec<FieldError> {
    ann.map(|a| mv::validate_annotations(a, path))
        .unwrap_or_default()
}

/// Upstream's `ValidateLabelSelector` (strict label values).
pub fn validate_label_selector(sel: Option<&LabelSelector>, path: &Path) -> Vec<FieldError> {
    let Some(sel) = sel else { return vec![] };
    let mut errs = validate_labels(sel.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_selector_requirement(
            req,
            &path.child("matchExpressions").index(i),
        ));
    }
    errs
}

fn validate_selector_requirement(req: &LabelSelectorRequirement, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => errs.push(required(
            &path.child("values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(forbidden(
            &path.child("values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        other => errs.push(invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    errs.extend(validate_label_name(&req.key, &path.child("key")));
    for (i, v) in values.iter().enumerate() {
        for m in is_valid_label_value(v) {
            errs.push(invalid(&path.child("values").index(i), v, &m));
        }
    }
    errs
}

/// Whether `sel` selects `labels`, as `metav1.LabelSelectorAsSelector(sel).Matches(labels)`:
/// a missing selector selects nothing, an empty one everything; `None` if it cannot be
/// converted.
pub fn selector_matches(
    sel: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<bool> {
    let selector = Selector::from_optional_label_selector(sel).ok()?;
    Some(selector.matches(labels.unwrap_or(&BTreeMap::new())))
}

/// Whether a selector is empty (no labels, no expressions).
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// A label selector in Go's `%#v` form: `v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`.
pub fn bad_selector(sel: Option<&LabelSelector>) -> Bad {
    let Some(sel) = sel else { return Bad::Null };
    let exprs = match &sel.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(&r.key),
                        go_quote(&r.operator),
                        go_strings(r.values.as_deref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    let labels = match bad_map(sel.match_labels.as_ref()) {
        Bad::Go(s) => s,
        other => other.to_string(),
    };
    Bad::Go(format!(
        "v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    fn msgs(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn object_meta_names_and_namespaces() {
        let p = Path::new("metadata");
        let cases: Vec<(ObjectMeta, bool, Vec<&str>)> = vec![
            (meta("ok", Some("default")), true, vec![]),
            (
                meta("", Some("default")),
                true,
                vec!["metadata.name: Required value: name or generateName is required"],
            ),
            (
                meta("ok", None),
                true,
                vec!["metadata.namespace: Required value"],
            ),
            (
                meta("ok", Some("ns")),
                false,
                vec!["metadata.namespace: Forbidden: not allowed on this type"],
            ),
        ];
        for (m, namespaced, want) in cases {
            assert_eq!(
                msgs(validate_object_meta(
                    &m,
                    namespaced,
                    NameRule::DnsSubdomain,
                    &p
                )),
                want
            );
        }
        let bad = validate_object_meta(&meta("Bad_Name", None), false, NameRule::DnsSubdomain, &p);
        assert!(bad[0].to_string().starts_with(
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ));
    }

    #[test]
    fn labels_and_finalizers() {
        let mut m = meta("ok", Some("default"));
        m.labels = Some([("bad key".to_string(), "v".to_string())].into());
        m.finalizers = Some(vec!["custom".into()]);
        let errs = msgs(validate_object_meta(
            &m,
            true,
            NameRule::DnsSubdomain,
            &Path::new("metadata"),
        ));
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].starts_with(
                "metadata.labels: Invalid value: \"bad key\": name part must consist of"
            )
        );
        assert_eq!(
            errs[1],
            "metadata.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
        );
    }

    #[test]
    fn meta_update_immutables() {
        let mut old = meta("a", Some("default"));
        old.uid = Some("u1".into());
        let mut new = old.clone();
        new.resource_version = Some("5".into());
        new.name = Some("b".into());
        assert_eq!(
            msgs(validate_object_meta_update(
                &new,
                &old,
                &Path::new("metadata")
            )),
            vec!["metadata.name: Invalid value: \"b\": field is immutable"]
        );
        new.name = Some("a".into());
        new.resource_version = None;
        assert_eq!(
            msgs(validate_object_meta_update(
                &new,
                &old,
                &Path::new("metadata")
            )),
            vec!["metadata.resourceVersion: Invalid value: \"\": must be specified for an update"]
        );
    }

    #[test]
    fn selectors_match_like_upstream() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let sel = |json: serde_json::Value| serde_json::from_value::<LabelSelector>(json).ok();
        assert_eq!(selector_matches(None, Some(&labels)), Some(false));
        assert_eq!(
            selector_matches(sel(serde_json::json!({})).as_ref(), Some(&labels)),
            Some(true)
        );
        let s = sel(
            serde_json::json!({"matchExpressions":[{"key":"app","operator":"In","values":["web"]}]}),
        );
        assert_eq!(selector_matches(s.as_ref(), Some(&labels)), Some(true));
        let s = sel(serde_json::json!({"matchLabels":{"app":"db"}}));
        assert_eq!(selector_matches(s.as_ref(), Some(&labels)), Some(false));
        assert_eq!(
            bad_selector(s.as_ref()).to_string(),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"db"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
    }

    #[test]
    fn semantic_equality_ignores_empty() {
        let a = ObjectMeta {
            labels: Some(BTreeMap::new()),
            ..Default::default()
        };
        assert!(semantic_eq(&a, &ObjectMeta::default()));
        assert!(!semantic_eq(&meta("x", None), &ObjectMeta::default()));
    }
}
