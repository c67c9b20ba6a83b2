//! Structural schemas of CustomResourceDefinitions, as upstream's
//! `k8s.io/apiextensions-apiserver/pkg/apiserver/schema`: a CRD version's `openAPIV3Schema` is
//! checked to be structural ([`Structural::new`], with upstream's paths and messages), then used on
//! every request to [prune](Structural::prune) unknown fields, [apply defaults](Structural::apply_defaults)
//! and [validate](Structural::validate) custom resources.
//!
//! Pure: JSON in, JSON and field errors out.

mod check;
mod crdrules;
mod default;
mod format;
mod listtype;
mod node;
mod prune;
mod validate;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::validation::{FieldError, Path};
use node::Node;

/// A CRD version's openAPIV3Schema, checked to be structural and compiled for use on every request.
#[derive(Clone, Debug)]
pub struct Structural {
    root: Node,
}

impl Structural {
    /// `schema` is the JSON of `spec.versions[i].schema.openAPIV3Schema`; `at` is that field's
    /// path. Errors are upstream's: the keyword rules of CRD validation, the structural-schema
    /// invariants (`...properties[spec].type: Required value: must not be empty for specified
    /// object fields`) and the validity of defaults.
    pub fn new(schema: &Value, at: &Path) -> Result<Structural, Vec<FieldError>> {
        let mut errs = Vec::new();
        let root = node::parse(schema, at, &mut errs);
        let structural = check::structural_errors(&root, at);
        let ok = structural.is_empty();
        // Upstream's order: root `nullable`, the structural errors, then the keyword rules.
        let mut all = crdrules::crd_rule_errors(&root, at);
        let nullable_at = at.child("nullable");
        let split = usize::from(all.first().is_some_and(|e| e.field == nullable_at.as_str()));
        let rules = all.split_off(split);
        all.extend(structural);
        all.extend(rules);
        all.extend(errs);
        if ok && all.is_empty() {
            defaults_errors(&root, at, &mut all);
        }
        if all.is_empty() {
            Ok(Structural { root })
        } else {
            Err(all)
        }
    }

    /// Drops fields the schema does not specify (not under `x-kubernetes-preserve-unknown-fields`);
    /// `apiVersion`, `kind` and `metadata` of the root and of `x-kubernetes-embedded-resource`
    /// objects stay. Returns the removed fields' paths as upstream's fieldValidation warnings print
    /// them (`unknown field "spec.foo"` → `spec.foo`), sorted.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut out = prune::prune(obj, &self.root, true);
        out.sort();
        out
    }

    /// Applies `default`s where a field is absent, or null while not nullable (upstream applies
    /// them on read from storage and on create and update requests).
    pub fn apply_defaults(&self, obj: &mut Value) {
        default::apply(obj, &self.root);
    }

    /// Validates `obj` against the schema; paths are rooted at the object (`spec.replicas`) and
    /// messages are upstream's. The root's `metadata` is checked only for what the schema says
    /// about `name` and `generateName` (the API server validates ObjectMeta).
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let root = Path::default();
        let mut errs = validate::validate(&self.root, obj, &root, true);
        listtype::check(&self.root, obj, &root, &mut errs);
        errs
    }

    /// The schema's `x-kubernetes-preserve-unknown-fields` at the root.
    pub fn preserves_unknown_fields(&self) -> bool {
        self.root.preserves_unknown()
    }
}

/// `ValidateDefaults`: every default validates against its own schema and has nothing pruning
/// would drop.
fn defaults_errors(s: &Node, p: &Path, errs: &mut Vec<FieldError>) {
    if let Some(d) = &s.default {
        let at = p.child("default");
        errs.extend(validate::validate(s, d, &at, false));
        let mut pruned = d.clone();
        if !prune::prune(&mut pruned, s, s.embedded).is_empty() {
            errs.push(FieldError::invalid(
                &at,
                d.clone(),
                "must not have unknown fields",
            ));
        }
        listtype::check(s, d, &at, errs);
    }
    for (k, f) in &s.properties {
        defaults_errors(f, &p.child("properties").key(k), errs);
    }
    if let Some(items) = &s.items {
        defaults_errors(items, &p.child("items"), errs);
    }
    if let Some(add) = s.additional.as_ref().and_then(|a| a.schema()) {
        defaults_errors(add, &p.child("additionalProperties"), errs);
    }
}
