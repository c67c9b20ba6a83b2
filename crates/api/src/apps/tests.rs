use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::ApiType;

fn obj<T: ApiType + DeserializeOwned + Default>(base: Value, patch: Value) -> T {
    let mut v = base;
    json_patch::merge(&mut v, &patch);
    let mut o: T = serde_json::from_value(v).unwrap_or_default();
    o.set_defaults();
    o
}

fn workload(kind_extra: Value) -> Value {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    });
    json_patch::merge(&mut v, &kind_extra);
    v
}

fn errs<T: ApiType>(o: &T) -> Vec<String> {
    o.validate().iter().map(ToString::to_string).collect()
}

#[test]
fn deployment_defaults() {
    let d: Deployment = obj(workload(json!({})), json!({}));
    let v = serde_json::to_value(&d).unwrap_or_default();
    assert_eq!(v["spec"]["replicas"], 1);
    assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(v["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(
        v["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert!(errs(&d).is_empty());
}

#[test]
fn deployment_table() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"spec": {"selector": {"matchLabels": {"app": "db"}}}}),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ],
        ),
        (
            json!({"spec": {"selector": null}}),
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ],
        ),
        (
            json!({"spec": {"replicas": -1}}),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ],
        ),
        (
            json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}}),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
            ],
        ),
        (
            json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}}),
            vec![
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ],
        ),
    ];
    for (patch, want) in cases {
        let d: Deployment = obj(workload(json!({})), patch.clone());
        assert_eq!(errs(&d), want, "{patch}");
    }
}

#[test]
fn selectors_are_immutable() {
    let old: Deployment = obj(workload(json!({})), json!({}));
    let new: Deployment = obj(
        workload(json!({})),
        json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}}, "template": {"metadata": {"labels": {"tier": "x"}}}}}),
    );
    let got: Vec<String> = new
        .validate_update(&old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        ]
    );
}

#[test]
fn statefulset_defaults_and_update_rules() {
    let s: StatefulSet = obj(workload(json!({"spec": {"serviceName": "web"}})), json!({}));
    let v = serde_json::to_value(&s).unwrap_or_default();
    assert_eq!(v["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        v["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        v["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert!(errs(&s).is_empty());
    let changed: StatefulSet = obj(
        workload(json!({"spec": {"serviceName": "other"}})),
        json!({}),
    );
    let got: Vec<String> = changed
        .validate_update(&s)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        vec![
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
    let scaled: StatefulSet = obj(
        workload(json!({"spec": {"serviceName": "web", "replicas": 3}})),
        json!({}),
    );
    assert!(scaled.validate_update(&s).is_empty());
}

#[test]
fn daemonset_defaults_and_strategy() {
    let d: DaemonSet = obj(workload(json!({})), json!({}));
    let v = serde_json::to_value(&d).unwrap_or_default();
    assert_eq!(
        v["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert!(errs(&d).is_empty());
    let bad: DaemonSet = obj(
        workload(json!({})),
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}}),
    );
    assert_eq!(
        errs(&bad),
        vec![
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
        ]
    );
}
