//! One node of a CRD schema (`JSONSchemaProps`), read from its JSON with the keyword shapes
//! checked. The same node type serves the structural part and the value validations nested
//! under `allOf`/`anyOf`/`oneOf`/`not`; [`super::check`] says which keywords each may carry.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

use crate::validation::{FieldError, Path};

/// The OpenAPI v3 types a CRD schema may name (upstream's `openapiV3Types`, sorted).
const OPENAPI_V3_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// Keywords upstream's CRD validation refuses outright, with their messages.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("id", "id is not supported"),
    ("additionalItems", "additionalItems is not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("definitions", "definitions is not supported"),
    ("dependencies", "dependencies is not supported"),
    ("$ref", "$ref is not supported"),
];

/// A compiled `pattern`.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    pub source: String,
    pub regex: Regex,
}

/// `additionalProperties`: a boolean or a schema.
#[derive(Clone, Debug)]
pub(crate) enum Additional {
    Bool(bool),
    Schema(Box<Node>),
}

impl Additional {
    /// The schema, when one is given.
    pub fn schema(&self) -> Option<&Node> {
        match self {
            Additional::Schema(s) => Some(s),
            Additional::Bool(_) => None,
        }
    }
}

/// One schema node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    /// The node's JSON as written (for the few checks upstream makes by deep equality).
    pub raw: Value,
    pub ty: String,
    pub format: String,
    pub nullable: bool,
    pub default: Option<Value>,
    pub has_title: bool,
    pub has_description: bool,
    pub has_external_docs: bool,
    pub has_x_validations: bool,
    pub properties: BTreeMap<String, Node>,
    pub additional: Option<Additional>,
    pub items: Option<Box<Node>>,
    pub required: Vec<String>,
    pub enumeration: Option<Vec<Value>>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub pattern: Option<Pattern>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub unique_items: bool,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub preserve_unknown: Option<bool>,
    pub embedded: bool,
    pub int_or_string: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
}

impl Node {
    /// Whether unknown fields below this node are kept.
    pub fn preserves_unknown(&self) -> bool {
        self.preserve_unknown == Some(true)
    }

    /// The types a value may have: none (anything), one, or `integer,string`.
    pub fn types(&self) -> Vec<&str> {
        if self.int_or_string {
            vec!["integer", "string"]
        } else if self.ty.is_empty() {
            vec![]
        } else {
            vec![self.ty.as_str()]
        }
    }
}

/// Reads a schema node; malformed keywords become errors under `at`.
pub(crate) fn parse(v: &Value, at: &Path, errs: &mut Vec<FieldError>) -> Node {
    let Some(obj) = v.as_object() else {
        errs.push(FieldError::invalid(at, v.clone(), "must be an object"));
        return Node::default();
    };
    let mut r = Reader { obj, at, errs };
    let mut n = Node {
        raw: v.clone(),
        ty: r.string("type"),
        format: r.string("format"),
        nullable: r.boolean("nullable"),
        default: obj.get("default").filter(|d| !d.is_null()).cloned(),
        has_title: !r.string("title").is_empty(),
        has_description: !r.string("description").is_empty(),
        has_external_docs: obj.get("externalDocs").is_some_and(|d| !d.is_null()),
        has_x_validations: obj
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty()),
        required: r.strings("required"),
        enumeration: obj.get("enum").and_then(Value::as_array).cloned(),
        maximum: r.number("maximum"),
        exclusive_maximum: r.boolean("exclusiveMaximum"),
        minimum: r.number("minimum"),
        exclusive_minimum: r.boolean("exclusiveMinimum"),
        multiple_of: r.number("multipleOf"),
        max_length: r.count("maxLength"),
        min_length: r.count("minLength"),
        pattern: r.pattern(),
        max_items: r.count("maxItems"),
        min_items: r.count("minItems"),
        unique_items: r.boolean("uniqueItems"),
        max_properties: r.count("maxProperties"),
        min_properties: r.count("minProperties"),
        preserve_unknown: r.opt_boolean("x-kubernetes-preserve-unknown-fields"),
        embedded: r.boolean("x-kubernetes-embedded-resource"),
        int_or_string: r.boolean("x-kubernetes-int-or-string"),
        list_type: r.opt_string("x-kubernetes-list-type"),
        list_map_keys: r.strings("x-kubernetes-list-map-keys"),
        map_type: r.opt_string("x-kubernetes-map-type"),
        ..Node::default()
    };
    r.check_keywords(&n);
    n.properties = r.schema_map("properties");
    n.additional = r.additional();
    n.items = r.items();
    n.all_of = r.schema_list("allOf");
    n.any_of = r.schema_list("anyOf");
    n.one_of = r.schema_list("oneOf");
    n.not = obj
        .get("not")
        .filter(|x| !x.is_null())
        .map(|x| Box::new(parse(x, &at.child("not"), r.errs)));
    n
}

