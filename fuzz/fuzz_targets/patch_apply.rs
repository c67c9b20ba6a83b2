//! JSON patch, merge patch and strategic merge patch bodies applied to a real Pod through the
//! API server's patch code: applied or refused, never a panic.
#![no_main]

use std::sync::OnceLock;

use k8rs_apiserver::openapi::Schemas;
use k8rs_apiserver::patch::{self, PatchType};
use k8rs_apiserver::registry::Registry;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

static SCHEMAS: OnceLock<Schemas> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let schemas = SCHEMAS.get_or_init(|| Schemas::build(&Registry::builtin()));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}, "finalizers": ["x/y"]},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}],
                                 "ports": [{"containerPort": 80}]}],
                 "volumes": [{"name": "v", "emptyDir": {}}]},
    });
    for kind in [PatchType::Json, PatchType::Merge, PatchType::Strategic, PatchType::Apply] {
        if let Ok(p) = patch::parse(kind, data) {
            let _ = patch::apply(kind, &pod, &p, schemas, "io.k8s.api.core.v1.Pod");
        }
    }
});
