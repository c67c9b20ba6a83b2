//! The generated table agrees with the JSON names of k8s-openapi's schemas.

mod common;

use serde_json::{Map, Value};

#[test]
fn every_table_field_is_a_property_of_its_definition() {
    let table: Map<String, Value> =
        serde_json::from_str(include_str!("../src/schema.json")).unwrap_or_default();
    let defs = common::definitions();
    let mut checked = 0;
    let mut missing = Vec::new();
    for (name, entry) in &table {
        let Some(props) = defs
            .get(name)
            .and_then(|d| d.get("properties"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for row in entry
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let json = row[1].as_str().unwrap_or_default();
            let flags = row[5].as_str().unwrap_or_default();
            if flags.contains('i') {
                continue;
            }
            checked += 1;
            if !props.contains_key(json) {
                missing.push(format!("{name}.{json}"));
            }
        }
    }
    assert!(checked > 1000, "only {checked} fields checked");
    // Fields added after Kubernetes 1.33 (k8s-openapi's version, the table is 1.35's) are not
    // in its schemas.
    let newer = [
        "io.k8s.api.core.v1.NodeStatus.declaredFeatures",
        "io.k8s.api.core.v1.PodSpec.workloadRef",
        "io.k8s.api.core.v1.PodStatus.allocatedResources",
        "io.k8s.api.core.v1.PodStatus.extendedResourceClaimStatus",
        "io.k8s.api.core.v1.Container.restartPolicyRules",
        "io.k8s.api.core.v1.EnvVarSource.fileKeyRef",
        "io.k8s.api.core.v1.PodSpec.hostnameOverride",
        "io.k8s.api.core.v1.PodStatus.resources",
        "io.k8s.api.core.v1.VolumeProjection.podCertificate",
        "io.k8s.api.storage.v1.CSIDriverSpec.serviceAccountTokenInSecrets",
    ];
    missing.retain(|m| !newer.contains(&m.as_str()));
    assert_eq!(missing, Vec::<String>::new());
}
