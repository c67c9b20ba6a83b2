//! Strategic merge patch, applied as upstream's `strategicpatch.StrategicMergePatch`.
//!
//! Maps merge recursively and `null` deletes a key. Lists follow their field's patch strategy
//! ([`PatchSchema`]): `merge` with a merge key merges items by key, `merge` on a list of
//! primitives merges them as a set, anything else replaces the list. The directives upstream
//! defines are honoured: `$patch: replace | delete` (on maps and as list items), `$patch: merge`
//! (rejected, as upstream), `$setElementOrder/<field>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<field>`. Malformed patches give an [`Error`], never a panic.
//!
//! Upstream's quirks are kept where a client could observe them: a `$patch` directive inside a
//! value that is added wholesale drops that value, a field with strategy `replace` takes the
//! patch value verbatim, and the error messages and their HTTP status codes are upstream's.

mod list;
mod merge;
mod schema;

pub use schema::{EmptySchema, JsonSchemaDefinitions};

use serde_json::Value;

use crate::gofmt;

/// The `$patch` directive key.
pub const DIRECTIVE_MARKER: &str = "$patch";
/// The `$retainKeys` directive key.
pub const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
/// The prefix of `$setElementOrder/<field>` keys.
pub const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
/// The prefix of `$deleteFromPrimitiveList/<field>` keys.
pub const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

/// A field's `x-kubernetes-patch-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// No strategy declared: lists are replaced, maps merged.
    #[default]
    Default,
    /// `replace`: the patch value replaces the field, list or map.
    Replace,
    /// `merge`: lists merge (by merge key, or as a set of primitives), maps merge.
    Merge,
    /// `retainKeys`: as [`Strategy::Default`]; the patch may carry a `$retainKeys` list.
    RetainKeys,
    /// `merge,retainKeys`: as [`Strategy::Merge`]; items may carry `$retainKeys`.
    MergeRetainKeys,
}

impl Strategy {
    /// Parses an `x-kubernetes-patch-strategy` value (`merge`, `retainKeys`,
    /// `merge,retainKeys`, `retainKeys,merge`, `replace`); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" => Self::Default,
            "replace" => Self::Replace,
            "merge" => Self::Merge,
            "retainKeys" => Self::RetainKeys,
            "merge,retainKeys" | "retainKeys,merge" => Self::MergeRetainKeys,
            _ => return None,
        })
    }

    /// Whether lists with this strategy merge.
    pub fn merges(self) -> bool {
        matches!(self, Self::Merge | Self::MergeRetainKeys)
    }
}

/// What the patch needs to know about one field of one definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPatchInfo {
    /// The definition of the field's map value or list item, if it is an object type.
    pub child: Option<String>,
    /// Whether the field is a list.
    pub list: bool,
    /// The field's patch strategy.
    pub strategy: Strategy,
    /// The field's `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<String>,
}

/// Patch metadata per definition and field; `None` for unknown fields (treated as having no
/// strategy and an unknown type).
pub trait PatchSchema {
    /// The metadata of `field` of definition `def` (e.g. `io.k8s.api.core.v1.PodSpec`,
    /// `containers`).
    fn lookup(&self, def: &str, field: &str) -> Option<FieldPatchInfo>;
}

/// Why a patch could not be applied. `Display` is upstream's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The document or patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A list holds lists.
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// A `$deleteFromPrimitiveList` key is malformed.
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    /// `$retainKeys` is not a list, or the patch sets a key it does not list.
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    /// A `$setElementOrder` key is malformed.
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    /// A list item lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The item, rendered as Go does (`map[a:b]`).
        map: String,
        /// The merge key.
        key: String,
    },
    /// A value has the wrong JSON type for its place.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// The Go type name expected.
        expected: &'static str,
        /// The Go type name received.
        actual: &'static str,
    },
    /// A `$patch` directive has an unknown value.
    #[error("unknown patch type: {patch_type} in map: {map}")]
    BadPatchType {
        /// The directive value.
        patch_type: String,
        /// The map holding it.
        map: String,
    },
    /// `$patch: merge` inside a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A list of maps has strategy `merge` but no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyForList(String),
    /// A list mixes item types.
    #[error("list element types are not identical: {0}")]
    ElementTypesNotIdentical(String),
    /// `$setElementOrder` names a list that is empty in both document and patch.
    #[error("no elements in any of the given slices")]
    NoElements,
    /// The patch list is not in the order its `$setElementOrder` list gives.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch {
        /// The patch list, rendered as Go does.
        patch: String,
        /// The `$setElementOrder` list, rendered as Go does.
        order: String,
    },
    /// An item of a merging list is not a map.
    #[error("value for key {0} is not a map")]
    NotAMap(usize),
}

impl Error {
    /// The HTTP status upstream's API server answers with: 400 for malformed directives and
    /// documents, 422 for lists of lists, 500 for the rest (upstream passes those through
    /// unclassified).
    pub fn status_code(&self) -> u16 {
        match self {
            Self::BadJsonDoc
            | Self::BadPatchFormatForPrimitiveList
            | Self::BadPatchFormatForRetainKeys
            | Self::BadPatchFormatForSetElementOrderList => 400,
            Self::NoListOfLists => 422,
            _ => 500,
        }
    }

    fn no_merge_key(map: &serde_json::Map<String, Value>, key: &str) -> Self {
        Self::NoMergeKey {
            map: gofmt::v(&Value::Object(map.clone())),
            key: key.to_owned(),
        }
    }

    fn bad_arg_type(expected: &'static str, actual: Option<&Value>) -> Self {
        Self::BadArgType {
            expected,
            actual: gofmt::type_name(actual),
        }
    }
}

/// Applies `patch` to `original` (both JSON objects; `null` reads as `{}`), where `definition` is
/// the schema definition of the object (e.g. `io.k8s.api.apps.v1.Deployment`).
pub fn strategic_merge_patch(
    original: Value,
    patch: Value,
    schema: &dyn PatchSchema,
    definition: &str,
) -> Result<Value, Error> {
    let original = into_object(original)?;
    let patch = into_object(patch)?;
    let merger = merge::Merger { schema };
    merger
        .merge_map(original, patch, Some(definition))
        .map(Value::Object)
}

fn into_object(value: Value) -> Result<serde_json::Map<String, Value>, Error> {
    match value {
        Value::Null => Ok(serde_json::Map::new()),
        Value::Object(map) => Ok(map),
        _ => Err(Error::BadJsonDoc),
    }
}

/// JSON equality as Go's `==` on decoded values: numbers compare numerically.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
