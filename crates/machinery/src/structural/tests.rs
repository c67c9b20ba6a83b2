//! Tests of structural schemas: keyword validation with upstream's messages, pruning,
//! defaulting and the structural-schema checks.

use serde_json::{Value, json};

use super::Structural;
use crate::validation::Path;

fn at() -> Path {
    Path::new("spec")
        .child("versions")
        .index(0)
        .child("schema")
        .child("openAPIV3Schema")
}

/// A root object schema with `spec` described by `spec`.
fn with_spec(spec: Value) -> Structural {
    let schema = json!({"type": "object", "properties": {"spec": spec}});
    match Structural::new(&schema, &at()) {
        Ok(s) => s,
        Err(errs) => panic!("not structural: {errs:?}"),
    }
}

fn errors(s: &Structural, obj: &Value) -> Vec<String> {
    s.validate(obj).iter().map(ToString::to_string).collect()
}

fn schema_errors(schema: Value) -> Vec<String> {
    match Structural::new(&schema, &at()) {
        Ok(_) => vec![],
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// (property schema, valid value, invalid value, expected message) for one property `spec.f`.
fn keyword_cases() -> Vec<(Value, Value, Value, &'static str)> {
    vec![
        (
            json!({"type": "integer"}),
            json!(3),
            json!("string"),
            r#"spec.f: Invalid value: "string": spec.f in body must be of type integer: "string""#,
        ),
        (
            json!({"type": "integer"}),
            json!(2.0),
            json!(2.5),
            r#"spec.f: Invalid value: "number": spec.f in body must be of type integer: "number""#,
        ),
        (
            json!({"type": "number"}),
            json!(3),
            json!(true),
            r#"spec.f: Invalid value: "boolean": spec.f in body must be of type number: "boolean""#,
        ),
        (
            json!({"type": "string"}),
            json!("x"),
            json!(null),
            r#"spec.f: Invalid value: "null": spec.f in body must be of type string: "null""#,
        ),
        (
            json!({"type": "boolean"}),
            json!(false),
            json!("true"),
            r#"spec.f: Invalid value: "string": spec.f in body must be of type boolean: "string""#,
        ),
        (
            json!({"type": "object"}),
            json!({}),
            json!([]),
            r#"spec.f: Invalid value: "array": spec.f in body must be of type object: "array""#,
        ),
        (
            json!({"type": "array", "items": {"type": "string"}}),
            json!(["a"]),
            json!([1]),
            r#"spec.f[0]: Invalid value: "integer": spec.f[0] in body must be of type string: "integer""#,
        ),
        (
            json!({"type": "string", "nullable": true, "maxLength": 1}),
            json!(null),
            json!("ab"),
            "spec.f: Too long: may not be more than 1 bytes",
        ),
        (
            json!({"type": "string", "minLength": 3}),
            json!("abc"),
            json!("ab"),
            r#"spec.f: Invalid value: "ab": spec.f in body should be at least 3 chars long"#,
        ),
        (
            json!({"type": "string", "pattern": "^[a-z]+$"}),
            json!("abc"),
            json!("aB"),
            r#"spec.f: Invalid value: "aB": spec.f in body should match '^[a-z]+$'"#,
        ),
        (
            json!({"type": "string", "format": "date-time"}),
            json!("2024-01-02T03:04:05Z"),
            json!("yesterday"),
            r#"spec.f: Invalid value: "yesterday": spec.f in body must be of type date-time: "yesterday""#,
        ),
        (
            json!({"type": "string", "format": "date"}),
            json!("2024-02-29"),
            json!("2023-02-29"),
            r#"spec.f: Invalid value: "2023-02-29": spec.f in body must be of type date: "2023-02-29""#,
        ),
        (
            json!({"type": "string", "format": "byte"}),
            json!("aGk="),
            json!("a"),
            r#"spec.f: Invalid value: "a": spec.f in body must be of type byte: "a""#,
        ),
        (
            json!({"type": "integer", "format": "int32"}),
            json!(7),
            json!(1.5),
            r#"spec.f: Invalid value: "float64": spec.f in body must be of type int32: "float64""#,
        ),
        (
            json!({"type": "number", "format": "double"}),
            json!(1.5),
            json!("1.5"),
            r#"spec.f: Invalid value: "string": spec.f in body must be of type number: "string""#,
        ),
        (
            json!({"type": "string", "enum": ["red", "blue"]}),
            json!("red"),
            json!("pink"),
            r#"spec.f: Unsupported value: "pink": supported values: "red", "blue""#,
        ),
        (
            json!({"type": "integer", "enum": [1, 2]}),
            json!(2),
            json!(3),
            r#"spec.f: Unsupported value: 3: supported values: "1", "2""#,
        ),
        (
            json!({"type": "integer", "maximum": 10}),
            json!(10),
            json!(11),
            "spec.f: Invalid value: 11: spec.f in body should be less than or equal to 10",
        ),
        (
            json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
            json!(9),
            json!(10),
            "spec.f: Invalid value: 10: spec.f in body should be less than 10",
        ),
        (
            json!({"type": "number", "minimum": 0.5}),
            json!(0.5),
            json!(0.25),
            "spec.f: Invalid value: 0.25: spec.f in body should be greater than or equal to 0.5",
        ),
        (
            json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true}),
            json!(2),
            json!(1),
            "spec.f: Invalid value: 1: spec.f in body should be greater than 1",
        ),
        (
            json!({"type": "integer", "multipleOf": 5}),
            json!(15),
            json!(12),
            "spec.f: Invalid value: 12: spec.f in body should be a multiple of 5",
        ),
        (
            json!({"type": "array", "items": {"type": "integer"}, "minItems": 2}),
            json!([1, 2]),
            json!([1]),
            "spec.f: Invalid value: 1: spec.f in body should have at least 2 items",
        ),
        (
            json!({"type": "array", "items": {"type": "integer"}, "maxItems": 1}),
            json!([1]),
            json!([1, 2]),
            "spec.f: Too many: 2: must have at most 1 items",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1}),
            json!({"a": "b"}),
            json!({}),
            "spec.f: Invalid value: 0: spec.f in body should have at least 1 properties",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1}),
            json!({"a": "b"}),
            json!({"a": "b", "c": "d"}),
            "spec.f: Too many: 2: must have at most 1 items",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            json!({"a": 1}),
            json!({"a": "x"}),
            r#"spec.f.a: Invalid value: "string": spec.f.a in body must be of type integer: "string""#,
        ),
        (
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            json!({"name": "x"}),
            json!({}),
            "spec.f.name: Required value",
        ),
        (
            json!({"x-kubernetes-int-or-string": true}),
            json!("50%"),
            json!(true),
            r#"spec.f: Invalid value: "boolean": spec.f in body must be of type integer,string: "boolean""#,
        ),
        (
            json!({"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]}),
            json!(3),
            json!(6),
            "spec.f: Invalid value: 6: spec.f in body should be less than or equal to 5",
        ),
        (
            json!({"type": "integer", "not": {"enum": [4]}}),
            json!(3),
            json!(4),
            r#"spec.f: Invalid value: "": "spec.f" must not validate the schema (not)"#,
        ),
        (
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}),
            json!(["a", "b"]),
            json!(["a", "a"]),
            r#"spec.f[1]: Duplicate value: "a""#,
        ),
        (
            json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}),
            json!([{"name": "a"}, {"name": "b"}]),
            json!([{"name": "a"}, {"name": "a"}]),
            r#"spec.f[1]: Duplicate value: map[string]interface {}{"name":"a"}"#,
        ),
        (
            json!({"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}}),
            json!({"a": "b"}),
            json!({"a": 1}),
            r#"spec.f.a: Invalid value: "integer": spec.f.a in body must be of type string: "integer""#,
        ),
    ]
}

