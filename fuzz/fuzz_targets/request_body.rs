//! Request bodies in JSON and YAML are decoded or refused with a Status, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = k8rs_apiserver::decode::json(data);
    let _ = k8rs_apiserver::decode::yaml_or_json(data);
});
