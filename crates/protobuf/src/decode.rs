//! Protobuf bytes of a message -> its Kubernetes JSON form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};

use crate::Error;
use crate::codec::{MAGIC, MAX_DEPTH, decode_envelope};
use crate::schema::{Field, Schema, Shape, Special, Ty};
use crate::special;
use crate::wire::{self, Reader, WireType};

/// Decodes the message `id` from `buf`.
pub(crate) fn message(
    schema: &Schema,
    id: usize,
    buf: &[u8],
    depth: usize,
) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    match schema.message(id).special {
        Special::None => {
            let mut obj = Map::new();
            fields_into(schema, id, buf, depth, &mut obj)?;
            Ok(Value::Object(obj))
        }
        Special::RawExtension => raw_extension(schema, buf, depth),
        other => special::decode(other, buf),
    }
}

/// Decodes the fields of message `id` into `obj` (the message's own object, or its parent's
/// for an inlined message).
fn fields_into(
    schema: &Schema,
    id: usize,
    buf: &[u8],
    depth: usize,
    obj: &mut Map<String, Value>,
) -> Result<(), Error> {
    let msg = schema.message(id);
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.key()? {
        match msg.field(tag) {
            Some(field) => field_into(schema, field, wire, &mut r, depth, obj)
                .map_err(|e| e.within(&field.json))?,
            None => r.skip(wire)?,
        }
    }
    Ok(())
}