#[test]
fn every_keyword_accepts_and_rejects_like_upstream() {
    for (i, (schema, good, bad, want)) in keyword_cases().into_iter().enumerate() {
        let s = with_spec(json!({"type": "object", "properties": {"f": schema}}));
        let ok = errors(&s, &json!({"spec": {"f": good}}));
        assert!(ok.is_empty(), "case {i}: valid value rejected: {ok:?}");
        let got = errors(&s, &json!({"spec": {"f": bad}}));
        assert_eq!(
            got.first().map(String::as_str),
            Some(want),
            "case {i}: {got:?}"
        );
    }
}

#[test]
fn any_of_and_one_of_report_the_junctor_then_the_first_alternative() {
    let s = with_spec(
        json!({"type": "object", "properties": {"f": {"type": "string",
        "anyOf": [{"maxLength": 1}, {"pattern": "^x"}], "oneOf": [{"minLength": 5}, {"maxLength": 5}]}}}),
    );
    assert!(errors(&s, &json!({"spec": {"f": "xyz"}})).is_empty());
    assert_eq!(
        errors(&s, &json!({"spec": {"f": "abc"}})),
        vec![
            r#"spec.f: Invalid value: "": "spec.f" must validate at least one schema (anyOf)"#,
            "spec.f: Too long: may not be more than 1 bytes",
        ]
    );
    assert_eq!(
        errors(&s, &json!({"spec": {"f": "x1234"}})),
        vec![
            r#"spec.f: Invalid value: "": "spec.f" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        ]
    );
}

#[test]
fn errors_are_typed_like_upstream() {
    let s = with_spec(json!({"type": "object", "properties": {"replicas": {"type": "integer"}}}));
    let errs = s.validate(&json!({"spec": {"replicas": "three"}}));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].reason(), "FieldValueTypeInvalid");
    assert_eq!(errs[0].field, "spec.replicas");
}

