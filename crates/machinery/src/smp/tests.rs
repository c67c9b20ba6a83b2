//! Strategic merge patch cases as kubectl apply produces them, over the real k8s-openapi type
//! graph, plus the directive and error cases.

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;
use crate::testschema::k8s_definitions;

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const POD: &str = "io.k8s.api.core.v1.Pod";

fn schema() -> &'static JsonSchemaDefinitions {
    static SCHEMA: OnceLock<JsonSchemaDefinitions> = OnceLock::new();
    SCHEMA.get_or_init(|| JsonSchemaDefinitions::new(&k8s_definitions()))
}

fn apply(def: &str, original: Value, patch: Value) -> Result<Value, Error> {
    strategic_merge_patch(original, patch, schema(), def)
}

/// A Deployment whose pod template has `containers`, `volumes` and `extra` spec fields.
fn deployment(containers: Value, extra: Value) -> Value {
    let mut spec = json!({"containers": containers});
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "template": {"spec": spec}}
    })
}

fn pod_spec_patch(patch: Value) -> Value {
    json!({"spec": {"template": {"spec": patch}}})
}

#[test]
fn resolves_the_real_type_graph() {
    let s = schema();
    let template = s
        .lookup("io.k8s.api.apps.v1.DeploymentSpec", "template")
        .expect("template");
    assert_eq!(
        template.child.as_deref(),
        Some("io.k8s.api.core.v1.PodTemplateSpec")
    );
    let containers = s
        .lookup("io.k8s.api.core.v1.PodSpec", "containers")
        .expect("containers");
    assert!(containers.list);
    assert_eq!(
        containers.child.as_deref(),
        Some("io.k8s.api.core.v1.Container")
    );
    assert_eq!(containers.strategy, Strategy::Merge);
    assert_eq!(containers.merge_key.as_deref(), Some("name"));
    let strategy = s
        .lookup("io.k8s.api.apps.v1.DeploymentSpec", "strategy")
        .expect("strategy");
    assert_eq!(strategy.strategy, Strategy::RetainKeys);
    let finalizers = s
        .lookup(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        )
        .expect("finalizers");
    assert!(finalizers.list && finalizers.child.is_none());
}

/// `(name, original containers, patch for the pod spec, expected containers)`.
type ContainerCase = (&'static str, Value, Value, Value);

#[test]
fn kubectl_apply_container_changes() {
    let a = json!({"name": "a", "image": "a:1", "args": ["x"]});
    let b = json!({"name": "b", "image": "b:1"});
    let cases: Vec<ContainerCase> = vec![
        (
            "add a container",
            json!([a]),
            json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [b]}),
            json!([a, b]),
        ),
        (
            "change an image, other fields kept",
            json!([a, b]),
            json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                   "containers": [{"name": "a", "image": "a:2"}]}),
            json!([{"name": "a", "image": "a:2", "args": ["x"]}, b]),
        ),
        (
            "args is a plain list: replaced",
            json!([a]),
            json!({"$setElementOrder/containers": [{"name": "a"}],
                   "containers": [{"name": "a", "args": ["y", "z"]}]}),
            json!([{"name": "a", "image": "a:1", "args": ["y", "z"]}]),
        ),
        (
            "remove a container",
            json!([a, b]),
            json!({"$setElementOrder/containers": [{"name": "a"}],
                   "containers": [{"$patch": "delete", "name": "b"}]}),
            json!([a]),
        ),
        (
            "reorder containers",
            json!([a, b]),
            json!({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}),
            json!([b, a]),
        ),
        (
            "no order directive: patch items first (upstream order rule)",
            json!([a]),
            json!({"containers": [b]}),
            json!([b, a]),
        ),
    ];
    for (name, original, patch, want) in cases {
        let got = apply(
            DEPLOYMENT,
            deployment(original, json!({})),
            pod_spec_patch(patch),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"], want,
            "{name}"
        );
        assert_eq!(got["spec"]["replicas"], json!(1), "{name}");
    }
}

