//! Upstream's field-error model (`k8s.io/apimachinery/pkg/util/validation/field`): a [`Path`] to
//! the offending field and a [`FieldError`] whose `Display` is byte-for-byte upstream's message.

use std::fmt;

use serde_json::Value;

use crate::gofmt;

/// A path to a field, rendered as upstream renders `field.Path`: `metadata.name`,
/// `spec.containers[0].image`, `metadata.labels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(String);

impl Path {
    /// A root path of one field name (`field.NewPath`).
    pub fn new(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The path of a child field: `spec` + `containers` = `spec.containers`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return Self::new(name);
        }
        Self(format!("{}.{name}", self.0))
    }

    /// The path of a list element: `spec.containers[0]`.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// The path of a map entry: `metadata.labels[app]`.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a field (`field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The value was not found (`FieldValueNotFound`).
    NotFound,
    /// A required value is missing (`FieldValueRequired`).
    Required,
    /// The value must be unique but is not (`FieldValueDuplicate`).
    Duplicate,
    /// The value is malformed or out of range (`FieldValueInvalid`).
    Invalid,
    /// The value is not one of an enumerated set (`FieldValueNotSupported`).
    NotSupported,
    /// The field may not be set, or not to this value (`FieldValueForbidden`).
    Forbidden,
    /// The value is too long (`FieldValueTooLong`).
    TooLong,
    /// The list has too many items (`FieldValueTooMany`).
    TooMany,
    /// The server failed while validating (`InternalError`).
    Internal,
    /// The value has the wrong type (`FieldValueTypeInvalid`).
    TypeInvalid,
}

impl ErrorKind {
    /// The `metav1.StatusCause` type string (`FieldValueRequired`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Internal => "InternalError",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human-readable words of the kind (`Required value`, `Invalid value`, ...).
    pub fn message(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Internal => "Internal error",
        }
    }

    /// Whether the bad value is never shown (upstream prints only the kind for these).
    fn hides_value(self) -> bool {
        matches!(
            self,
            Self::Required | Self::Forbidden | Self::TooLong | Self::Internal
        )
    }
}

/// One validation failure, as upstream's `field.Error`.
///
/// `Display` gives upstream's `Error()`: `<field>: <kind>[: <value>][: <detail>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// The rendered [`Path`] of the field.
    pub field: String,
    /// The offending value; `None` when upstream omits it.
    pub bad_value: Option<Value>,
    /// Free-form detail, may be empty.
    pub detail: String,
}

impl FieldError {
    fn build(kind: ErrorKind, path: &Path, bad_value: Option<Value>, detail: String) -> Self {
        Self {
            kind,
            field: path.as_str().to_owned(),
            bad_value,
            detail,
        }
    }

    /// `field.Required`.
    pub fn required(path: &Path, detail: impl Into<String>) -> Self {
        Self::build(ErrorKind::Required, path, None, detail.into())
    }

    /// `field.Invalid`.
    pub fn invalid(path: &Path, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::build(ErrorKind::Invalid, path, Some(value.into()), detail.into())
    }