#[test]
fn root_metadata_is_checked_only_for_name_and_generate_name() {
    let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}}}});
    let s = Structural::new(&schema, &at()).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        errors(
            &s,
            &json!({"metadata": {"name": "abc", "labels": {"a": "b"}}})
        )
        .is_empty()
    );
    assert_eq!(
        errors(&s, &json!({"metadata": {"name": "abcd"}})),
        vec!["metadata.name: Too long: may not be more than 3 bytes"]
    );
}

#[test]
fn embedded_resources_need_api_version_and_kind() {
    let s = with_spec(json!({"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}}));
    assert!(
        errors(
            &s,
            &json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod"}}})
        )
        .is_empty()
    );
    assert_eq!(
        errors(&s, &json!({"spec": {"template": {"kind": "Pod"}}})),
        vec!["spec.template.apiVersion: Required value: must not be empty"]
    );
}

#[test]
fn pruning_drops_unknown_fields_and_reports_their_paths() {
    let s = with_spec(json!({"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "ports": {"type": "array", "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
        "nested": {"type": "object", "properties": {"a": {"type": "string"}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                 "properties": {"known": {"type": "object", "properties": {"k": {"type": "string"}}}}},
        "size": {"x-kubernetes-int-or-string": true},
        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                     "properties": {"spec": {"type": "object"}}},
    }}));
    let mut obj = json!({
        "apiVersion": "example.com/v1", "kind": "Thing",
        "metadata": {"name": "t", "labels": {"a": "b"}},
        "status": {"x": 1},
        "spec": {
            "replicas": 1, "foo": true,
            "ports": [{"port": 80, "name": "http"}],
            "nested": {"a": "x", "b": "y"},
            "free": {"anything": {"goes": 1}, "known": {"k": "v", "drop": 1}},
            "size": "50%",
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "extra": 1},
        }
    });
    let removed = s.prune(&mut obj);
    assert_eq!(
        removed,
        vec![
            "spec.foo",
            "spec.free.known.drop",
            "spec.nested.b",
            "spec.ports[0].name",
            "spec.template.extra",
            "status",
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"name": "t", "labels": {"a": "b"}},
            "spec": {
                "replicas": 1,
                "ports": [{"port": 80}],
                "nested": {"a": "x"},
                "free": {"anything": {"goes": 1}, "known": {"k": "v"}},
                "size": "50%",
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
            }
        })
    );
}

#[test]
fn a_root_that_preserves_unknown_fields_prunes_nothing_unknown() {
    let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    let s = Structural::new(&schema, &at()).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(s.preserves_unknown_fields());
    let mut obj = json!({"other": 1, "spec": {"a": "x", "b": 2}});
    assert_eq!(s.prune(&mut obj), vec!["spec.b"]);
    assert_eq!(obj, json!({"other": 1, "spec": {"a": "x"}}));
}