#[test]
fn kubectl_apply_env_and_ports() {
    let original = deployment(
        json!([{
            "name": "a",
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}]
        }]),
        json!({}),
    );
    let patch = pod_spec_patch(json!({
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{
            "name": "a",
            "$setElementOrder/env": [{"name": "Z"}, {"name": "X"}],
            "env": [{"name": "Z", "value": "3"}, {"$patch": "delete", "name": "Y"}, {"name": "X", "value": "9"}],
            "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 443}],
            "ports": [{"containerPort": 8080}, {"$patch": "delete", "containerPort": 80}]
        }]
    }));
    let got = apply(DEPLOYMENT, original, patch).expect("apply");
    let container = &got["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["env"],
        json!([{"name": "Z", "value": "3"}, {"name": "X", "value": "9"}])
    );
    assert_eq!(
        container["ports"],
        json!([{"containerPort": 8080}, {"containerPort": 443, "protocol": "TCP"}])
    );
}

#[test]
fn volumes_retain_keys() {
    let original = deployment(
        json!([{"name": "a"}]),
        json!({"volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "secret": {"secretName": "s"}}]}),
    );
    let patch = pod_spec_patch(json!({
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}]
    }));
    let got = apply(DEPLOYMENT, original, patch).expect("apply");
    assert_eq!(
        got["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cm"}}, {"name": "cfg", "secret": {"secretName": "s"}}])
    );
}

#[test]
fn deployment_strategy_rolling_update_to_recreate() {
    let original =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    for patch in [
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
    ] {
        let got = apply(DEPLOYMENT, original.clone(), patch).expect("apply");
        assert_eq!(got, json!({"spec": {"strategy": {"type": "Recreate"}}}));
    }
    let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}});
    assert_eq!(
        apply(DEPLOYMENT, original, bad),
        Err(Error::BadPatchFormatForRetainKeys)
    );
}

#[test]
fn finalizers_and_owner_references() {
    let original = json!({"metadata": {
        "finalizers": ["a", "b", "c"],
        "ownerReferences": [{"uid": "1", "name": "x"}, {"uid": "2", "name": "y"}]
    }});
    let cases = [
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "$setElementOrder/finalizers": ["a", "c"]}}),
            json!(["a", "c"]),
        ),
        (
            json!({"metadata": {"finalizers": ["d", "a"]}}),
            json!(["d", "a", "b", "c"]),
        ),
        (
            json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "c", "d"], "finalizers": ["d"]}}),
            json!(["a", "b", "c", "d"]),
        ),
        (json!({"metadata": {"finalizers": null}}), Value::Null),
    ];
    for (patch, want) in cases {
        let got = apply(POD, original.clone(), patch.clone()).expect("apply");
        assert_eq!(got["metadata"]["finalizers"], want, "{patch}");
    }
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "z"}, {"$patch": "delete", "uid": "1"}]}});
    let got = apply(POD, original, patch).expect("apply");
    assert_eq!(
        got["metadata"]["ownerReferences"],
        json!([{"uid": "2", "name": "z"}])
    );
}

#[test]
fn replace_and_delete_directives() {
    let original = json!({
        "metadata": {"labels": {"a": "1", "b": "2"}},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeSelector": {"x": "y"}}
    });
    let cases = [
        (
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            "/metadata/labels",
            json!({"c": "3"}),
        ),
        (
            json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}),
            "/spec/containers",
            json!([{"name": "z"}]),
        ),
        (
            json!({"spec": {"nodeSelector": {"$patch": "delete"}}}),
            "/spec/nodeSelector",
            json!({}),
        ),
        (
            json!({"metadata": {"labels": {"a": null, "d": "4"}}}),
            "/metadata/labels",
            json!({"b": "2", "d": "4"}),
        ),
        (
            json!({"spec": {"affinity": {"nodeAffinity": {"$patch": "replace"}, "podAffinity": {"x": null}}}}),
            "/spec/affinity",
            json!({"podAffinity": {}}),
        ),
    ];
    for (patch, pointer, want) in cases {
        let got = apply(POD, original.clone(), patch.clone()).expect("apply");
        assert_eq!(got.pointer(pointer), Some(&want), "{patch}");
    }
}

