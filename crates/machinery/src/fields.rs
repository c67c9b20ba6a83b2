//! Field selectors as upstream's `k8s.io/apimachinery/pkg/fields`: `a=b,c==d,e!=f` with
//! backslash escaping of `\`, `,` and `=` in values.
//!
//! An API server checks [`FieldSelector::requirements`] against the field labels the resource
//! supports ([`FieldSelector::ensure_supported`], answering 400 with upstream's
//! `field label not supported: X`), then filters objects with [`FieldSelector::matches`].

use std::collections::BTreeMap;
use std::fmt;

/// Why a field selector is unusable. `Display` is upstream's error text; all are 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A backslash escapes something other than `\`, `,` or `=` (or ends the value).
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// A `,` or `=` appears unescaped in a value (upstream prints the code point as a number).
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedRune(char),
    /// The resource does not support selecting on this field.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// The operator of one term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One `field op value` term, value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The field label, e.g. `metadata.name`, `spec.nodeName`.
    pub field: String,
    /// The operator.
    pub operator: Operator,
    /// The unescaped value.
    pub value: String,
}

impl Requirement {
    fn matches(&self, actual: Option<String>) -> bool {
        let actual = actual.unwrap_or_default();
        match self.operator {
            Operator::Equals => actual == self.value,
            Operator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A parsed field selector: terms that must all hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<Requirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses upstream's syntax (`fields.ParseSelector`): terms are split on unescaped commas and
    /// sorted; each is split at its first `!=`, `==` or `=`; terms with an empty field and value
    /// are dropped.
    pub fn parse(selector: &str) -> Result<Self, Error> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, operator, rhs)) = split_term(term) else {
                return Err(Error::InvalidTerm {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                });
            };
            let value = unescape_value(rhs)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(Requirement {
                field: field.to_owned(),
                operator,
                value,
            });
        }
        Ok(Self { requirements })
    }

    /// A selector of `field=value` terms.
    pub fn from_map(fields: &BTreeMap<String, String>) -> Self {
        let requirements = fields
            .iter()
            .map(|(field, value)| Requirement {
                field: field.clone(),
                operator: Operator::Equals,
                value: value.clone(),
            })
            .collect();
        Self { requirements }
    }

    /// The terms, in upstream's (sorted) order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Fails with [`Error::UnsupportedField`] on the first term whose field `supported` rejects.
    pub fn ensure_supported(&self, supported: impl Fn(&str) -> bool) -> Result<(), Error> {
        match self.requirements.iter().find(|r| !supported(&r.field)) {
            Some(r) => Err(Error::UnsupportedField(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether every term holds; `get` gives a field's value (a missing field reads as `""`).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.field)))
    }

    /// [`Self::matches`] over a map of field values.
    pub fn matches_map(&self, fields: &BTreeMap<String, String>) -> bool {
        self.matches(|f| fields.get(f).cloned())
    }

    /// The value an `=` term pins `field` to, if any.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == Operator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
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

impl std::str::FromStr for FieldSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// Upstream's `EscapeValue`: `\` -> `\\`, `,` -> `\,`, `=` -> `\=`.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Upstream's `UnescapeValue`.
pub fn unescape_value(value: &str) -> Result<String, Error> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(Error::InvalidEscapeSequence(format!("\\{c}")));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(Error::UnescapedRune(c)),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(Error::InvalidEscapeSequence("\\".to_owned()));
    }
    Ok(out)
}

/// Splits on commas not preceded by an escaping backslash (upstream's `splitTerms`).
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first position where `!=`, `==` or `=` starts.
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", Operator::NotEquals),
            ("==", Operator::Equals),
            ("=", Operator::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, rhs));
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
