//! Any bytes given to the protobuf decoder are decoded or refused, never a panic; what decodes
//! encodes again.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static CODEC: OnceLock<k8rs_protobuf::Codec> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let codec = CODEC.get_or_init(k8rs_protobuf::Codec::default);
    let mut body = b"k8s\0".to_vec();
    body.extend_from_slice(data);
    for input in [data, &body[..]] {
        if let Ok(value) = codec.decode(input) {
            let _ = codec.encode(&value);
        }
        let _ = codec.decode_as(input, "v1", "Pod");
        let _ = codec.decode_watch_event(input);
    }
});
