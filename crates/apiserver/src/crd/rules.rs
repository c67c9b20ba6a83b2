//! `x-kubernetes-validations`: the CEL rules of a custom resource's schema (through kube-cel),
//! checked on create and update (transition rules with `oldSelf` on update only), and the
//! rules' own syntax checked when a definition is written.

use k8rs_machinery::validation::{FieldError, Path};
use kube_cel::cel::Program;
use kube_cel::{CompiledSchema, Validator};
use serde_json::Value;

const RULES: &str = "x-kubernetes-validations";

thread_local! {
    /// A validator has every Kubernetes CEL library registered; one per thread is built once.
    static VALIDATOR: Validator = Validator::new();
}

/// The compiled rules of a version's schema, or `None` when it has none.
pub fn compile(schema: &Value) -> Option<CompiledSchema> {
    has_rules(schema).then(|| kube_cel::compile_schema(schema))
}

fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key(RULES) || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

/// The rules `obj` breaks; on update (`old`), transition rules compare with the old object.
pub fn check(rules: &CompiledSchema, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let result = VALIDATOR.with(|v| v.validate_compiled(rules, obj, old));
    let Err(errors) = result else {
        return Vec::new();
    };
    errors
        .into_vec()
        .into_iter()
        .map(|e| {
            let path = Path::new(e.field_path.trim_start_matches('.'));
            match e.reason.as_deref() {
                Some("FieldValueForbidden") => FieldError::forbidden(&path, e.message),
                Some("FieldValueRequired") => FieldError::required(&path, e.message),
                Some("FieldValueDuplicate") => FieldError::duplicate(&path, e.message),
                _ => FieldError::invalid(&path, type_name(at(obj, &e.field_path)), e.message),
            }
        })
        .collect()
}

/// The value at a dotted path (`spec.replicas`), or null.
fn at<'v>(obj: &'v Value, path: &str) -> &'v Value {
    path.split('.')
        .filter(|s| !s.is_empty())
        .fold(obj, |v, field| &v[field])
}

/// The schema type name upstream's messages show for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Null => "null",
    }
}

/// The rules of a definition that do not parse, at upstream's paths
/// (`spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`).
pub fn syntax_errors(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, version) in crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = Path::new("spec")
            .child("versions")
            .index(i)
            .child("schema")
            .child("openAPIV3Schema");
        walk(&version["schema"]["openAPIV3Schema"], &at, &mut errs);
    }
    errs
}

fn walk(schema: &Value, at: &Path, errs: &mut Vec<FieldError>) {
    let Some(node) = schema.as_object() else {
        return;
    };
    for (j, rule) in node
        .get(RULES)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let here = at.child(RULES).index(j);
        for field in ["rule", "messageExpression"] {
            let Some(text) = rule[field].as_str() else {
                continue;
            };
            if let Err(e) = Program::compile(text) {
                errs.push(FieldError::invalid(
                    &here.child(field),
                    text,
                    format!("compilation failed: {e}"),
                ));
            }
        }
        if rule["rule"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(&here.child("rule"), ""));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            walk(sub, &at.child("properties").key(name), errs);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = node.get(key).filter(|s| s.is_object()) {
            walk(sub, &at.child(key), errs);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (k, sub) in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            walk(sub, &at.child(key).index(k), errs);
        }
    }
}
