//! Malformed and hostile input: errors with clear messages, never a panic.

mod common;

use k8rs_protobuf::{Codec, Error};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

fn valid_bodies(codec: &Codec) -> Vec<Vec<u8>> {
    [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}},
                "livenessProbe": {"httpGet": {"port": 8080}}}]}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}}}}),
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e",
            "creationTimestamp": "2024-05-01T12:00:00Z"}, "eventTime": "2024-05-01T12:00:00.5Z"}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "AAEC"}}),
    ]
    .iter()
    .map(|o| codec.encode(o).expect("valid object encodes"))
    .collect()
}

#[test]
fn envelope_errors() {
    let codec = Codec::default();
    assert_eq!(codec.decode(b""), Err(Error::NotProtobuf));
    assert_eq!(codec.decode(b"{\"kind\":\"Pod\"}"), Err(Error::NotProtobuf));
    assert_eq!(codec.decode(b"k8s\0"), Err(Error::MissingKind));
    let cr = b"k8s\0\x0a\x14\x0a\x0eexample.com/v1\x12\x02Wd";
    assert_eq!(
        codec.decode(cr),
        Err(Error::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Wd".into()
        })
    );
    let gzip = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x1a\x04gzip";
    assert!(matches!(codec.decode(gzip), Err(Error::Unsupported(_))));
    let no_kind = b"k8s\0\x12\x00";
    assert_eq!(codec.decode(no_kind), Err(Error::MissingKind));
    assert!(codec.decode_as(no_kind, "v1", "ConfigMap").is_ok());
}

#[test]
fn encode_errors_name_the_field() {
    let codec = Codec::default();
    assert_eq!(
        codec.encode(&json!({"kind": "Pod"})),
        Err(Error::MissingKind)
    );
    let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "three"}});
    assert_eq!(
        codec.encode(&bad).map_err(|e| e.to_string()),
        Err("cannot encode at spec.replicas: expected an integer, got a string".into())
    );
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}, {"name": 7}]}});
    assert_eq!(
        codec.encode(&bad).map_err(|e| e.to_string()),
        Err("cannot encode at spec.containers[1].name: expected a string, got a number".into())
    );
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}});
    assert!(matches!(codec.encode(&bad), Err(Error::Encode { path, .. }) if path == "data[\"k\"]"));
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"priority": 1u64 << 40}});
    assert!(codec.encode(&bad).is_err());
    let custom = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
    assert!(matches!(
        codec.encode(&custom),
        Err(Error::UnknownKind { .. })
    ));
}

#[test]
fn wrong_wire_types_are_reported_with_their_path() {
    // ConfigMap whose metadata (field 1, a message) arrives as a varint
    let body = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x02\x08\x01";
    let err = Codec::default().decode(body).map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err(
            "malformed protobuf at metadata: wrong wire type: got varint, want length-delimited"
                .into()
        )
    );
}

#[test]
fn every_truncation_is_handled() {
    let codec = Codec::default();
    for body in valid_bodies(&codec) {
        for cut in 0..body.len() {
            let _ = codec.decode(&body[..cut]);
        }
        // cutting inside the raw message is always an error
        assert!(codec.decode(&body[..body.len() - 6]).is_err());
    }
}

#[test]
fn nesting_is_bounded() {
    // a v1 List whose only item is a List whose only item is ... (RawExtension envelopes)
    let codec = Codec::default();
    let mut body = codec
        .encode(&json!({"apiVersion": "v1", "kind": "List"}))
        .expect("encodes");
    for _ in 0..(k8rs_protobuf::MAX_DEPTH + 5) {
        let mut raw_ext = vec![0x0a];
        put_len(&mut raw_ext, &body);
        let mut list = vec![0x12];
        put_len(&mut list, &raw_ext);
        let mut next = b"k8s\0\x0a\x0a\x0a\x02v1\x12\x04List\x12".to_vec();
        put_len(&mut next, &list);
        body = next;
    }
    assert_eq!(
        codec.decode(&body),
        Err(Error::TooDeep(k8rs_protobuf::MAX_DEPTH))
    );
}

fn put_len(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut n = bytes.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
}

#[test]
fn random_bytes_never_panic() {
    let codec = Codec::default();
    let bodies = valid_bodies(&codec);
    let mut rng = StdRng::seed_from_u64(0x6b38_7300);
    for i in 0..20_000 {
        let input: Vec<u8> = if i % 2 == 0 {
            // a valid body with a few bytes changed, inserted or dropped
            let mut b = bodies[i % bodies.len()].clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(4..b.len());
                match rng.random_range(0..3) {
                    0 => b[at] = rng.random(),
                    1 => b.insert(at, rng.random()),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            b
        } else {
            let mut b = b"k8s\0".to_vec();
            let n = rng.random_range(0..64);
            b.extend((0..n).map(|_| rng.random::<u8>()));
            b
        };
        let _ = codec.decode(&input);
        let _ = codec.decode_as(&input, "v1", "Pod");
        let _ = codec.decode_watch_event(&input);
    }
}
