use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::ApiType;

fn pod(patch: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": "p", "namespace": "default", "resourceVersion": "1"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}
    });
    json_patch::merge(&mut v, &patch);
    let mut p: Pod = serde_json::from_value(v).unwrap_or_default();
    p.set_defaults();
    p
}

fn errs(p: &Pod) -> Vec<String> {
    p.validate().iter().map(ToString::to_string).collect()
}

#[test]
fn valid_pod_has_no_errors() {
    assert_eq!(errs(&pod(json!({}))), Vec::<String>::new());
}

#[test]
fn pod_create_table() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"spec": {"containers": []}}),
            vec!["spec.containers: Required value"],
        ),
        (
            json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}}),
            vec!["spec.containers[1].name: Duplicate value: \"c\""],
        ),
        (
            json!({"spec": {"restartPolicy": "Sometimes"}}),
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ],
        ),
        (
            json!({"spec": {"dnsPolicy": "Bogus"}}),
            vec![
                "spec.dnsPolicy: Unsupported value: \"Bogus\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ],
        ),
        (
            json!({"spec": {"containers": [{"name": "c", "image": " nginx"}]}}),
            vec![
                "spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace",
            ],
        ),
        (
            json!({"spec": {"activeDeadlineSeconds": 0}}),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
            ],
        ),
        (
            json!({"spec": {"tolerations": [{"operator": "Equal", "value": "x"}]}}),
            vec![
                "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ],
        ),
        (
            json!({"spec": {"initContainers": [{"name": "c", "image": "x"}]}}),
            vec!["spec.initContainers[0].name: Duplicate value: \"c\""],
        ),
        (
            json!({"spec": {"initContainers": [{"name": "i", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}}]}}),
            vec![
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ],
        ),
        (
            json!({"metadata": {"name": "Bad"}}),
            vec![
                "metadata.name: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ],
        ),
        (
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}}),
            vec!["spec.volumes[1].name: Duplicate value: \"v\""],
        ),
    ];
    for (patch, want) in cases {
        assert_eq!(errs(&pod(patch.clone())), want, "{patch}");
    }
}

#[test]
fn pod_update_allows_image_and_forbids_the_rest() {
    let old = pod(json!({}));
    let mut new = old.clone();
    if let Some(c) = new.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.image = Some("nginx:2".into());
    }
    assert!(new.validate_update(&old).is_empty());

    let new = pod(json!({"spec": {"restartPolicy": "Never"}}));
    let got = new.validate_update(&old);
    assert_eq!(got.len(), 1);
    let msg = got[0].to_string();
    assert!(msg.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{msg}");
    assert!(msg.contains("restartPolicy"), "{msg}");

    let new = pod(
        json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"name": "d", "image": "y"}]}}),
    );
    assert_eq!(
        new.validate_update(&old)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );
}

#[test]
fn pod_update_tolerations_only_grow() {
    let old = pod(json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}));
    let added = pod(
        json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]}}),
    );
    assert!(added.validate_update(&old).is_empty());
    let removed = pod(json!({"spec": {"tolerations": []}}));
    let got: Vec<String> = removed
        .validate_update(&old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        vec![
            "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
        ]
    );
}

#[test]
fn pod_update_active_deadline() {
    let old = pod(json!({"spec": {"activeDeadlineSeconds": 10}}));
    let new = pod(json!({"spec": {"activeDeadlineSeconds": 20}}));
    let got: Vec<String> = new
        .validate_update(&old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        vec![
            "spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"
        ]
    );
    let new = pod(json!({"spec": {"activeDeadlineSeconds": 5}}));
    assert!(new.validate_update(&old).is_empty());
}
