//! The OpenAPI v2 (swagger) document as gnostic's `openapi.v2.Document` protobuf, which kubectl
//! and client-go's discovery download from `/openapi/v2` with
//! `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`.
//!
//! gnostic's messages are proto3: empty strings, `false` and `0` are not written. Values of
//! free form (`default`, `enum`, `example`, vendor extensions) are `Any {2: yaml}`, whose text
//! is the value's JSON (JSON is YAML, which is how kube-openapi reads them back). Keys this
//! encoder does not model (`xml`, `externalDocs`, `tags`, OAuth security) are left out.

use serde_json::{Map, Value};

use crate::wire;

/// Encodes an OpenAPI v2 JSON document as gnostic's `openapi.v2.Document`.
pub fn encode_openapi_v2(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(doc) = doc.as_object() else {
        return out;
    };
    string(&mut out, 1, doc.get("swagger"));
    object(&mut out, 2, doc.get("info"), info);
    string(&mut out, 3, doc.get("host"));
    string(&mut out, 4, doc.get("basePath"));
    strings(&mut out, 5, doc.get("schemes"));
    strings(&mut out, 6, doc.get("consumes"));
    strings(&mut out, 7, doc.get("produces"));
    object(&mut out, 8, doc.get("paths"), paths);
    object(&mut out, 9, doc.get("definitions"), |out, m| {
        named(out, 1, m, of_object(schema))
    });
    object(&mut out, 10, doc.get("parameters"), |out, m| {
        named(out, 1, m, of_object(parameter))
    });
    if let Some(reqs) = doc.get("security").and_then(Value::as_array) {
        for req in reqs.iter().filter_map(Value::as_object) {
            message(&mut out, 12, |out| {
                named(out, 1, req, |out, v| strings(out, 1, Some(v)))
            });
        }
    }
    object(&mut out, 13, doc.get("securityDefinitions"), |out, m| {
        named(out, 1, m, security_scheme)
    });
    extensions(&mut out, 16, doc);
    out
}

fn info(out: &mut Vec<u8>, m: &Map<String, Value>) {
    string(out, 1, m.get("title"));
    string(out, 2, m.get("version"));
    string(out, 3, m.get("description"));
    string(out, 4, m.get("termsOfService"));
    extensions(out, 7, m);
}

/// `Paths {1: vendor extensions, 2: NamedPathItem}`.
fn paths(out: &mut Vec<u8>, m: &Map<String, Value>) {
    extensions(out, 1, m);
    for (name, item) in m.iter().filter(|(k, _)| !k.starts_with("x-")) {
        if let Some(item) = item.as_object() {
            message(out, 2, |out| {
                wire::put_bytes(out, 1, name.as_bytes());
                message(out, 2, |out| path_item(out, item));
            });
        }
    }
}

fn path_item(out: &mut Vec<u8>, m: &Map<String, Value>) {
    string(out, 1, m.get("$ref"));
    for (tag, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        object(out, tag, m.get(verb), operation);
    }
    parameters_items(out, 9, m.get("parameters"));
    extensions(out, 10, m);
}

fn operation(out: &mut Vec<u8>, m: &Map<String, Value>) {
    strings(out, 1, m.get("tags"));
    string(out, 2, m.get("summary"));
    string(out, 3, m.get("description"));
    string(out, 5, m.get("operationId"));
    strings(out, 6, m.get("produces"));
    strings(out, 7, m.get("consumes"));
    parameters_items(out, 8, m.get("parameters"));
    object(out, 9, m.get("responses"), responses);
    strings(out, 10, m.get("schemes"));
    boolean(out, 11, m.get("deprecated"));
    extensions(out, 13, m);
}

/// Repeated `ParametersItem {1: Parameter | 2: JsonReference}`.
fn parameters_items(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    for p in v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        message(out, tag, |out| match p.get("$ref") {
            Some(r) => message(out, 2, |out| json_reference(out, r, p)),
            None => message(out, 1, |out| parameter(out, p)),
        });
    }
}

fn json_reference(out: &mut Vec<u8>, r: &Value, m: &Map<String, Value>) {
    string(out, 1, Some(r));
    string(out, 2, m.get("description"));
}

/// `Parameter {1: BodyParameter | 2: NonBodyParameter {1: header | 2: formData | 3: query |
/// 4: path}}`.
fn parameter(out: &mut Vec<u8>, p: &Map<String, Value>) {
    match p.get("in").and_then(Value::as_str).unwrap_or_default() {
        "body" => message(out, 1, |out| {
            string(out, 1, p.get("description"));
            string(out, 2, p.get("name"));
            string(out, 3, p.get("in"));
            boolean(out, 4, p.get("required"));
            object(out, 5, p.get("schema"), schema);
            extensions(out, 6, p);
        }),
        "formData" => message(out, 2, |out| message(out, 2, |out| query_like(out, p))),
        "query" => message(out, 2, |out| message(out, 3, |out| query_like(out, p))),
        "header" => message(out, 2, |out| message(out, 1, |out| path_like(out, p))),
        _ => message(out, 2, |out| message(out, 4, |out| path_like(out, p))),
    }
}