/// Typed access to the keywords of one schema object.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    at: &'a Path,
    errs: &'a mut Vec<FieldError>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        let obj: &'a Map<String, Value> = self.obj;
        obj.get(key).filter(|v| !v.is_null())
    }

    fn bad(&mut self, key: &str, detail: &str) {
        let value = self.obj.get(key).cloned().unwrap_or_default();
        self.errs
            .push(FieldError::invalid(&self.at.child(key), value, detail));
    }

    fn opt_string(&mut self, key: &str) -> Option<String> {
        let v = self.get(key)?;
        match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.bad(key, "must be a string");
                None
            }
        }
    }

    fn string(&mut self, key: &str) -> String {
        self.opt_string(key).unwrap_or_default()
    }

    fn opt_boolean(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.bad(key, "must be a boolean");
                None
            }
        }
    }

    fn boolean(&mut self, key: &str) -> bool {
        self.opt_boolean(key).unwrap_or(false)
    }

    fn number(&mut self, key: &str) -> Option<f64> {
        let v = self.get(key)?;
        let n = v.as_f64();
        if n.is_none() {
            self.bad(key, "must be a number");
        }
        n
    }

    fn count(&mut self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        let n = v.as_u64();
        if n.is_none() {
            self.bad(key, "must be a non-negative integer");
        }
        n
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        let Some(v) = self.get(key) else {
            return vec![];
        };
        match v.as_array() {
            Some(a) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            _ => {
                self.bad(key, "must be a list of strings");
                vec![]
            }
        }
    }

    fn pattern(&mut self) -> Option<Pattern> {
        let source = self.opt_string("pattern").filter(|p| !p.is_empty())?;
        match Regex::new(&source) {
            Ok(regex) => Some(Pattern { source, regex }),
            Err(e) => {
                let detail = format!(
                    "must be a valid regular expression, but isn't: error parsing regexp: {}",
                    regex_error(&e)
                );
                self.errs.push(FieldError::invalid(
                    &self.at.child("pattern"),
                    source,
                    detail,
                ));
                None
            }
        }
    }

    /// Upstream's per-node keyword rules (`specStandardValidatorV3`).
    fn check_keywords(&mut self, n: &Node) {
        if !n.ty.is_empty() && n.ty != "null" && !OPENAPI_V3_TYPES.contains(&n.ty.as_str()) {
            self.errs.push(FieldError::not_supported(
                &self.at.child("type"),
                n.ty.clone(),
                OPENAPI_V3_TYPES,
            ));
        }
        if n.ty == "null" {
            self.errs.push(FieldError::forbidden(
                &self.at.child("type"),
                "type cannot be set to null, use nullable as an alternative",
            ));
        }
        for (key, detail) in UNSUPPORTED {
            if self.get(key).is_some() {
                self.errs
                    .push(FieldError::forbidden(&self.at.child(key), *detail));
            }
        }
    }

    fn schema_map(&mut self, key: &str) -> BTreeMap<String, Node> {
        let Some(v) = self.get(key) else {
            return BTreeMap::new();
        };
        let Some(m) = v.as_object() else {
            self.bad(key, "must be an object");
            return BTreeMap::new();
        };
        let base = self.at.child(key);
        m.iter()
            .map(|(k, s)| (k.clone(), parse(s, &base.key(k), self.errs)))
            .collect()
    }

    fn schema_list(&mut self, key: &str) -> Vec<Node> {
        let Some(v) = self.get(key) else {
            return vec![];
        };
        let Some(a) = v.as_array() else {
            self.bad(key, "must be a list");
            return vec![];
        };
        let base = self.at.child(key);
        a.iter()
            .enumerate()
            .map(|(i, s)| parse(s, &base.index(i), self.errs))
            .collect()
    }

    fn additional(&mut self) -> Option<Additional> {
        let v = self.get("additionalProperties")?;
        match v {
            Value::Bool(b) => Some(Additional::Bool(*b)),
            _ => Some(Additional::Schema(Box::new(parse(
                v,
                &self.at.child("additionalProperties"),
                self.errs,
            )))),
        }
    }

    fn items(&mut self) -> Option<Box<Node>> {
        let v = self.get("items")?;
        if v.is_array() {
            self.errs.push(FieldError::forbidden(
                &self.at.child("items"),
                "items must be a schema object and not an array",
            ));
            return None;
        }
        Some(Box::new(parse(v, &self.at.child("items"), self.errs)))
    }
}

/// The one-line cause of a regex error (the crate's message spans several lines).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_owned())
        .unwrap_or(text)
}
