//! The Kubernetes JSON form of a message -> its protobuf bytes. Fields are written in tag
//! order; JSON properties the message does not have are skipped, `null` means absent.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};

use crate::Error;
use crate::codec::MAX_DEPTH;
use crate::schema::{Field, Schema, Shape, Special, Ty};
use crate::special::{self, type_error};
use crate::wire::{self, WireType};

/// Appends the body of message `id` for the JSON value `v`.
pub(crate) fn message(
    schema: &Schema,
    id: usize,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    match schema.message(id).special {
        Special::None => {
            let obj = v.as_object().ok_or_else(|| type_error("an object", v))?;
            fields(schema, id, obj, out, depth)
        }
        Special::RawExtension => {
            let raw = serde_json::to_vec(v).map_err(|e| Error::encode(e.to_string()))?;
            wire::put_bytes(out, 1, &raw);
            Ok(())
        }
        other => special::encode(other, v, out),
    }
}

fn fields(
    schema: &Schema,
    id: usize,
    obj: &Map<String, Value>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    for field in &schema.message(id).fields {
        if field.inline {
            inline(schema, field, obj, out, depth)?;
            continue;
        }
        match obj.get(&field.json) {
            None | Some(Value::Null) => {}
            Some(v) => {
                field_value(schema, field, v, out, depth).map_err(|e| e.within(&field.json))?
            }
        }
    }
    Ok(())
}

/// An inlined message takes its fields from the parent's object; it is written only when it
/// has any.
fn inline(
    schema: &Schema,
    field: &Field,
    obj: &Map<String, Value>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    let Ty::Message(child) = field.ty else {
        return Ok(());
    };
    let start = out.len();
    let len = wire::put_nested(out, field.tag, |out| {
        fields(schema, child, obj, out, depth + 1)
    })?;
    if len == 0 {
        out.truncate(start);
    }
    Ok(())
}

fn field_value(
    schema: &Schema,
    field: &Field,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    match field.shape {
        Shape::Single => value(schema, field.tag, field.ty, v, out, depth),
        Shape::Repeated => {
            let items = v.as_array().ok_or_else(|| type_error("an array", v))?;
            for (i, item) in items.iter().enumerate() {
                let item = if item.is_null() {
                    &zero(field.ty)
                } else {
                    item
                };
                value(schema, field.tag, field.ty, item, out, depth)
                    .map_err(|e| e.within(&format!("[{i}]")))?;
            }
            Ok(())
        }
        Shape::Map => {
            let map = v.as_object().ok_or_else(|| type_error("an object", v))?;
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                let item = &map[key];
                wire::put_nested(out, field.tag, |out| {
                    wire::put_bytes(out, 1, key.as_bytes());
                    if item.is_null() {
                        Ok(())
                    } else {
                        value(schema, 2, field.ty, item, out, depth)
                    }
                })
                .map_err(|e| e.within(&format!("[{key:?}]")))?;
            }
            Ok(())
        }
    }
}

/// What a `null` element of a repeated field stands for.
fn zero(ty: Ty) -> Value {
    match ty {
        Ty::String | Ty::Bytes => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::Int32 | Ty::Int64 | Ty::Double => Value::from(0),
        Ty::Message(_) => Value::Object(Map::new()),
    }
}

/// Writes one value of type `ty` as field `tag`.
fn value(
    schema: &Schema,
    tag: u32,
    ty: Ty,
    v: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Error> {
    match ty {
        Ty::String => {
            let s = v.as_str().ok_or_else(|| type_error("a string", v))?;
            wire::put_bytes(out, tag, s.as_bytes());
        }
        Ty::Bytes => {
            let s = v.as_str().ok_or_else(|| type_error("a base64 string", v))?;
            let bytes = STANDARD
                .decode(s)
                .or_else(|_| STANDARD_NO_PAD.decode(s))
                .map_err(|e| Error::encode(format!("invalid base64: {e}")))?;
            wire::put_bytes(out, tag, &bytes);
        }
        Ty::Bool => {
            let b = v.as_bool().ok_or_else(|| type_error("a boolean", v))?;
            wire::put_uint(out, tag, u64::from(b));
        }
        Ty::Int32 => {
            let i = integer(v)?;
            let i = i32::try_from(i)
                .map_err(|_| Error::encode(format!("{i} does not fit an int32")))?;
            wire::put_uint(out, tag, i64::from(i) as u64);
        }
        Ty::Int64 => wire::put_uint(out, tag, integer(v)? as u64),
        Ty::Double => {
            let f = v.as_f64().ok_or_else(|| type_error("a number", v))?;
            wire::put_key(out, tag, WireType::Fixed64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Ty::Message(id) => {
            wire::put_nested(out, tag, |out| message(schema, id, v, out, depth + 1))?;
        }
    }
    Ok(())
}

/// A JSON integer; an integral float such as `3.0` is accepted too.
fn integer(v: &Value) -> Result<i64, Error> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) => Ok(f as i64),
        Some(f) => Err(Error::encode(format!("{f} is not an int64"))),
        None => Err(type_error("an integer", v)),
    }
}
