//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch
//! with the built-in types' patch metadata.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::openapi::Schemas;
use crate::request::BodyType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    /// Server-side apply (applied as a strategic merge of the configuration for now).
    Apply,
}

impl PatchType {
    pub fn from_body_type(t: BodyType) -> ApiResult<PatchType> {
        match t {
            BodyType::JsonPatch => Ok(PatchType::Json),
            BodyType::MergePatch => Ok(PatchType::Merge),
            BodyType::StrategicMergePatch => Ok(PatchType::Strategic),
            BodyType::ApplyPatch => Ok(PatchType::Apply),
            _ => Err(ApiError::UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json".into(),
            )),
        }
    }
}

/// A patch that failed to apply.
#[derive(Debug)]
pub enum PatchError {
    /// The patch is not well-formed (400).
    Malformed(String),
    /// The patch is well-formed but cannot apply to this object (422).
    Conflict(String),
}

impl PatchError {
    pub fn into_api_error(self, _kind: &str, _group: &str, _name: &str) -> ApiError {
        match self {
            PatchError::Malformed(m) => ApiError::BadRequest(m),
            PatchError::Conflict(m) => ApiError::UnprocessableEntity { message: m },
        }
    }
}

/// Decodes a patch body.
pub fn parse(kind: PatchType, body: &[u8]) -> ApiResult<Value> {
    let value: Value = match kind {
        PatchType::Apply => crate::decode::yaml_or_json(body)?,
        _ => crate::decode::json(body)?,
    };
    match (kind, &value) {
        (PatchType::Json, Value::Array(_)) => Ok(value),
        (PatchType::Json, _) => Err(ApiError::BadRequest(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        )),
        (_, Value::Object(_)) => Ok(value),
        _ => Err(ApiError::BadRequest(
            "couldn't get version/kind; json parse error: the patch is not a JSON object".into(),
        )),
    }
}

/// The resourceVersion a patch asks for, which makes it conditional.
pub fn resource_version_of(patch: &Value) -> Option<String> {
    match patch {
        Value::Object(_) => patch["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        Value::Array(ops) => ops.iter().find_map(|op| {
            (op["path"] == "/metadata/resourceVersion" && op["op"] != "test")
                .then(|| op["value"].as_str().map(str::to_string))
                .flatten()
        }),
        _ => None,
    }
}

/// Applies `patch` to `current`.
pub fn apply(
    kind: PatchType,
    current: &Value,
    patch: &Value,
    schemas: &Schemas,
    definition: &str,
) -> Result<Value, PatchError> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                PatchError::Conflict(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic | PatchType::Apply => k8rs_machinery::smp::strategic_merge_patch(
            current.clone(),
            patch.clone(),
            schemas,
            definition,
        )
        .map_err(|e| PatchError::Conflict(e.to_string())),
    }
}