    /// `field.NotSupported`: `supported values: "a", "b"`.
    pub fn not_supported<S: AsRef<str>>(
        path: &Path,
        value: impl Into<Value>,
        supported: &[S],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| gofmt::quote(s.as_ref())).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::build(ErrorKind::NotSupported, path, Some(value.into()), detail)
    }

    /// `field.Forbidden`.
    pub fn forbidden(path: &Path, detail: impl Into<String>) -> Self {
        Self::build(ErrorKind::Forbidden, path, None, detail.into())
    }

    /// `field.Duplicate`.
    pub fn duplicate(path: &Path, value: impl Into<Value>) -> Self {
        Self::build(
            ErrorKind::Duplicate,
            path,
            Some(value.into()),
            String::new(),
        )
    }

    /// `field.NotFound`.
    pub fn not_found(path: &Path, value: impl Into<Value>) -> Self {
        Self::build(ErrorKind::NotFound, path, Some(value.into()), String::new())
    }

    /// `field.TooLong`: `may not be more than N bytes` (or `value is too long` without a limit).
    pub fn too_long(path: &Path, max_length: Option<usize>) -> Self {
        let detail = match max_length {
            Some(max) => format!("may not be more than {max} bytes"),
            None => "value is too long".to_owned(),
        };
        Self::build(ErrorKind::TooLong, path, None, detail)
    }

    /// `field.TooMany`: `must have at most N items`.
    pub fn too_many(path: &Path, actual: Option<usize>, max: Option<usize>) -> Self {
        let detail = match max {
            Some(max) => format!("must have at most {max} items"),
            None => "has too many items".to_owned(),
        };
        Self::build(ErrorKind::TooMany, path, actual.map(Value::from), detail)
    }

    /// `field.InternalError`.
    pub fn internal(path: &Path, detail: impl Into<String>) -> Self {
        Self::build(ErrorKind::Internal, path, None, detail.into())
    }

    /// The `metav1.StatusCause` type string of this error (`FieldValueInvalid`, ...).
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// Upstream's `ErrorBody()`: the message without the leading field path, as used for
    /// `metav1.StatusCause.message`.
    pub fn body(&self) -> String {
        let mut s = self.kind.message().to_owned();
        if !self.kind.hides_value()
            && let Some(value) = &self.bad_value
        {
            s.push_str(": ");
            s.push_str(&render_value(value));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

/// How upstream prints a bad value: strings quoted, numbers and booleans bare, `nil` as
/// `"null"`, anything else in Go syntax.
fn render_value(value: &Value) -> String {
    match value {
        Value::Null => gofmt::quote("null"),
        Value::String(s) => gofmt::quote(s),
        Value::Bool(_) | Value::Number(_) => gofmt::v(value),
        Value::Array(_) | Value::Object(_) => gofmt::sharp_v(value),
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Upstream's `ErrorList.ToAggregate().Error()`: duplicates dropped, one message as is, several as
/// `[a, b]`. Empty for an empty list.
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let msg = e.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_render_like_upstream() {
        let spec = Path::new("spec");
        assert_eq!(
            spec.child("containers").index(0).child("image").as_str(),
            "spec.containers[0].image"
        );
        assert_eq!(
            Path::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
        assert_eq!(Path::default().child("name").as_str(), "name");
    }

    #[test]
    fn errors_render_like_upstream() {
        let containers = Path::new("spec").child("containers");
        let cases = [
            (
                FieldError::required(&containers.index(0).child("name"), ""),
                "spec.containers[0].name: Required value",
            ),
            (
                FieldError::required(
                    &Path::new("metadata").child("name"),
                    "name or generateName is required",
                ),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                FieldError::not_supported(
                    &Path::new("spec").child("restartPolicy"),
                    "Sometimes",
                    &["Always", "OnFailure", "Never"],
                ),
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            ),
            (
                FieldError::invalid(
                    &Path::new("metadata").child("generation"),
                    -1,
                    "must be greater than or equal to 0",
                ),
                "metadata.generation: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::invalid(&Path::new("x"), json!(null), "bad"),
                r#"x: Invalid value: "null": bad"#,
            ),
            (
                FieldError::invalid(&Path::new("x"), json!(["a", "b"]), "bad"),
                r#"x: Invalid value: []string{"a", "b"}: bad"#,
            ),
            (
                FieldError::forbidden(
                    &Path::new("metadata").child("namespace"),
                    "not allowed on this type",
                ),
                "metadata.namespace: Forbidden: not allowed on this type",
            ),
            (
                FieldError::too_long(&Path::new("metadata").child("annotations"), Some(262_144)),
                "metadata.annotations: Too long: may not be more than 262144 bytes",
            ),
            (
                FieldError::too_many(&Path::new("items"), Some(5), Some(3)),
                "items: Too many: 5: must have at most 3 items",
            ),
            (
                FieldError::duplicate(&Path::new("spec").child("ports").index(1), "http"),
                r#"spec.ports[1]: Duplicate value: "http""#,
            ),
            (
                FieldError::not_found(&Path::new("x"), true),
                "x: Not found: true",
            ),
            (
                FieldError::internal(&Path::new("x"), "boom"),
                "x: Internal error: boom",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn reasons_are_status_cause_types() {
        assert_eq!(
            FieldError::required(&Path::new("a"), "").reason(),
            "FieldValueRequired"
        );
        assert_eq!(
            FieldError::invalid(&Path::new("a"), 1, "").reason(),
            "FieldValueInvalid"
        );
        assert_eq!(
            FieldError::internal(&Path::new("a"), "").reason(),
            "InternalError"
        );
        assert_eq!(ErrorKind::NotSupported.reason(), "FieldValueNotSupported");
        assert_eq!(ErrorKind::TooMany.reason(), "FieldValueTooMany");
    }

    #[test]
    fn aggregate_joins_and_dedups() {
        let a = FieldError::required(&Path::new("a"), "");
        let b = FieldError::required(&Path::new("b"), "");
        assert_eq!(aggregate(&[]), "");
        assert_eq!(aggregate(&[a.clone(), a.clone()]), "a: Required value");
        assert_eq!(
            aggregate(&[a.clone(), b, a]),
            "[a: Required value, b: Required value]"
        );
    }
}