#[test]
fn replace_strategy_takes_the_patch() {
    let original = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "minAvailable": 1}});
    let patch = json!({"spec": {"selector": {"matchLabels": {"c": "d"}}}});
    let got = apply("io.k8s.api.policy.v1.PodDisruptionBudget", original, patch).expect("apply");
    assert_eq!(
        got,
        json!({"spec": {"selector": {"matchLabels": {"c": "d"}}, "minAvailable": 1}})
    );
}

#[test]
fn merge_keys_compare_numbers_numerically() {
    let original = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
    let patch = json!({"spec": {"ports": [{"port": 80.0, "targetPort": 8080}]}});
    let got = apply("io.k8s.api.core.v1.Service", original, patch).expect("apply");
    let ports = got["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], json!("http"));
    assert_eq!(ports[0]["targetPort"], json!(8080));
}

#[test]
fn malformed_patches_are_errors() {
    let original =
        json!({"metadata": {"finalizers": ["x"]}, "spec": {"containers": [{"name": "a"}]}});
    let cases = [
        (json!([1]), "invalid JSON document", 400),
        (
            json!({"spec": {"containers": [{"image": "x"}]}}),
            "map: map[image:x] does not contain declared merge key: name",
            500,
        ),
        (
            json!({"spec": {"containers": [{"$patch": "merge", "name": "a"}]}}),
            "merging lists cannot yet be specified in the patch",
            500,
        ),
        (
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            "map: map[$patch:delete] does not contain declared merge key: name",
            500,
        ),
        (
            json!({"spec": {"$patch": "merge"}}),
            "unknown patch type: merge in map: map[$patch:merge]",
            500,
        ),
        (
            json!({"spec": {"$retainKeys": "x"}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            json!({"spec": {"$setElementOrder/containers": "x"}}),
            "expected a []interface {}, but received a string",
            500,
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveListX": ["x"]}}),
            "invalid patch format of primitive list",
            400,
        ),
        (
            json!({"spec": {"$setElementOrderX": []}}),
            "invalid patch format of setElementOrder list",
            400,
        ),
        (
            json!({"metadata": {"finalizers": [["a"]]}}),
            "list element types are not identical: [[x] [[a]]]",
            500,
        ),
        (
            json!({"metadata": {"finalizers": [1]}}),
            "list element types are not identical: [[x] [1]]",
            500,
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                            "containers": [{"name": "a"}, {"name": "b"}]}}),
            "The order in patch list:\n[map[name:a] map[name:b]]\n doesn't match $setElementOrder list:\n[map[name:b] map[name:a]]\n",
            500,
        ),
        (
            json!({"spec": {"containers": [{"name": "a"}, 1]}}),
            "list element types are not identical: [[map[name:a]] [map[name:a] 1]]",
            500,
        ),
    ];
    for (patch, want, status) in cases {
        let err = apply(POD, original.clone(), patch.clone()).expect_err(&patch.to_string());
        assert_eq!(err.to_string(), want, "{patch}");
        assert_eq!(err.status_code(), status, "{patch}");
    }
    let lists = apply(
        POD,
        json!({"metadata": {"finalizers": [["a"]]}}),
        json!({"metadata": {"finalizers": ["b"]}}),
    );
    assert_eq!(lists, Err(Error::NoListOfLists));
    assert_eq!(Error::NoListOfLists.status_code(), 422);
}

#[test]
fn unknown_types_fall_back_to_plain_merge() {
    let original = json!({"a": {"list": [1, 2], "keep": true}});
    let patch = json!({"a": {"list": [3]}, "b": {"$patch": "delete"}});
    let got = strategic_merge_patch(original, patch, &EmptySchema, "Unknown").expect("apply");
    assert_eq!(got, json!({"a": {"list": [3], "keep": true}}));
}

#[test]
fn null_documents_read_as_empty() {
    let got = strategic_merge_patch(Value::Null, json!({"a": 1}), &EmptySchema, "X");
    assert_eq!(got, Ok(json!({"a": 1})));
    let got = strategic_merge_patch(json!({"a": 1}), Value::Null, &EmptySchema, "X");
    assert_eq!(got, Ok(json!({"a": 1})));
}
