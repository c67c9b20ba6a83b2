//! Defaulting and validation of the built-in Kubernetes types, as upstream's
//! `pkg/apis/*/v1/defaults.go` and `pkg/apis/*/validation/validation.go`.
//!
//! Every type the API server serves implements [`ApiType`]: [`ApiType::set_defaults`] fills what
//! upstream defaults, [`ApiType::validate`] and [`ApiType::validate_update`] return upstream's
//! field errors (same paths, same messages), and [`ApiType::NAME_RULE`] says how
//! `metadata.name` is checked. Allocation (cluster IPs, node ports), uids and the Job selector
//! that needs the uid are the API server's: see [`job_generate_selector`].
//!
//! Errors are `k8rs_machinery::validation::FieldError`s (re-exported here).
//!
//! Pure: no IO, no async, no clock. Depends only on `k8s-openapi` and `k8rs-machinery`; must not
//! depend on the API server, the store or any client.

mod apiextensions;
mod apps;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
pub mod cron;
mod discovery;
mod events;
pub mod field;
mod meta;
pub mod names;
mod networking;
mod policy;
pub mod quantity;
mod rbac;
mod scheduling;
mod storage;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, Metadata, NamespaceResourceScope, Resource};

pub use batch::job_generate_selector;
pub use core::service::service_carry_allocated;
pub use field::{ErrorKind, FieldError, Path};

/// How an object's `metadata.name` (and `generateName` prefix) is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most types.
    DnsSubdomain,
    /// RFC 1123 label: namespaces, statefulsets.
    DnsLabel,
    /// RFC 1035 label (starts with a letter): services.
    Dns1035Label,
    /// Anything that is one URL path segment: RBAC roles and bindings.
    PathSegment,
    /// Any non-empty name: certificate signing requests.
    Any,
}

impl NameRule {
    /// The problems with `name`; `prefix` when it is a `generateName` (a trailing dash is fine).
    pub fn validate(self, name: &str, prefix: bool) -> Vec<String> {
        match self {
            NameRule::DnsSubdomain => names::name_is_dns_subdomain(name, prefix),
            NameRule::DnsLabel => names::name_is_dns_label(name, prefix),
            NameRule::Dns1035Label => names::name_is_dns1035_label(name, prefix),
            NameRule::PathSegment => names::validate_path_segment_name(name, prefix),
            NameRule::Any => vec![],
        }
    }
}

/// Defaulting and validation of one served type.
pub trait ApiType: Resource + Sized {
    /// How `metadata.name` is validated.
    const NAME_RULE: NameRule = NameRule::DnsSubdomain;

    /// Sets the defaults upstream sets (for fields users see).
    fn set_defaults(&mut self) {}

    /// Validation on create; errors carry upstream's field paths and messages.
    fn validate(&self) -> Vec<FieldError>;

    /// Validation on update, including immutable fields (`field is immutable`).
    fn validate_update(&self, old: &Self) -> Vec<FieldError>;
}

/// How objects of type `T` have their names validated.
pub fn name_rule<T: ApiType>() -> NameRule {
    T::NAME_RULE
}

/// Whether a resource scope is namespaced.
pub trait Scope {
    const NAMESPACED: bool;
}

impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// `ValidateObjectMeta` for an object of type `T`.
fn check_meta<T>(obj: &T) -> Vec<FieldError>
where
    T: ApiType + Metadata<Ty = ObjectMeta>,
    T::Scope: Scope,
{
    meta::validate_object_meta(
        obj.metadata(),
        <T::Scope as Scope>::NAMESPACED,
        T::NAME_RULE,
        &Path::new("metadata"),
    )
}

