//! The envelope (`k8s\0` + `runtime.Unknown`), kind lookup and watch frames around the message
//! codec.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::schema::Schema;
use crate::wire::{self, Reader, WireType};
use crate::{Error, decode, encode};

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// The deepest message nesting decoded or encoded.
pub const MAX_DEPTH: usize = 100;

const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";

/// Converts between the Kubernetes protobuf wire format of the built-in types and their JSON
/// form. Built once (it parses the embedded schema table); clones share it.
#[derive(Clone)]
pub struct Codec {
    schema: Arc<Schema>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({} messages)", self.schema.messages.len())
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new(&Map::new())
    }
}

impl Codec {
    /// Builds the codec. `definitions` are JSON-schema definitions keyed by upstream definition
    /// name (as k8s-openapi's schemas name them, `io.k8s.api.core.v1.Pod`); the embedded table
    /// already carries upstream's JSON names, the definitions only name fields it lacks.
    pub fn new(definitions: &Map<String, Value>) -> Codec {
        Codec {
            schema: Arc::new(Schema::load(definitions)),
        }
    }

    /// Whether a protobuf schema exists for this kind (custom resources have none: upstream
    /// answers 406 Not Acceptable when such an object is asked for in protobuf only).
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        self.schema.for_kind(api_version, kind).is_some()
    }

    /// Decodes a protobuf body (`k8s\0` + `runtime.Unknown`) into its JSON object, with
    /// `apiVersion` and `kind` set from the envelope.
    pub fn decode(&self, body: &[u8]) -> Result<Value, Error> {
        decode_envelope(&self.schema, body, None, 0)
    }

    /// Like [`Codec::decode`], with the kind to assume when the envelope names none (upstream
    /// decodes into the type the endpoint expects).
    pub fn decode_as(&self, body: &[u8], api_version: &str, kind: &str) -> Result<Value, Error> {
        decode_envelope(&self.schema, body, Some((api_version, kind)), 0)
    }

    /// Encodes a JSON object (which must have `apiVersion` and `kind`) as a protobuf body.
    pub fn encode(&self, obj: &Value) -> Result<Vec<u8>, Error> {
        encode_envelope(&self.schema, obj)
    }

    /// One frame of a protobuf watch stream, as upstream writes it: a 4-byte big-endian length,
    /// then a bare `meta.v1.WatchEvent {1: type, 2: RawExtension {1: raw}}` (upstream's stream
    /// serializer writes no envelope around the event) whose `raw` is the object's full
    /// protobuf body (`k8s\0` + `runtime.Unknown`).
    pub fn encode_watch_event(&self, event_type: &str, obj: &Value) -> Result<Vec<u8>, Error> {
        let object = self.encode(obj)?;
        let mut frame = vec![0u8; 4];
        wire::put_bytes(&mut frame, 1, event_type.as_bytes());
        wire::put_nested::<Error>(&mut frame, 2, |out| {
            wire::put_bytes(out, 1, &object);
            Ok(())
        })?;
        let len =
            u32::try_from(frame.len() - 4).map_err(|_| Error::encode("watch event too large"))?;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        Ok(frame)
    }

    /// Reads one watch frame (length prefix included) back into the event type and object.
    pub fn decode_watch_event(&self, frame: &[u8]) -> Result<(String, Value), Error> {
        let (len, body) = frame
            .split_first_chunk::<4>()
            .ok_or_else(|| Error::malformed("watch frame shorter than its length prefix"))?;
        if u32::from_be_bytes(*len) as usize != body.len() {
            return Err(Error::malformed(
                "watch frame length does not match its body",
            ));
        }
        let id = self
            .schema
            .id(WATCH_EVENT)
            .ok_or_else(|| Error::malformed("no WatchEvent schema"))?;
        let mut event = decode::message(&self.schema, id, body, 0)?;
        let event_type = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = event.get_mut("object").map(Value::take).unwrap_or_default();
        Ok((event_type, object))
    }
}

/// `runtime.Unknown {1: TypeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
/// 4: contentType}` after the magic.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

fn read_envelope(body: &[u8]) -> Result<Envelope<'_>, Error> {
    let data = body.strip_prefix(&MAGIC).ok_or(Error::NotProtobuf)?;
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        content_encoding: String::new(),
        content_type: String::new(),
    };
    let string = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut r = Reader::new(data);
    while let Some((tag, wire)) = r.key()? {
        if !(1..=4).contains(&tag) {
            r.skip(wire)?;
            continue;
        }
        wire::expect(wire, WireType::Len).map_err(|e| e.within("envelope"))?;
        let bytes = r.bytes()?;
        match tag {
            1 => {
                let mut t = Reader::new(bytes);
                while let Some((tag, wire)) = t.key()? {
                    match (tag, wire) {
                        (1, WireType::Len) => env.api_version = string(t.bytes()?),
                        (2, WireType::Len) => env.kind = string(t.bytes()?),
                        (1 | 2, _) => return Err(Error::malformed("wrong wire type in typeMeta")),
                        _ => t.skip(wire)?,
                    }
                }
            }
            2 => env.raw = bytes,
            3 => env.content_encoding = string(bytes),
            _ => env.content_type = string(bytes),
        }
    }
    Ok(env)
}

pub(crate) fn decode_envelope(
    schema: &Schema,
    body: &[u8],
    default: Option<(&str, &str)>,
    depth: usize,
) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let mut env = read_envelope(body)?;
    if !env.content_encoding.is_empty() {
        return Err(Error::Unsupported(format!(
            "content encoding {:?}",
            env.content_encoding
        )));
    }
    if !matches!(
        env.content_type.as_str(),
        "" | "application/vnd.kubernetes.protobuf"
    ) {
        return Err(Error::Unsupported(format!(
            "content type {:?}",
            env.content_type
        )));
    }
    if let Some((api_version, kind)) = default {
        if env.kind.is_empty() {
            env.kind = kind.to_string();
        }
        if env.api_version.is_empty() {
            env.api_version = api_version.to_string();
        }
    }
    if env.kind.is_empty() || env.api_version.is_empty() {
        return Err(Error::MissingKind);
    }
    let id = schema
        .for_kind(&env.api_version, &env.kind)
        .ok_or_else(|| Error::UnknownKind {
            api_version: env.api_version.clone(),
            kind: env.kind.clone(),
        })?;
    let mut obj = decode::message(schema, id, env.raw, depth)?;
    if let Value::Object(map) = &mut obj {
        map.insert("apiVersion".into(), Value::String(env.api_version));
        map.insert("kind".into(), Value::String(env.kind));
    }
    Ok(obj)
}

fn encode_envelope(schema: &Schema, obj: &Value) -> Result<Vec<u8>, Error> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(Error::MissingKind);
    }
    let id = schema
        .for_kind(api_version, kind)
        .ok_or_else(|| Error::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })?;
    let mut out = MAGIC.to_vec();
    wire::put_nested::<Error>(&mut out, 1, |out| {
        wire::put_bytes(out, 1, api_version.as_bytes());
        wire::put_bytes(out, 2, kind.as_bytes());
        Ok(())
    })?;
    wire::put_nested(&mut out, 2, |out| encode::message(schema, id, obj, out, 0))?;
    wire::put_bytes(&mut out, 3, b"");
    wire::put_bytes(&mut out, 4, b"");
    Ok(out)
}
