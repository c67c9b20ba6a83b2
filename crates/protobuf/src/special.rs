//! The machinery types whose JSON form is not an object of their proto fields: `Time`,
//! `MicroTime`, `Duration`, `Quantity`, `IntOrString`, `FieldsV1` and Go named string slices
//! (`Verbs`, `ExtraValue`). `RawExtension` lives with the codec, since it can hold a nested
//! protobuf envelope.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde_json::Value;

use crate::Error;
use crate::duration;
use crate::schema::Special;
use crate::wire::{self, Reader, WireType};

/// Seconds of Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which upstream writes as an
/// empty message.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Decodes one of the special messages (everything but `RawExtension`) to its JSON form.
pub(crate) fn decode(special: Special, buf: &[u8]) -> Result<Value, Error> {
    match special {
        Special::Time => decode_time(buf, false),
        Special::MicroTime => decode_time(buf, true),
        Special::Duration => {
            let ns = varint_field(buf, 1)?.unwrap_or(0) as i64;
            Ok(Value::String(duration::format(ns)))
        }
        Special::Quantity => Ok(Value::String(
            string_fields(buf, 1)?.pop().unwrap_or_default(),
        )),
        Special::IntOrString => decode_int_or_string(buf),
        Special::StringList => Ok(Value::Array(
            string_fields(buf, 1)?
                .into_iter()
                .map(Value::String)
                .collect(),
        )),
        Special::FieldsV1 => decode_raw_json(bytes_field(buf, 1)?.unwrap_or_default()),
        Special::None | Special::RawExtension => Err(Error::malformed("not a special message")),
    }
}

/// Encodes the JSON form of a special message (everything but `RawExtension`) as its body.
pub(crate) fn encode(special: Special, v: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
    match special {
        Special::Time => encode_time(v, out, false),
        Special::MicroTime => encode_time(v, out, true),
        Special::Duration => {
            let text = v
                .as_str()
                .ok_or_else(|| type_error("a duration string", v))?;
            let ns = duration::parse(text)
                .ok_or_else(|| Error::encode(format!("invalid duration {text:?}")))?;
            wire::put_uint(out, 1, ns as u64);
            Ok(())
        }
        Special::Quantity => {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(type_error("a quantity", other)),
            };
            wire::put_bytes(out, 1, text.as_bytes());
            Ok(())
        }
        Special::IntOrString => encode_int_or_string(v, out),
        Special::StringList => {
            let items = v
                .as_array()
                .ok_or_else(|| type_error("an array of strings", v))?;
            for item in items {
                let s = item.as_str().ok_or_else(|| type_error("a string", item))?;
                wire::put_bytes(out, 1, s.as_bytes());
            }
            Ok(())
        }
        Special::FieldsV1 => {
            let raw = serde_json::to_vec(v).map_err(|e| Error::encode(e.to_string()))?;
            wire::put_bytes(out, 1, &raw);
            Ok(())
        }
        Special::None | Special::RawExtension => Err(Error::encode("not a special message")),
    }
}

pub(crate) fn type_error(want: &str, got: &Value) -> Error {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Error::encode(format!("expected {want}, got {got}"))
}

/// Raw bytes holding JSON (`FieldsV1`, `RawExtension`); empty bytes are `null`.
pub(crate) fn decode_raw_json(raw: &[u8]) -> Result<Value, Error> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| Error::malformed(format!("embedded JSON: {e}")))
}

fn decode_time(buf: &[u8], micro: bool) -> Result<Value, Error> {
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, WireType::Varint) => seconds = r.varint()? as i64,
            (2, WireType::Varint) => nanos = i64::from(r.varint()? as i32),
            (1 | 2, _) => return Err(Error::malformed("wrong wire type in a timestamp")),
            _ => r.skip(wire)?,
        }
    }
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(Error::malformed(format!(
            "timestamp nanos {nanos} out of range"
        )));
    }
    let nanos = if micro { nanos - nanos % 1_000 } else { 0 };
    let t = DateTime::<Utc>::from_timestamp(seconds, nanos as u32)
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| Error::malformed(format!("timestamp {seconds} out of range")))?;
    let format = if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    Ok(Value::String(format))
}

fn encode_time(v: &Value, out: &mut Vec<u8>, micro: bool) -> Result<(), Error> {
    let text = v
        .as_str()
        .ok_or_else(|| type_error("an RFC 3339 time", v))?;
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| Error::encode(format!("invalid time {text:?}: {e}")))?;
    let seconds = t.timestamp();
    if seconds == GO_ZERO_TIME && t.timestamp_subsec_nanos() == 0 {
        return Ok(());
    }
    let nanos = if micro {
        t.timestamp_subsec_micros() * 1_000
    } else {
        0
    };
    wire::put_uint(out, 1, seconds as u64);
    wire::put_uint(out, 2, u64::from(nanos));
    Ok(())
}

fn decode_int_or_string(buf: &[u8]) -> Result<Value, Error> {
    let (mut kind, mut int, mut string) = (0u64, 0i32, String::new());
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, WireType::Varint) => kind = r.varint()?,
            (2, WireType::Varint) => int = r.varint()? as i32,
            (3, WireType::Len) => string = String::from_utf8_lossy(r.bytes()?).into_owned(),
            (1..=3, _) => return Err(Error::malformed("wrong wire type in an IntOrString")),
            _ => r.skip(wire)?,
        }
    }
    match kind {
        0 => Ok(Value::from(int)),
        1 => Ok(Value::String(string)),
        other => Err(Error::malformed(format!("IntOrString type {other}"))),
    }
}