/// `ValidateObjectMetaUpdate` for an object of type `T`.
fn check_meta_update<T>(new: &T, old: &T) -> Vec<FieldError>
where
    T: ApiType + Metadata<Ty = ObjectMeta>,
{
    meta::validate_object_meta_update(new.metadata(), old.metadata(), &Path::new("metadata"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v1 as autoscalingv1, autoscaling::v2 as autoscalingv2,
        batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
        core::v1 as core, discovery::v1 as discovery, events::v1 as events,
        networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
        scheduling::v1 as scheduling, storage::v1 as storage,
    };

    #[test]
    fn every_served_type_has_a_name_rule() {
        use NameRule::*;
        let rules = [
            (name_rule::<core::Namespace>(), DnsLabel),
            (name_rule::<core::Pod>(), DnsSubdomain),
            (name_rule::<core::Service>(), Dns1035Label),
            (name_rule::<core::Endpoints>(), DnsSubdomain),
            (name_rule::<core::Node>(), DnsSubdomain),
            (name_rule::<core::ConfigMap>(), DnsSubdomain),
            (name_rule::<core::Secret>(), DnsSubdomain),
            (name_rule::<core::ServiceAccount>(), DnsSubdomain),
            (name_rule::<core::Event>(), Any),
            (name_rule::<core::ReplicationController>(), DnsSubdomain),
            (name_rule::<core::PersistentVolume>(), DnsSubdomain),
            (name_rule::<core::PersistentVolumeClaim>(), DnsSubdomain),
            (name_rule::<core::ResourceQuota>(), DnsSubdomain),
            (name_rule::<core::LimitRange>(), DnsSubdomain),
            (name_rule::<core::PodTemplate>(), DnsSubdomain),
            (name_rule::<apps::Deployment>(), DnsSubdomain),
            (name_rule::<apps::ReplicaSet>(), DnsSubdomain),
            (name_rule::<apps::StatefulSet>(), DnsLabel),
            (name_rule::<apps::DaemonSet>(), DnsSubdomain),
            (name_rule::<apps::ControllerRevision>(), DnsSubdomain),
            (name_rule::<batch::Job>(), DnsSubdomain),
            (name_rule::<batch::CronJob>(), DnsSubdomain),
            (
                name_rule::<autoscalingv2::HorizontalPodAutoscaler>(),
                DnsSubdomain,
            ),
            (
                name_rule::<autoscalingv1::HorizontalPodAutoscaler>(),
                DnsSubdomain,
            ),
            (name_rule::<coordination::Lease>(), DnsSubdomain),
            (name_rule::<discovery::EndpointSlice>(), DnsSubdomain),
            (name_rule::<events::Event>(), DnsSubdomain),
            (name_rule::<policy::PodDisruptionBudget>(), DnsSubdomain),
            (name_rule::<rbac::Role>(), PathSegment),
            (name_rule::<rbac::RoleBinding>(), PathSegment),
            (name_rule::<rbac::ClusterRole>(), PathSegment),
            (name_rule::<rbac::ClusterRoleBinding>(), PathSegment),
            (name_rule::<networking::NetworkPolicy>(), DnsSubdomain),
            (name_rule::<networking::Ingress>(), DnsSubdomain),
            (name_rule::<networking::IngressClass>(), DnsSubdomain),
            (name_rule::<storage::StorageClass>(), DnsSubdomain),
            (name_rule::<scheduling::PriorityClass>(), DnsSubdomain),
            (name_rule::<certificates::CertificateSigningRequest>(), Any),
        ];
        for (i, (got, want)) in rules.iter().enumerate() {
            assert_eq!(got, want, "entry {i}");
        }
    }

    #[test]
    fn generate_name_prefixes_may_end_in_a_dash() {
        assert!(NameRule::DnsSubdomain.validate("web-", true).is_empty());
        assert_eq!(NameRule::DnsSubdomain.validate("web-", false).len(), 1);
        assert_eq!(
            NameRule::PathSegment.validate("..", false),
            vec!["may not be '..'"]
        );
    }

    #[test]
    fn cluster_scoped_objects_reject_a_namespace() {
        let mut node = core::Node::default();
        node.metadata.name = Some("n1".into());
        node.metadata.namespace = Some("default".into());
        let errs: Vec<String> = node.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }
}
