//! Test support: the JSON-schema definitions the API server generates from k8s-openapi's
//! schemars impls, and the codec built on them.
#![allow(dead_code)]

use k8rs_protobuf::Codec;
use k8s_openapi::api::{
    apps, authentication, autoscaling, batch, certificates, coordination, core,
};
use k8s_openapi::api::{discovery, events, networking, policy, rbac, scheduling, storage};
use k8s_openapi::apimachinery::pkg::apis::meta;
use k8s_openapi::schemars::SchemaGenerator;
use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

pub fn definitions() -> Map<String, Value> {
    let mut g = SchemaGenerator::new(SchemaSettings::openapi3());
    g.subschema_for::<core::v1::Pod>();
    g.subschema_for::<core::v1::Service>();
    g.subschema_for::<core::v1::Secret>();
    g.subschema_for::<core::v1::ConfigMap>();
    g.subschema_for::<core::v1::Namespace>();
    g.subschema_for::<core::v1::Node>();
    g.subschema_for::<core::v1::Event>();
    g.subschema_for::<core::v1::PersistentVolume>();
    g.subschema_for::<core::v1::PersistentVolumeClaim>();
    g.subschema_for::<core::v1::ServiceAccount>();
    g.subschema_for::<core::v1::Endpoints>();
    g.subschema_for::<apps::v1::Deployment>();
    g.subschema_for::<apps::v1::StatefulSet>();
    g.subschema_for::<apps::v1::DaemonSet>();
    g.subschema_for::<apps::v1::ControllerRevision>();
    g.subschema_for::<batch::v1::Job>();
    g.subschema_for::<batch::v1::CronJob>();
    g.subschema_for::<autoscaling::v1::Scale>();
    g.subschema_for::<autoscaling::v2::HorizontalPodAutoscaler>();
    g.subschema_for::<coordination::v1::Lease>();
    g.subschema_for::<discovery::v1::EndpointSlice>();
    g.subschema_for::<events::v1::Event>();
    g.subschema_for::<policy::v1::PodDisruptionBudget>();
    g.subschema_for::<policy::v1::Eviction>();
    g.subschema_for::<rbac::v1::ClusterRole>();
    g.subschema_for::<rbac::v1::RoleBinding>();
    g.subschema_for::<networking::v1::NetworkPolicy>();
    g.subschema_for::<networking::v1::Ingress>();
    g.subschema_for::<storage::v1::StorageClass>();
    g.subschema_for::<storage::v1::CSIDriver>();
    g.subschema_for::<scheduling::v1::PriorityClass>();
    g.subschema_for::<certificates::v1::CertificateSigningRequest>();
    g.subschema_for::<authentication::v1::TokenRequest>();
    g.subschema_for::<authentication::v1::TokenReview>();
    g.subschema_for::<meta::v1::Status>();
    g.subschema_for::<meta::v1::DeleteOptions>();
    g.subschema_for::<meta::v1::APIResourceList>();
    g.take_definitions(true).into_iter().collect()
}

pub fn codec() -> Codec {
    Codec::new(&definitions())
}
