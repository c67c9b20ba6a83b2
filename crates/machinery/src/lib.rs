//! API machinery without IO: what an API server and its clients share about the shape of API
//! requests, modelled on upstream's `k8s.io/apimachinery`.
//!
//! - [`labels`]: label selectors (string syntax, `metav1.LabelSelector`, matching);
//! - [`fields`]: field selectors;
//! - [`validation`]: the field-error model and name, label and `metadata` rules, with
//!   upstream's exact messages;
//! - [`smp`]: strategic merge patch;
//! - [`patchmeta`]: the patch strategies and merge keys of the built-in types;
//! - [`structural`]: CRD structural schemas: pruning, defaulting and validation of custom resources.
//!
//! This crate must stay pure: no IO, no async runtime, no dependency on any other k8rs crate.
//! It depends only on serde, serde_json, thiserror, regex (CRD `pattern`s) and k8s-openapi (for the
//! API types).

mod gofmt;

pub mod fields;
pub mod labels;
pub mod patchmeta;
pub mod smp;
pub mod structural;
pub mod validation;

#[cfg(test)]
mod testschema;
