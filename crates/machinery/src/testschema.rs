//! Test support: the JSON-schema definitions k8s-openapi generates for the built-in kinds.

use k8s_openapi::api::{admissionregistration, apps, autoscaling, batch, core, flowcontrol};
use k8s_openapi::api::{networking, policy, resource, storage, storagemigration};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
use k8s_openapi::schemars::SchemaGenerator;
use serde_json::{Map, Value};

/// Definitions (name -> schema) of every kind whose types carry patch metadata.
pub(crate) fn k8s_definitions() -> Map<String, Value> {
    let mut g = SchemaGenerator::default();
    g.subschema_for::<core::v1::Pod>();
    g.subschema_for::<core::v1::Service>();
    g.subschema_for::<core::v1::Node>();
    g.subschema_for::<core::v1::Namespace>();
    g.subschema_for::<core::v1::PersistentVolumeClaim>();
    g.subschema_for::<core::v1::ReplicationController>();
    g.subschema_for::<core::v1::ServiceAccount>();
    g.subschema_for::<core::v1::ComponentStatus>();
    g.subschema_for::<apps::v1::Deployment>();
    g.subschema_for::<apps::v1::DaemonSet>();
    g.subschema_for::<apps::v1::StatefulSet>();
    g.subschema_for::<apps::v1::ReplicaSet>();
    g.subschema_for::<batch::v1::Job>();
    g.subschema_for::<autoscaling::v2::HorizontalPodAutoscaler>();
    g.subschema_for::<policy::v1::PodDisruptionBudget>();
    g.subschema_for::<flowcontrol::v1::FlowSchema>();
    g.subschema_for::<flowcontrol::v1::PriorityLevelConfiguration>();
    g.subschema_for::<networking::v1::ServiceCIDR>();
    g.subschema_for::<networking::v1beta1::ServiceCIDR>();
    g.subschema_for::<storage::v1::CSINode>();
    g.subschema_for::<storagemigration::v1alpha1::StorageVersionMigration>();
    g.subschema_for::<resource::v1alpha3::ResourceClaim>();
    g.subschema_for::<resource::v1beta1::ResourceClaim>();
    g.subschema_for::<resource::v1beta2::ResourceClaim>();
    g.subschema_for::<admissionregistration::v1::MutatingWebhookConfiguration>();
    g.subschema_for::<admissionregistration::v1::ValidatingWebhookConfiguration>();
    g.subschema_for::<admissionregistration::v1::ValidatingAdmissionPolicy>();
    g.subschema_for::<admissionregistration::v1beta1::ValidatingAdmissionPolicy>();
    g.subschema_for::<admissionregistration::v1alpha1::MutatingAdmissionPolicy>();
    g.subschema_for::<apiregistration::v1::APIService>();
    g.take_definitions(false)
}
