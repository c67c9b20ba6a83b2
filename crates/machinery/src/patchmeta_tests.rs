use super::*;
use crate::smp::Strategy;
use crate::testschema::k8s_definitions;

#[test]
fn known_entries() {
    let cases = [
        (
            "io.k8s.api.core.v1.PodSpec",
            "containers",
            ("merge", Some("name")),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "volumes",
            ("merge,retainKeys", Some("name")),
        ),
        (
            "io.k8s.api.core.v1.Container",
            "env",
            ("merge", Some("name")),
        ),
        (
            "io.k8s.api.core.v1.Container",
            "ports",
            ("merge", Some("containerPort")),
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "volumeMounts",
            ("merge", Some("mountPath")),
        ),
        (
            "io.k8s.api.core.v1.ServiceSpec",
            "ports",
            ("merge", Some("port")),
        ),
        (
            "io.k8s.api.apps.v1.DeploymentSpec",
            "strategy",
            ("retainKeys", None),
        ),
        (
            "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
            "selector",
            ("replace", None),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
            ("merge", None),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
            ("merge", Some("uid")),
        ),
        (
            "io.k8s.api.core.v1.NodeStatus",
            "conditions",
            ("merge", Some("type")),
        ),
        (
            "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus",
            "conditions",
            ("merge", Some("type")),
        ),
    ];
    for (def, field, want) in cases {
        assert_eq!(patch_metadata(def, field), Some(want), "{def}.{field}");
    }
    assert_eq!(
        patch_metadata("io.k8s.api.core.v1.PodSpec", "nodeName"),
        None
    );
    assert_eq!(
        list_metadata("io.k8s.api.core.v1.Container", "ports"),
        Some(("map", &["containerPort", "protocol"][..]))
    );
    assert_eq!(
        list_metadata(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers"
        ),
        Some(("set", &[][..]))
    );
}

#[test]
fn every_strategy_parses_and_no_duplicates() {
    for (def, field, strategy, _) in PATCH_METADATA {
        assert!(
            Strategy::parse(strategy).is_some(),
            "{def}.{field}: {strategy}"
        );
        let count = PATCH_METADATA
            .iter()
            .filter(|(d, f, _, _)| d == def && f == field)
            .count();
        assert_eq!(count, 1, "{def}.{field}");
    }
    for (def, field, list_type, keys) in LIST_METADATA {
        assert!(
            matches!(*list_type, "atomic" | "set" | "map"),
            "{def}.{field}"
        );
        assert_eq!(*list_type == "map", !keys.is_empty(), "{def}.{field}");
    }
}

#[test]
fn every_patch_field_exists_in_k8s_openapi() {
    let defs = k8s_definitions();
    for (def, field, _, _) in PATCH_METADATA {
        let property = defs
            .get(*def)
            .and_then(|d| d.get("properties"))
            .and_then(|p| p.get(*field));
        assert!(
            property.is_some(),
            "{def}.{field} is not in k8s-openapi v1_33"
        );
    }
}