fn encode_int_or_string(v: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
    match v {
        Value::Number(n) => {
            let i = n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| Error::encode(format!("{n} does not fit an int32")))?;
            wire::put_uint(out, 1, 0);
            wire::put_uint(out, 2, i64::from(i) as u64);
            wire::put_bytes(out, 3, b"");
        }
        Value::String(s) => {
            wire::put_uint(out, 1, 1);
            wire::put_uint(out, 2, 0);
            wire::put_bytes(out, 3, s.as_bytes());
        }
        other => return Err(type_error("an integer or a string", other)),
    }
    Ok(())
}

/// The last varint of field `tag` in `buf`.
fn varint_field(buf: &[u8], tag: u32) -> Result<Option<u64>, Error> {
    let mut found = None;
    let mut r = Reader::new(buf);
    while let Some((t, wire)) = r.key()? {
        if t == tag {
            wire::expect(wire, WireType::Varint)?;
            found = Some(r.varint()?);
        } else {
            r.skip(wire)?;
        }
    }
    Ok(found)
}

/// The last bytes of field `tag` in `buf`.
pub(crate) fn bytes_field(buf: &[u8], tag: u32) -> Result<Option<&[u8]>, Error> {
    let mut found = None;
    let mut r = Reader::new(buf);
    while let Some((t, wire)) = r.key()? {
        if t == tag {
            wire::expect(wire, WireType::Len)?;
            found = Some(r.bytes()?);
        } else {
            r.skip(wire)?;
        }
    }
    Ok(found)
}

/// Every string of field `tag` in `buf`, in order.
fn string_fields(buf: &[u8], tag: u32) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    let mut r = Reader::new(buf);
    while let Some((t, wire)) = r.key()? {
        if t == tag {
            wire::expect(wire, WireType::Len)?;
            found.push(String::from_utf8_lossy(r.bytes()?).into_owned());
        } else {
            r.skip(wire)?;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(special: Special, v: Value) -> Value {
        let mut out = Vec::new();
        assert_eq!(encode(special, &v, &mut out), Ok(()));
        decode(special, &out).unwrap_or(Value::Null)
    }

    #[test]
    fn times_keep_seconds_and_micro_times_microseconds() {
        let t = json!("2024-05-01T12:00:00Z");
        assert_eq!(round_trip(Special::Time, t.clone()), t);
        assert_eq!(
            round_trip(Special::Time, json!("2024-05-01T14:00:00.9+02:00")),
            t
        );
        let m = json!("2024-05-01T12:00:00.123456Z");
        assert_eq!(round_trip(Special::MicroTime, m.clone()), m);
        assert_eq!(
            round_trip(Special::MicroTime, json!("2024-05-01T12:00:00Z")),
            json!("2024-05-01T12:00:00.000000Z")
        );
    }

    #[test]
    fn time_bytes_are_upstreams() {
        let mut out = Vec::new();
        assert_eq!(
            encode(Special::Time, &json!("1970-01-01T00:01:40Z"), &mut out),
            Ok(())
        );
        assert_eq!(out, [0x08, 100, 0x10, 0]);
        assert_eq!(decode(Special::Time, &[]), Ok(Value::Null));
        let mut zero = Vec::new();
        assert_eq!(
            encode(Special::Time, &json!("0001-01-01T00:00:00Z"), &mut zero),
            Ok(())
        );
        assert!(zero.is_empty());
    }

    #[test]
    fn int_or_string_both_ways() {
        assert_eq!(round_trip(Special::IntOrString, json!(8080)), json!(8080));
        assert_eq!(
            round_trip(Special::IntOrString, json!("http")),
            json!("http")
        );
        assert_eq!(round_trip(Special::IntOrString, json!("25%")), json!("25%"));
        let mut out = Vec::new();
        assert_eq!(encode(Special::IntOrString, &json!(80), &mut out), Ok(()));
        assert_eq!(out, [0x08, 0, 0x10, 80, 0x1a, 0]);
        assert!(encode(Special::IntOrString, &json!(1u64 << 40), &mut out).is_err());
        assert!(encode(Special::IntOrString, &json!(true), &mut out).is_err());
    }

    #[test]
    fn quantities_durations_lists_fields() {
        assert_eq!(round_trip(Special::Quantity, json!("500m")), json!("500m"));
        assert_eq!(round_trip(Special::Quantity, json!(2)), json!("2"));
        assert_eq!(
            round_trip(Special::Duration, json!("1h0m0s")),
            json!("1h0m0s")
        );
        assert_eq!(round_trip(Special::Duration, json!("90s")), json!("1m30s"));
        assert_eq!(
            round_trip(Special::StringList, json!(["a", "b"])),
            json!(["a", "b"])
        );
        let f = json!({"f:metadata": {"f:labels": {".": {}}}});
        assert_eq!(round_trip(Special::FieldsV1, f.clone()), f);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(decode(Special::Time, &[0x08]).is_err());
        assert!(decode(Special::Time, &[0x10, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode(Special::Time, &[0x0a, 0x00]).is_err());
        // year 10000, which Go's JSON cannot write
        assert!(decode(Special::Time, &[0x08, 0x80, 0x83, 0xd1, 0xff, 0xaf, 0x07]).is_err());
        assert!(decode(Special::IntOrString, &[0x08, 7]).is_err());
        assert!(decode(Special::FieldsV1, &[0x0a, 1, b'{']).is_err());
        let mut out = Vec::new();
        assert!(encode(Special::Time, &json!("yesterday"), &mut out).is_err());
        assert!(encode(Special::Duration, &json!("soon"), &mut out).is_err());
        assert!(encode(Special::StringList, &json!([1]), &mut out).is_err());
    }
}