/// `QueryParameterSubSchema` and `FormDataParameterSubSchema` (same numbers).
fn query_like(out: &mut Vec<u8>, p: &Map<String, Value>) {
    boolean(out, 1, p.get("required"));
    string(out, 2, p.get("in"));
    string(out, 3, p.get("description"));
    string(out, 4, p.get("name"));
    boolean(out, 5, p.get("allowEmptyValue"));
    string(out, 6, p.get("type"));
    string(out, 7, p.get("format"));
    object(out, 8, p.get("items"), primitives_items);
    string(out, 9, p.get("collectionFormat"));
    any(out, 10, p.get("default"));
    boolean(out, 20, p.get("uniqueItems"));
    any_list(out, 21, p.get("enum"));
    extensions(out, 23, p);
}

/// `PathParameterSubSchema` and `HeaderParameterSubSchema` (same numbers).
fn path_like(out: &mut Vec<u8>, p: &Map<String, Value>) {
    boolean(out, 1, p.get("required"));
    string(out, 2, p.get("in"));
    string(out, 3, p.get("description"));
    string(out, 4, p.get("name"));
    string(out, 5, p.get("type"));
    string(out, 6, p.get("format"));
    object(out, 7, p.get("items"), primitives_items);
    string(out, 8, p.get("collectionFormat"));
    any(out, 9, p.get("default"));
    boolean(out, 19, p.get("uniqueItems"));
    any_list(out, 20, p.get("enum"));
    extensions(out, 22, p);
}

fn primitives_items(out: &mut Vec<u8>, m: &Map<String, Value>) {
    string(out, 1, m.get("type"));
    string(out, 2, m.get("format"));
    object(out, 3, m.get("items"), primitives_items);
    string(out, 4, m.get("collectionFormat"));
    any(out, 5, m.get("default"));
    extensions(out, 18, m);
}

/// `Responses {1: NamedResponseValue {name, ResponseValue {1: Response | 2: JsonReference}}}`.
fn responses(out: &mut Vec<u8>, m: &Map<String, Value>) {
    for (code, r) in m.iter().filter(|(k, _)| !k.starts_with("x-")) {
        let Some(r) = r.as_object() else { continue };
        message(out, 1, |out| {
            wire::put_bytes(out, 1, code.as_bytes());
            message(out, 2, |out| match r.get("$ref") {
                Some(reference) => message(out, 2, |out| json_reference(out, reference, r)),
                None => message(out, 1, |out| {
                    string(out, 1, r.get("description"));
                    object(out, 2, r.get("schema"), |out, s| {
                        message(out, 1, |out| schema(out, s))
                    });
                    extensions(out, 5, r);
                }),
            });
        });
    }
    extensions(out, 2, m);
}

/// `Schema`, gnostic's deterministic JSON schema.
fn schema(out: &mut Vec<u8>, m: &Map<String, Value>) {
    string(out, 1, m.get("$ref"));
    string(out, 2, m.get("format"));
    string(out, 3, m.get("title"));
    string(out, 4, m.get("description"));
    any(out, 5, m.get("default"));
    for (tag, key) in [(6, "multipleOf"), (7, "maximum")] {
        double(out, tag, m.get(key));
    }
    boolean(out, 8, m.get("exclusiveMaximum"));
    double(out, 9, m.get("minimum"));
    boolean(out, 10, m.get("exclusiveMinimum"));
    int(out, 11, m.get("maxLength"));
    int(out, 12, m.get("minLength"));
    string(out, 13, m.get("pattern"));
    int(out, 14, m.get("maxItems"));
    int(out, 15, m.get("minItems"));
    boolean(out, 16, m.get("uniqueItems"));
    int(out, 17, m.get("maxProperties"));
    int(out, 18, m.get("minProperties"));
    strings(out, 19, m.get("required"));
    any_list(out, 20, m.get("enum"));
    match m.get("additionalProperties") {
        Some(Value::Object(s)) => message(out, 21, |out| message(out, 1, |out| schema(out, s))),
        Some(Value::Bool(b)) => message(out, 21, |out| wire::put_uint(out, 2, u64::from(*b))),
        _ => {}
    }
    match m.get("type") {
        Some(t @ Value::String(_)) => message(out, 22, |out| string(out, 1, Some(t))),
        Some(t @ Value::Array(_)) => message(out, 22, |out| strings(out, 1, Some(t))),
        _ => {}
    }
    match m.get("items") {
        Some(Value::Object(s)) => message(out, 23, |out| message(out, 1, |out| schema(out, s))),
        Some(Value::Array(list)) => message(out, 23, |out| schemas(out, 1, list)),
        _ => {}
    }
    if let Some(Value::Array(list)) = m.get("allOf") {
        schemas(out, 24, list);
    }
    object(out, 25, m.get("properties"), |out, p| {
        named(out, 1, p, of_object(schema))
    });
    string(out, 26, m.get("discriminator"));
    boolean(out, 27, m.get("readOnly"));
    any(out, 30, m.get("example"));
    extensions(out, 31, m);
}

