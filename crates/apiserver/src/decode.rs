//! Request body decoding with upstream's limits: bodies over 3 MiB are refused (413) before they
//! are read whole, nesting is bounded, and every error is a `Status`.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Upstream's limit on request bodies.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Decodes a JSON body (serde_json bounds nesting at 128 levels).
pub fn json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding request body as JSON: {e}")))
}

/// Decodes a YAML or JSON body (JSON is YAML).
pub fn yaml_or_json(body: &[u8]) -> ApiResult<Value> {
    let trimmed = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(trimmed, Some(b'{') | Some(b'[')) {
        return json(body);
    }
    let value: Value = serde_saphyr::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding request body as YAML: {e}")))?;
    if depth(&value) > 100 {
        return Err(ApiError::BadRequest(
            "request body is nested too deeply".into(),
        ));
    }
    Ok(value)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
