//! Strategic merge patch never panics, over the real k8s-openapi schema of Pods and
//! Deployments. Inputs are either two JSON texts separated by a NUL byte, or a byte stream that
//! builds two JSON trees from a vocabulary of real field names and patch directives.
#![no_main]

use std::sync::OnceLock;

use k8rs_machinery::smp::{JsonSchemaDefinitions, strategic_merge_patch};
use k8s_openapi::schemars::SchemaGenerator;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const DEFINITIONS: [&str; 2] = ["io.k8s.api.core.v1.Pod", "io.k8s.api.apps.v1.Deployment"];

const KEYS: &[&str] = &[
    "spec",
    "template",
    "metadata",
    "containers",
    "initContainers",
    "volumes",
    "env",
    "ports",
    "name",
    "image",
    "value",
    "containerPort",
    "protocol",
    "finalizers",
    "ownerReferences",
    "uid",
    "labels",
    "strategy",
    "type",
    "rollingUpdate",
    "emptyDir",
    "configMap",
    "args",
    "selector",
    "matchLabels",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/env",
    "$setElementOrder/finalizers",
    "$setElementOrder/ports",
    "$setElementOrder/volumes",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/args",
    "$setElementOrder",
    "$deleteFromPrimitiveList",
    "a",
    "b",
];

const STRINGS: &[&str] = &["replace", "delete", "merge", "a", "b", "name", "type", ""];

fn schema() -> &'static JsonSchemaDefinitions {
    static SCHEMA: OnceLock<JsonSchemaDefinitions> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut generator = SchemaGenerator::default();
        generator.subschema_for::<k8s_openapi::api::core::v1::Pod>();
        generator.subschema_for::<k8s_openapi::api::apps::v1::Deployment>();
        JsonSchemaDefinitions::new(generator.definitions())
    })
}

/// Builds JSON values from fuzzer bytes.
struct Builder<'a> {
    data: &'a [u8],
}

impl Builder<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn value(&mut self, depth: u8) -> Value {
        let choice = if depth > 6 {
            self.byte() % 5
        } else {
            self.byte() % 7
        };
        match choice {
            0 => Value::Null,
            1 => Value::Bool(self.byte() % 2 == 0),
            2 => Value::from(self.byte() % 4),
            3 | 4 => Value::from(STRINGS[usize::from(self.byte()) % STRINGS.len()]),
            5 => {
                let len = self.byte() % 4;
                Value::Array((0..len).map(|_| self.value(depth + 1)).collect())
            }
            _ => Value::Object(self.object(depth + 1)),
        }
    }

    fn object(&mut self, depth: u8) -> Map<String, Value> {
        let len = self.byte() % 5;
        (0..len)
            .map(|_| {
                let key = KEYS[usize::from(self.byte()) % KEYS.len()].to_owned();
                (key, self.value(depth))
            })
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let def = DEFINITIONS[usize::from(mode >> 1) % DEFINITIONS.len()];
    let (original, patch) = if mode % 2 == 0 {
        let mut parts = rest.splitn(2, |b| *b == 0);
        let parse = |p: Option<&[u8]>| serde_json::from_slice::<Value>(p.unwrap_or_default());
        match (parse(parts.next()), parse(parts.next())) {
            (Ok(o), Ok(p)) => (o, p),
            _ => return,
        }
    } else {
        let mut builder = Builder { data: rest };
        let original = Value::Object(builder.object(0));
        let patch = Value::Object(builder.object(0));
        (original, patch)
    };
    let _ = strategic_merge_patch(original, patch, schema(), def);
});