fn schemas(out: &mut Vec<u8>, tag: u32, list: &[Value]) {
    for s in list.iter().filter_map(Value::as_object) {
        message(out, tag, |out| schema(out, s));
    }
}

/// `SecurityDefinitionsItem {1: basic | 2: apiKey}`.
fn security_scheme(out: &mut Vec<u8>, v: &Value) {
    let Some(m) = v.as_object() else { return };
    match m.get("type").and_then(Value::as_str) {
        Some("basic") => message(out, 1, |out| {
            string(out, 1, m.get("type"));
            string(out, 2, m.get("description"));
            extensions(out, 3, m);
        }),
        Some("apiKey") => message(out, 2, |out| {
            string(out, 1, m.get("type"));
            string(out, 2, m.get("name"));
            string(out, 3, m.get("in"));
            string(out, 4, m.get("description"));
            extensions(out, 5, m);
        }),
        _ => {}
    }
}

// ------------------------------------------------------------------ field writers

fn message(out: &mut Vec<u8>, tag: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let _ = wire::put_nested::<()>(out, tag, |out| {
        body(out);
        Ok(())
    });
}

/// A JSON object field written as a message, if present.
fn object(
    out: &mut Vec<u8>,
    tag: u32,
    v: Option<&Value>,
    body: impl FnOnce(&mut Vec<u8>, &Map<String, Value>),
) {
    if let Some(m) = v.and_then(Value::as_object) {
        message(out, tag, |out| body(out, m));
    }
}

/// A JSON map as repeated `Named* {1: name, 2: value}`.
fn named(
    out: &mut Vec<u8>,
    tag: u32,
    m: &Map<String, Value>,
    value: impl Fn(&mut Vec<u8>, &Value),
) {
    for (name, v) in m {
        message(out, tag, |out| {
            wire::put_bytes(out, 1, name.as_bytes());
            message(out, 2, |out| value(out, v));
        });
    }
}

/// Adapts a writer of an object's fields to any JSON value (non-objects write nothing).
fn of_object(body: fn(&mut Vec<u8>, &Map<String, Value>)) -> impl Fn(&mut Vec<u8>, &Value) {
    move |out, v| {
        if let Some(m) = v.as_object() {
            body(out, m);
        }
    }
}

fn string(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
        wire::put_bytes(out, tag, s.as_bytes());
    }
}

fn strings(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    for s in v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        wire::put_bytes(out, tag, s.as_bytes());
    }
}

fn boolean(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    if v.and_then(Value::as_bool) == Some(true) {
        wire::put_uint(out, tag, 1);
    }
}

fn int(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    if let Some(i) = v.and_then(Value::as_i64).filter(|i| *i != 0) {
        wire::put_uint(out, tag, i as u64);
    }
}

fn double(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    if let Some(f) = v.and_then(Value::as_f64).filter(|f| *f != 0.0) {
        wire::put_key(out, tag, wire::WireType::Fixed64);
        out.extend_from_slice(&f.to_le_bytes());
    }
}

/// `Any {2: yaml}` with the value's JSON text.
fn any(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    if let Some(v) = v {
        message(out, tag, |out| {
            let text = format!("{v}\n");
            wire::put_bytes(out, 2, text.as_bytes());
        });
    }
}

fn any_list(out: &mut Vec<u8>, tag: u32, v: Option<&Value>) {
    for item in v.and_then(Value::as_array).into_iter().flatten() {
        any(out, tag, Some(item));
    }
}

/// The `x-*` keys of an object as repeated `NamedAny`.
fn extensions(out: &mut Vec<u8>, tag: u32, m: &Map<String, Value>) {
    for (name, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        message(out, tag, |out| {
            wire::put_bytes(out, 1, name.as_bytes());
            any(out, 2, Some(v));
        });
    }
}