fn field_into(
    schema: &Schema,
    field: &Field,
    wire: WireType,
    r: &mut Reader<'_>,
    depth: usize,
    obj: &mut Map<String, Value>,
) -> Result<(), Error> {
    if field.inline {
        let Ty::Message(id) = field.ty else {
            return Err(Error::malformed("inlined field is not a message"));
        };
        wire::expect(wire, WireType::Len)?;
        return fields_into(schema, id, r.bytes()?, depth + 1, obj);
    }
    match field.shape {
        Shape::Single => {
            let v = value(schema, field.ty, wire, r, depth)?;
            let unset = v.is_null() || (field.omit_zero && is_zero(&v));
            if !unset {
                obj.insert(field.json.clone(), v);
            } else {
                obj.remove(&field.json);
            }
        }
        Shape::Repeated => {
            let list = obj
                .entry(field.json.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(list) = list else {
                return Err(Error::malformed("repeated field decoded twice"));
            };
            repeated(schema, field.ty, wire, r, depth, list)?;
        }
        Shape::Map => {
            wire::expect(wire, WireType::Len)?;
            let (key, v) = map_entry(schema, field.ty, r.bytes()?, depth)?;
            let map = obj
                .entry(field.json.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = map {
                map.insert(key, v);
            }
        }
    }
    Ok(())
}

/// Go's zero values, which a non-pointer `omitempty` field leaves out of its JSON.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// Appends the element(s) of one occurrence of a repeated field: one element, or a packed run
/// of numbers.
fn repeated(
    schema: &Schema,
    ty: Ty,
    wire: WireType,
    r: &mut Reader<'_>,
    depth: usize,
    list: &mut Vec<Value>,
) -> Result<(), Error> {
    let packable = matches!(ty, Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double);
    if packable && wire == WireType::Len {
        let mut packed = Reader::new(r.bytes()?);
        let element = if ty == Ty::Double {
            WireType::Fixed64
        } else {
            WireType::Varint
        };
        while !packed.is_empty() {
            list.push(value(schema, ty, element, &mut packed, depth)?);
        }
        return Ok(());
    }
    let v =
        value(schema, ty, wire, r, depth).map_err(|e| e.within(&format!("[{}]", list.len())))?;
    list.push(v);
    Ok(())
}

/// One value of type `ty` that arrived with wire type `wire`.
fn value(
    schema: &Schema,
    ty: Ty,
    wire: WireType,
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<Value, Error> {
    let want = match ty {
        Ty::Bool | Ty::Int32 | Ty::Int64 => WireType::Varint,
        Ty::Double => WireType::Fixed64,
        Ty::String | Ty::Bytes | Ty::Message(_) => WireType::Len,
    };
    wire::expect(wire, want)?;
    Ok(match ty {
        Ty::String => Value::String(String::from_utf8_lossy(r.bytes()?).into_owned()),
        Ty::Bytes => Value::String(STANDARD.encode(r.bytes()?)),
        Ty::Bool => Value::Bool(r.varint()? != 0),
        Ty::Int32 => Value::from(r.varint()? as i32),
        Ty::Int64 => Value::from(r.varint()? as i64),
        Ty::Double => {
            let f = f64::from_bits(r.fixed64()?);
            Value::Number(Number::from_f64(f).ok_or_else(|| Error::malformed("non-finite double"))?)
        }
        Ty::Message(id) => message(schema, id, r.bytes()?, depth + 1)?,
    })
}

/// A map entry `{1: key, 2: value}`; a missing value is the value type's zero.
fn map_entry(schema: &Schema, ty: Ty, buf: &[u8], depth: usize) -> Result<(String, Value), Error> {
    let (mut key, mut v) = (String::new(), None);
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => {
                wire::expect(wire, WireType::Len)?;
                key = String::from_utf8_lossy(r.bytes()?).into_owned();
            }
            2 => v = Some(value(schema, ty, wire, &mut r, depth)?),
            _ => r.skip(wire)?,
        }
    }
    let v = match v {
        Some(v) => v,
        None => match ty {
            Ty::String | Ty::Bytes => Value::String(String::new()),
            Ty::Message(id) => message(schema, id, &[], depth + 1)?,
            _ => Value::from(0),
        },
    };
    Ok((key, v))
}

/// `runtime.RawExtension {1: raw}`: embedded JSON, or a nested protobuf envelope (watch events,
/// list items written by a protobuf encoder).
fn raw_extension(schema: &Schema, buf: &[u8], depth: usize) -> Result<Value, Error> {
    let raw = special::bytes_field(buf, 1)?.unwrap_or_default();
    if raw.starts_with(&MAGIC) {
        return decode_envelope(schema, raw, None, depth + 1);
    }
    special::decode_raw_json(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(name: &str, buf: &[u8]) -> Result<Value, Error> {
        let schema = Schema::load(&Map::new());
        let id = schema
            .id(name)
            .ok_or_else(|| Error::malformed("no such message"))?;
        message(&schema, id, buf, 0)
    }

    const POD_SC: &str = "io.k8s.api.core.v1.PodSecurityContext";

    #[test]
    fn repeated_numbers_packed_or_not() {
        // supplementalGroups (4): packed [1, 2, 3], then one unpacked 4
        let got = decode(POD_SC, &[0x22, 0x03, 1, 2, 3, 0x20, 4]);
        assert_eq!(got, Ok(json!({"supplementalGroups": [1, 2, 3, 4]})));
    }

    #[test]
    fn unknown_fields_are_skipped_and_the_last_scalar_wins() {
        // runAsUser (2) = 5, unknown field 99 (varint, fixed32, fixed64, bytes), runAsUser = 0
        let buf = [
            0x10, 5, 0x98, 0x06, 1, 0x9d, 0x06, 0, 0, 0, 0, 0x99, 0x06, 0, 0, 0, 0, 0, 0, 0, 0,
            0x9a, 0x06, 1, b'x', 0x10, 0,
        ];
        assert_eq!(decode(POD_SC, &buf), Ok(json!({"runAsUser": 0})));
    }

    #[test]
    fn negative_int32_uses_ten_bytes() {
        // priority (PodSpec 25) = -1
        let mut buf = vec![0xc8, 0x01];
        buf.extend([0xff; 9]);
        buf.push(0x01);
        assert_eq!(
            decode("io.k8s.api.core.v1.PodSpec", &buf),
            Ok(json!({"priority": -1}))
        );
    }

    #[test]
    fn inlined_messages_merge_into_the_parent() {
        // Volume {1: "v", 2: VolumeSource {emptyDir (2): {}}}
        let buf = [0x0a, 1, b'v', 0x12, 0x02, 0x12, 0x00];
        let got = decode("io.k8s.api.core.v1.Volume", &buf);
        assert_eq!(got, Ok(json!({"name": "v", "emptyDir": {}})));
    }

    #[test]
    fn map_entries_without_a_value_hold_the_zero_value() {
        // ConfigMap data (2) entry {1: "k"}
        let got = decode(
            "io.k8s.api.core.v1.ConfigMap",
            &[0x12, 0x03, 0x0a, 0x01, b'k'],
        );
        assert_eq!(got, Ok(json!({"data": {"k": ""}})));
    }

    #[test]
    fn doubles_must_be_finite() {
        // NaN has no JSON form
        let schema = Schema::load(&Map::new());
        let mut r = Reader::new(&[0, 0, 0, 0, 0, 0, 0xf8, 0x7f]);
        assert!(value(&schema, Ty::Double, WireType::Fixed64, &mut r, 0).is_err());
        let mut r = Reader::new(&[0, 0, 0, 0, 0, 0, 0xf8, 0x3f]);
        assert_eq!(
            value(&schema, Ty::Double, WireType::Fixed64, &mut r, 0),
            Ok(json!(1.5))
        );
    }
}