#[test]
fn defaults_apply_to_absent_fields_nested_and_in_items() {
    let s = with_spec(json!({"type": "object", "default": {}, "properties": {
        "replicas": {"type": "integer", "default": 1},
        "mode": {"type": "string", "default": "fast"},
        "opt": {"type": "string", "nullable": true, "default": "x"},
        "inner": {"type": "object", "default": {}, "properties": {"level": {"type": "integer", "default": 3}}},
        "ports": {"type": "array", "items": {"type": "object", "default": {"port": 80},
            "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}},
    }}));
    let mut obj = json!({"spec": {"mode": null, "opt": null, "ports": [{"port": 443}, null]}});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj,
        json!({"spec": {
            "replicas": 1, "mode": "fast", "opt": null,
            "inner": {"level": 3},
            "ports": [{"port": 443, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}],
        }})
    );
    let mut empty = json!({});
    s.apply_defaults(&mut empty);
    assert_eq!(empty["spec"]["inner"], json!({"level": 3}));
    assert_eq!(empty["spec"]["replicas"], json!(1));
}

#[test]
fn non_structural_schemas_are_refused_with_upstreams_messages() {
    let p = "spec.versions[0].schema.openAPIV3Schema";
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"type": "object", "properties": {"spec": {"properties": {}}}}),
            vec![format!(
                "{p}.properties[spec].type: Required value: must not be empty for specified object fields"
            )],
        ),
        (
            json!({"properties": {}}),
            vec![format!(
                "{p}.type: Required value: must not be empty at the root"
            )],
        ),
        (
            json!({"type": "string"}),
            vec![format!(
                "{p}.type: Invalid value: \"string\": must be object at the root"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array"}}}),
            vec![format!(
                "{p}.properties[a].items: Required value: must be specified"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array", "items": {}}}}),
            vec![format!(
                "{p}.properties[a].items.type: Required value: must not be empty for specified array items"
            )],
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec![format!(
                "{p}.additionalProperties: Forbidden: must not be used at the root"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}}),
            vec![format!(
                "{p}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "object"}}, "anyOf": [{"properties": {"b": {}}}]}),
            vec![format!(
                "{p}.properties[b]: Required value: because it is defined in {p}.anyOf[0].properties[b]"
            )],
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            vec![format!(
                "{p}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            )],
        ),
        (
            json!({"type": "object", "properties": {"t": {"type": "object", "x-kubernetes-embedded-resource": true}}}),
            vec![format!(
                "{p}.properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
            vec![format!(
                "{p}.properties[a].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}}),
            vec![format!(
                "{p}.properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "[a-"}}})
                .clone(),
            vec![],
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}}),
            vec![format!(
                "{p}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}),
            vec![format!(
                "{p}.properties[a].default: Invalid value: \"string\":  in body must be of type integer: \"string\""
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "object", "default": {"b": 1}}}}),
            vec![format!(
                "{p}.properties[a].default: Invalid value: map[string]interface {{}}{{\"b\":1}}: must not have unknown fields"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}}),
            vec![format!(
                "{p}.properties[a].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "foo"}}}),
            vec![format!(
                "{p}.properties[a].type: Unsupported value: \"foo\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
            )],
        ),
        (
            json!({"type": "object", "nullable": true}),
            vec![format!(
                "{p}.nullable: Forbidden: nullable cannot be true at the root"
            )],
        ),
    ];
    for (i, (schema, want)) in cases.into_iter().enumerate() {
        let got = schema_errors(schema);
        if want.is_empty() {
            assert_eq!(got.len(), 1, "case {i}: {got:?}");
            assert!(
                got[0].contains("must be a valid regular expression, but isn't"),
                "case {i}: {got:?}"
            );
        } else {
            assert_eq!(got, want, "case {i}");
        }
    }
}

#[test]
fn int_or_string_any_of_pattern_is_structural() {
    let schema = json!({"type": "object", "properties": {"port": {
        "x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}});
    let s = Structural::new(&schema, &at()).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(errors(&s, &json!({"port": 80})).is_empty());
    assert!(errors(&s, &json!({"port": "http"})).is_empty());
}

#[test]
fn structural_is_send_sync_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Structural>();
}
