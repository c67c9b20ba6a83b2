//! Validation of a value against a schema, as kube-openapi's `SchemaValidator` does it and as
//! apiextensions-apiserver turns its results into field errors: each error's path is the
//! validator's name of the value (`spec.replicas`, `spec.items[0].name`), its detail the
//! validator's message (`spec.replicas in body must be of type integer: "string"`).

use serde_json::{Number, Value};

use super::format;
use super::node::{Additional, Node};
use crate::gofmt;
use crate::validation::{ErrorKind, FieldError, Path};

/// Validates `x` against `s`; errors are under `prefix` (`resource`: `x` is a whole resource, whose
/// `metadata` is checked only for what the schema says about `name` and `generateName`).
pub(crate) fn validate(s: &Node, x: &Value, prefix: &Path, resource: bool) -> Vec<FieldError> {
    let mut v = Validator {
        prefix,
        errs: Vec::new(),
    };
    v.value(s, x, "", resource);
    v.errs
}

struct Validator<'a> {
    prefix: &'a Path,
    errs: Vec<FieldError>,
}

/// `name.key`, or `key` at the root.
fn child(name: &str, key: &str) -> String {
    if name.is_empty() {
        key.to_owned()
    } else {
        format!("{name}.{key}")
    }
}

/// The JSON type of a value, and the Go format kube-openapi infers for numbers.
fn data_type(x: &Value) -> (&'static str, &'static str) {
    match x {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.is_f64() => ("number", "float64"),
        Value::Number(_) => ("integer", "int64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

fn float_is_integer(n: &Number) -> bool {
    n.as_f64()
        .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

impl Validator<'_> {
    fn path(&self, name: &str) -> Path {
        let name = name.trim_start_matches('.');
        if name.is_empty() {
            self.prefix.clone()
        } else {
            self.prefix.child(name)
        }
    }

    fn invalid(&mut self, name: &str, value: impl Into<Value>, detail: String) {
        let p = self.path(name);
        self.errs.push(FieldError::invalid(&p, value, detail));
    }

    /// kube-openapi's `InvalidType`, reported as `field.TypeInvalid`.
    fn type_invalid(&mut self, name: &str, want: &str, got: &str, value: Value) {
        let mut e = FieldError::invalid(
            &self.path(name),
            value,
            format!(
                "{name} in body must be of type {want}: {}",
                gofmt::quote(got)
            ),
        );
        e.kind = ErrorKind::TypeInvalid;
        self.errs.push(e);
    }

    fn value(&mut self, s: &Node, x: &Value, name: &str, resource: bool) {
        if x.is_null() {
            let types = s.types();
            if !types.is_empty() && !s.nullable {
                self.type_invalid(name, &types.join(","), "null", "null".into());
            }
            self.enumeration(s, x, name);
            return;
        }
        self.type_check(s, x, name);
        self.junctors(s, x, name);
        match x {
            Value::String(text) => self.string(s, text, name),
            Value::Number(n) => self.number(s, n, name),
            Value::Array(items) => self.array(s, items, name),
            _ => {}
        }
        self.enumeration(s, x, name);
        if let Value::Object(map) = x {
            self.object(s, map, name, resource);
        }
    }

    fn type_check(&mut self, s: &Node, x: &Value, name: &str) {
        let types = s.types();
        if types.is_empty() && s.format.is_empty() {
            return;
        }
        let (sch, fmt) = data_type(x);
        let has = |t: &str| types.contains(&t);
        let float_int = sch == "number"
            && has("integer")
            && matches!(x, Value::Number(n) if float_is_integer(n));
        let int_float = sch == "integer" && has("number");
        let stringish = x.is_string() || x.is_array();
        let has_format = !s.format.is_empty();
        let format_fits = has(sch) || fmt == s.format || float_int || int_float;
        if !stringish && has_format && !format_fits {
            self.type_invalid(name, &s.format.clone(), fmt, fmt.into());
            return;
        }
        let numeric = has("number") || has("integer");
        if stringish && has_format && !numeric {
            return;
        }
        if !(has(sch) || float_int || int_float) {
            self.type_invalid(name, &types.join(","), sch, sch.into());
        }
    }

    /// `allOf`, `anyOf`, `oneOf` and `not`.
    fn junctors(&mut self, s: &Node, x: &Value, name: &str) {
        for sub in &s.all_of {
            self.value(sub, x, name, false);
        }
        let quoted = gofmt::quote(name);
        if !s.any_of.is_empty() {
            let results: Vec<Vec<FieldError>> =
                s.any_of.iter().map(|sub| self.sub(sub, x, name)).collect();
            if results.iter().all(|r| !r.is_empty()) {
                self.invalid(
                    name,
                    "",
                    format!("{quoted} must validate at least one schema (anyOf)"),
                );
                self.errs
                    .extend(results.into_iter().next().unwrap_or_default());
            }
        }
        if !s.one_of.is_empty() {
            let results: Vec<Vec<FieldError>> =
                s.one_of.iter().map(|sub| self.sub(sub, x, name)).collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != 1 {
                let extra = if valid == 0 {
                    "Found none valid".to_owned()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                self.invalid(
                    name,
                    "",
                    format!("{quoted} must validate one and only one schema (oneOf). {extra}"),
                );
                if valid == 0 {
                    self.errs
                        .extend(results.into_iter().next().unwrap_or_default());
                }
            }
        }
        if let Some(not) = &s.not
            && self.sub(not, x, name).is_empty()
        {
            self.invalid(
                name,
                "",
                format!("{quoted} must not validate the schema (not)"),
            );
        }
    }

    /// The errors of `x` against a sub-schema, without recording them.
    fn sub(&self, s: &Node, x: &Value, name: &str) -> Vec<FieldError> {
        let mut v = Validator {
            prefix: self.prefix,
            errs: Vec::new(),
        };
        v.value(s, x, name, false);
        v.errs
    }

    fn string(&mut self, s: &Node, text: &str, name: &str) {
        let len = text.chars().count() as u64;
        if let Some(max) = s.max_length.filter(|m| len > *m) {
            let p = self.path(name);
            self.errs
                .push(FieldError::too_long(&p, usize::try_from(max).ok()));
        }
        if let Some(min) = s.min_length.filter(|m| len < *m) {
            self.invalid(
                name,
                text,
                format!("{name} in body should be at least {min} chars long"),
            );
        }
        if let Some(p) = s.pattern.as_ref().filter(|p| !p.regex.is_match(text)) {
            let detail = format!("{name} in body should match '{}'", p.source);
            self.invalid(name, text, detail);
        }
        if format::check(&s.format, text) == Some(false) {
            self.type_invalid(name, &s.format.clone(), text, text.into());
        }
    }

    fn number(&mut self, s: &Node, n: &Number, name: &str) {
        let Some(f) = n.as_f64() else {
            return;
        };
        let value = Value::Number(n.clone());
        if let Some(m) = s.multiple_of.filter(|m| *m > 0.0) {
            let mult = if m < 1.0 { (1.0 / m) * f } else { f / m };
            if mult.fract() != 0.0 {
                let detail = format!("{name} in body should be a multiple of {}", gofmt::float(m));
                self.invalid(name, value.clone(), detail);
            }
        }
        if let Some(max) = s.maximum {
            let (bad, words) = if s.exclusive_maximum {
                (f >= max, "less than")
            } else {
                (f > max, "less than or equal to")
            };
            if bad {
                let detail = format!("{name} in body should be {words} {}", gofmt::float(max));
                self.invalid(name, value.clone(), detail);
            }
        }
        if let Some(min) = s.minimum {
            let (bad, words) = if s.exclusive_minimum {
                (f <= min, "greater than")
            } else {
                (f < min, "greater than or equal to")
            };
            if bad {
                let detail = format!("{name} in body should be {words} {}", gofmt::float(min));
                self.invalid(name, value, detail);
            }
        }
    }

    fn array(&mut self, s: &Node, items: &[Value], name: &str) {
        if let Some(is) = &s.items {
            for (i, x) in items.iter().enumerate() {
                self.value(is, x, &format!("{name}[{i}]"), is.embedded);
            }
        }
        let size = items.len() as u64;
        if let Some(min) = s.min_items.filter(|m| size < *m) {
            self.invalid(
                name,
                size,
                format!("{name} in body should have at least {min} items"),
            );
        }
        if let Some(max) = s.max_items.filter(|m| size > *m) {
            let p = self.path(name);
            self.errs.push(FieldError::too_many(
                &p,
                usize::try_from(size).ok(),
                usize::try_from(max).ok(),
            ));
        }
        let duplicated = items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)));
        if s.unique_items && duplicated {
            self.invalid(
                name,
                "",
                format!("{name} in body shouldn't contain duplicates"),
            );
        }
    }

    fn enumeration(&mut self, s: &Node, x: &Value, name: &str) {
        let Some(allowed) = &s.enumeration else {
            return;
        };
        if allowed.iter().any(|a| json_eq(a, x)) {
            return;
        }
        let values: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let p = self.path(name);
        self.errs
            .push(FieldError::not_supported(&p, x.clone(), &values));
    }

    fn object(
        &mut self,
        s: &Node,
        map: &serde_json::Map<String, Value>,
        name: &str,
        resource: bool,
    ) {
        let count = map.len() as u64;
        if let Some(min) = s.min_properties.filter(|m| count < *m) {
            self.invalid(
                name,
                count,
                format!("{name} in body should have at least {min} properties"),
            );
            return;
        }
        if let Some(max) = s.max_properties.filter(|m| count > *m) {
            let p = self.path(name);
            let (count, max) = (usize::try_from(count).ok(), usize::try_from(max).ok());
            self.errs.push(FieldError::too_many(&p, count, max));
            return;
        }
        match &s.additional {
            Some(Additional::Bool(false)) => {
                for k in map.keys().filter(|k| !s.properties.contains_key(*k)) {
                    let detail = format!("{name}.{k} in body is a forbidden property");
                    self.invalid(name, k.as_str(), detail);
                }
            }
            Some(Additional::Schema(add)) => {
                for (k, v) in map.iter().filter(|(k, _)| !s.properties.contains_key(*k)) {
                    self.value(add, v, &format!("{name}.{k}"), add.embedded);
                }
            }
            _ => {}
        }
        for (k, prop) in &s.properties {
            let Some(v) = map.get(k) else {
                continue;
            };
            let sub = child(name, k);
            if resource && k == "metadata" {
                self.metadata(prop, v, &sub);
            } else {
                self.value(prop, v, &sub, prop.embedded);
            }
        }
        for k in &s.required {
            if !map.contains_key(k) {
                let p = self.path(&format!("{name}.{k}"));
                self.errs.push(FieldError::required(&p, ""));
            }
        }
    }

    /// A resource's `metadata`: only `name` and `generateName` are the schema's to check.
    fn metadata(&mut self, s: &Node, x: &Value, name: &str) {
        let Some(map) = x.as_object() else {
            return;
        };
        for key in ["name", "generateName"] {
            if let (Some(fs), Some(fv)) = (s.properties.get(key), map.get(key)) {
                self.value(fs, fv, &child(name, key), false);
            }
        }
    }
}
