//! Field paths and field errors in upstream's `field.Path` / `field.Error` model.
//!
//! The error model is `k8rs_machinery::validation`'s; the crate builds errors through the
//! constructors here ([`required`], [`invalid`], ...), whose [`Bad`] values can also carry Go
//! `%#v` renderings of typed values (`map[string]string{...}`, `v1.LabelSelector{...}`) that a
//! JSON value cannot express.

use std::collections::BTreeMap;
use std::fmt;

pub use k8rs_machinery::validation::{ErrorKind, FieldError, Path};
use serde_json::Value;

/// A bad value, kept in the shape Go would print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// Not shown.
    Omit,
    /// A nil pointer: `null`.
    Null,
    /// A string, printed quoted (`%q`).
    Str(String),
    /// An integer, printed bare.
    Int(i64),
    Bool(bool),
    /// Already rendered (Go `%#v` syntax for maps, slices and structs).
    Go(String),
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bad::Omit => Ok(()),
            Bad::Null => f.write_str("\"null\""),
            Bad::Str(s) => f.write_str(&go_quote(s)),
            Bad::Int(i) => write!(f, "{i}"),
            Bad::Bool(b) => write!(f, "{b}"),
            Bad::Go(s) => f.write_str(s),
        }
    }
}

impl From<&str> for Bad {
    fn from(s: &str) -> Self {
        Bad::Str(s.to_string())
    }
}
impl From<String> for Bad {
    fn from(s: String) -> Self {
        Bad::Str(s)
    }
}
impl From<&String> for Bad {
    fn from(s: &String) -> Self {
        Bad::Str(s.clone())
    }
}
impl From<i64> for Bad {
    fn from(i: i64) -> Self {
        Bad::Int(i)
    }
}
impl From<i32> for Bad {
    fn from(i: i32) -> Self {
        Bad::Int(i64::from(i))
    }
}
impl From<usize> for Bad {
    fn from(i: usize) -> Self {
        Bad::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Bad {
    fn from(b: bool) -> Self {
        Bad::Bool(b)
    }
}
impl<T: Into<Bad>> From<Option<T>> for Bad {
    fn from(v: Option<T>) -> Self {
        v.map_or(Bad::Null, Into::into)
    }
}

/// Builds a machinery error from a [`Bad`]: values already in Go syntax are rendered into the
/// message (machinery quotes strings), so the text is upstream's either way.
fn make(kind: ErrorKind, path: &Path, bad_value: Bad, detail: &str) -> FieldError {
    let (bad_value, detail) = match bad_value {
        Bad::Omit => (None, detail.to_string()),
        Bad::Null => (Some(Value::Null), detail.to_string()),
        Bad::Str(s) => (Some(Value::String(s)), detail.to_string()),
        Bad::Int(i) => (Some(Value::from(i)), detail.to_string()),
        Bad::Bool(b) => (Some(Value::Bool(b)), detail.to_string()),
        Bad::Go(go) if detail.is_empty() => (None, go),
        Bad::Go(go) => (None, format!("{go}: {detail}")),
    };
    FieldError {
        kind,
        field: path.to_string(),
        bad_value,
        detail,
    }
}

pub fn required(path: &Path, detail: &str) -> FieldError {
    make(ErrorKind::Required, path, Bad::Omit, detail)
}

pub fn invalid(path: &Path, value: impl Into<Bad>, detail: &str) -> FieldError {
    make(ErrorKind::Invalid, path, value.into(), detail)
}

pub fn forbidden(path: &Path, detail: &str) -> FieldError {
    make(ErrorKind::Forbidden, path, Bad::Omit, detail)
}

pub fn duplicate(path: &Path, value: impl Into<Bad>) -> FieldError {
    make(ErrorKind::Duplicate, path, value.into(), "")
}

pub fn not_found(path: &Path, value: impl Into<Bad>) -> FieldError {
    make(ErrorKind::NotFound, path, value.into(), "")
}

/// `Unsupported value: "x": supported values: "a", "b"`.
pub fn not_supported(path: &Path, value: impl Into<Bad>, valid: &[&str]) -> FieldError {
    let detail = if valid.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    make(ErrorKind::NotSupported, path, value.into(), &detail)
}

/// `Too long: may not be more than N bytes`.
pub fn too_long(path: &Path, max: usize) -> FieldError {
    FieldError::too_long(path, Some(max))
}

/// `Too many: N: must have at most M items`.
pub fn too_many(path: &Path, actual: usize, max: usize) -> FieldError {
    FieldError::too_many(path, Some(actual), Some(max))
}

/// Go's `%q` for a string: double-quoted with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `map[string]string{"a":"b", "c":"d"}` as Go's `%#v` prints it (keys sorted).
pub fn go_map(m: Option<&BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// `[]string{"a", "b"}` as Go's `%#v` prints it.
pub fn go_strings(v: Option<&[String]>) -> String {
    match v {
        None => "[]string(nil)".to_string(),
        Some(v) => {
            let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// A label map as a bad value.
pub fn bad_map(m: Option<&BTreeMap<String, String>>) -> Bad {
    Bad::Go(go_map(m))
}

/// A string list as a bad value.
pub fn bad_strings(v: Option<&[String]>) -> Bad {
    Bad::Go(go_strings(v))
}

/// Any serializable value as a bad value, rendered as compact JSON (Go would print its struct).
pub fn bad_json<T: serde::Serialize>(v: &T) -> Bad {
    Bad::Go(serde_json::to_string(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_upstream() {
        let p = Path::new("spec").child("containers").index(0).child("name");
        assert_eq!(p.as_str(), "spec.containers[0].name");
        assert_eq!(Path::new("data").key("a.b").as_str(), "data[a.b]");
        assert_eq!(Path::new("").child("x").as_str(), "x");
    }

    #[test]
    fn messages_render_like_upstream() {
        let p = Path::new("spec").child("restartPolicy");
        let cases = [
            (required(&p, ""), "spec.restartPolicy: Required value"),
            (
                required(&p, "why"),
                "spec.restartPolicy: Required value: why",
            ),
            (
                invalid(&p, "a\"b", "bad"),
                "spec.restartPolicy: Invalid value: \"a\\\"b\": bad",
            ),
            (
                invalid(&p, -1i64, "must be"),
                "spec.restartPolicy: Invalid value: -1: must be",
            ),
            (
                invalid(&p, None::<i64>, "x"),
                "spec.restartPolicy: Invalid value: \"null\": x",
            ),
            (
                invalid(&p, bad_map(None), "x"),
                "spec.restartPolicy: Invalid value: map[string]string(nil): x",
            ),
            (
                not_supported(&p, "Sometimes", &["Always", "Never"]),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\"",
            ),
            (
                duplicate(&p, "x"),
                "spec.restartPolicy: Duplicate value: \"x\"",
            ),
            (forbidden(&p, "no"), "spec.restartPolicy: Forbidden: no"),
            (
                too_long(&p, 10),
                "spec.restartPolicy: Too long: may not be more than 10 bytes",
            ),
            (not_found(&p, "v"), "spec.restartPolicy: Not found: \"v\""),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn go_syntax_of_maps_and_slices() {
        let m: BTreeMap<String, String> = [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into();
        assert_eq!(go_map(Some(&m)), r#"map[string]string{"a":"1", "b":"2"}"#);
        assert_eq!(go_map(None), "map[string]string(nil)");
        assert_eq!(go_strings(Some(&["x".to_string()])), r#"[]string{"x"}"#);
    }
}
