//! Label selectors as upstream's `k8s.io/apimachinery/pkg/labels`: the string syntax
//! (`a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1,m<2`), `metav1.LabelSelector` conversion
//! (`LabelSelectorAsSelector`) and matching.
//!
//! Parsing follows upstream's lexer and parser token by token, so accepted inputs, the sorted
//! requirement order, the printed form and the error messages are upstream's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validation::{self, FieldError, Path};

/// Why a selector could not be parsed or built. `Display` is upstream's error text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The selector string is malformed; answer 400 Bad Request.
    #[error("{0}")]
    Syntax(String),
    /// A requirement has an invalid key, values or value count; answer 400 Bad Request.
    #[error("{}", validation::aggregate(.0))]
    InvalidRequirement(Vec<FieldError>),
    /// A `matchExpressions` operator is not `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[error("{} is not a valid label selector operator", crate::gofmt::quote(.0))]
    InvalidOperator(String),
}

/// The error of [`Selector::parse`].
pub type ParseError = Error;

/// A requirement operator (`selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>1`
    GreaterThan,
    /// `key<1`
    LessThan,
}

impl Operator {
    /// Upstream's operator string (`=`, `in`, `exists`, `gt`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equals => "=",
            Self::DoubleEquals => "==",
            Self::NotEquals => "!=",
            Self::In => "in",
            Self::NotIn => "notin",
            Self::Exists => "exists",
            Self::DoesNotExist => "!",
            Self::GreaterThan => "gt",
            Self::LessThan => "lt",
        }
    }
}

/// One `key op values` term of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Upstream's `NewRequirement`: checks the key, the values and their count for `operator`.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, Error> {
        Self::new_at(key, operator, values, &Path::default())
    }

    fn new_at(
        key: &str,
        operator: Operator,
        values: Vec<String>,
        path: &Path,
    ) -> Result<Self, Error> {
        let mut errs = Vec::new();
        let key_errs = validation::is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("key"),
                key,
                key_errs.join("; "),
            ));
        }
        errs.extend(check_value_count(operator, &values, &path.child("values")));
        for (i, v) in values.iter().enumerate() {
            let value_errs = validation::is_valid_label_value(v);
            if !value_errs.is_empty() {
                let p = path.child("values").index(i).key(key);
                errs.push(FieldError::invalid(&p, v.as_str(), value_errs.join("; ")));
            }
        }
        if !errs.is_empty() {
            return Err(Error::InvalidRequirement(errs));
        }
        Ok(Self {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let has = |v: &String| self.values.contains(v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => self.matches_number(value),
        }
    }

    fn matches_number(&self, value: Option<&String>) -> bool {
        let Some(actual) = value.and_then(|v| v.parse::<i64>().ok()) else {
            return false;
        };
        let [wanted] = self.values.as_slice() else {
            return false;
        };
        let Ok(wanted) = wanted.parse::<i64>() else {
            return false;
        };
        match self.operator {
            Operator::GreaterThan => actual > wanted,
            _ => actual < wanted,
        }
    }
}

fn check_value_count(operator: Operator, values: &[String], path: &Path) -> Vec<FieldError> {
    let as_value = || serde_json::Value::from(values.to_vec());
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => vec![FieldError::invalid(
            path,
            as_value(),
            "for 'in', 'notin' operators, values set can't be empty",
        )],
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            vec![FieldError::invalid(
                path,
                as_value(),
                "exact-match compatibility requires one single value",
            )]
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            vec![FieldError::invalid(
                path,
                as_value(),
                "values set must be empty for exists and does not exist",
            )]
        }
        Operator::GreaterThan | Operator::LessThan => {
            let mut errs = Vec::new();
            if values.len() != 1 {
                errs.push(FieldError::invalid(
                    path,
                    as_value(),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        &path.index(i),
                        v.as_str(),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
            errs
        }
        _ => Vec::new(),
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        f.write_str(&sorted.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: requirements that must all hold, or the selector that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// The selector that matches every set of labels (also what `""` parses to).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches nothing (upstream's `labels.Nothing()`, the value of a nil
    /// `LabelSelector`).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the string syntax, as upstream's `labels.Parse`.
    pub fn parse(selector: &str) -> Result<Self, Error> {
        let mut requirements = parser::parse(selector)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// `key=value` for every entry (upstream's `SelectorFromSet`), without validation.
    pub fn from_map(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Self {
            requirements,
            nothing: false,
        }
    }

    /// Upstream's `LabelSelectorAsSelector`: `matchLabels` as `=` and `matchExpressions` as
    /// `in`/`notin`/exists/does-not-exist; an empty selector matches everything.
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Self, Error> {
        let mut requirements = Vec::new();
        for (k, v) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(Error::InvalidOperator(other.to_owned())),
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(&expr.key, operator, values)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// [`Self::from_label_selector`] for an optional selector: `None` matches nothing, as
    /// upstream treats a nil `*LabelSelector`.
    pub fn from_optional_label_selector(selector: Option<&LabelSelector>) -> Result<Self, Error> {
        match selector {
            Some(s) => Self::from_label_selector(s),
            None => Ok(Self::nothing()),
        }
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this is the selector that matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value `label` must have, if the selector pins it (`=`, `==`, or `in` with one
    /// value on the first requirement for that key); useful to narrow a list by index.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [only]) => Some(only),
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

mod parser;

/// The parsed value set of `in (..)`: sorted and de-duplicated, as upstream's `sets.String`.
type ValueSet = BTreeSet<String>;

#[cfg(test)]
#[path = "labels_tests.rs"]
mod tests;
