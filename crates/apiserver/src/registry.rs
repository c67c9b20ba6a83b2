//! The resource registry: one table entry per served resource, saying how it is named, stored,
//! defaulted, validated and printed. A new built-in type is one entry in [`builtin`].

use std::any::type_name;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use k8rs_api::ApiType;
use k8rs_machinery::validation::FieldError;
use k8rs_machinery::validation::Path;
use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscalingv1, autoscaling::v2 as autoscalingv2,
    batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// How `metadata.generation` moves for a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// The type has no generation.
    None,
    /// Bumped when anything outside metadata and status changes (and when deletion starts).
    Spec,
    /// As `Spec`, and also when annotations change (Deployments).
    SpecAndAnnotations,
}

/// The typed operations of one resource, implemented once for every k8s-openapi type.
pub trait TypedOps: Send + Sync {
    /// Decodes `value` through the typed schema: unknown fields are dropped and reported (as
    /// JSON paths), defaults applied when `defaults`.
    fn normalize(&self, value: &Value, defaults: bool) -> Result<(Value, Vec<String>), String>;
    fn validate(&self, value: &Value) -> Vec<FieldError>;
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError>;
    fn rust_type(&self) -> &'static str;
    /// The OpenAPI definition name of the type and adds its schemas to `generator`.
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

struct Typed<T>(PhantomData<fn() -> T>);

impl<T> TypedOps for Typed<T>
where
    T: ApiType + Serialize + DeserializeOwned + schemars::JsonSchema,
{
    fn normalize(&self, value: &Value, defaults: bool) -> Result<(Value, Vec<String>), String> {
        let mut typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if defaults {
            typed.set_defaults();
        }
        let out = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
        let mut unknown = Vec::new();
        unknown_fields(value, &out, &mut String::new(), &mut unknown);
        Ok((out, unknown))
    }

    fn validate(&self, value: &Value) -> Vec<FieldError> {
        match serde_json::from_value::<T>(value.clone()) {
            Ok(typed) => typed.validate(),
            Err(e) => vec![FieldError::internal(&Path::new(""), e.to_string())],
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let decoded = serde_json::from_value::<T>(new.clone())
            .and_then(|n| Ok((n, serde_json::from_value::<T>(old.clone())?)));
        match decoded {
            Ok((new, old)) => new.validate_update(&old),
            Err(e) => vec![FieldError::internal(&Path::new(""), e.to_string())],
        }
    }

    fn rust_type(&self) -> &'static str {
        type_name::<T>()
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<T>()
    }
}

/// Collects the paths of fields present in `input` but dropped by the typed round trip.
pub(crate) fn unknown_fields(
    input: &Value,
    typed: &Value,
    path: &mut String,
    out: &mut Vec<String>,
) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, path, out),
                    None if v.is_null() => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                unknown_fields(iv, tv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A subresource served under a resource's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Status,
    Scale,
    Binding,
    Eviction,
    Log,
    Token,
    Finalize,
    Approval,
    Ephemeral,
}

impl Sub {
    pub fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Binding => "binding",
            Sub::Eviction => "eviction",
            Sub::Log => "log",
            Sub::Token => "token",
            Sub::Finalize => "finalize",
            Sub::Approval => "approval",
            Sub::Ephemeral => "ephemeralcontainers",
        }
    }

    /// The kind a subresource request or response carries, and its group/version.
    pub fn kind(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Sub::Scale => ("autoscaling", "v1", "Scale"),
            Sub::Binding => ("", "v1", "Binding"),
            Sub::Eviction => ("policy", "v1", "Eviction"),
            Sub::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
            _ => ("", "", ""),
        }
    }

    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Sub::Status | Sub::Scale | Sub::Approval | Sub::Ephemeral => {
                &["get", "patch", "update"]
            }
            Sub::Binding | Sub::Eviction | Sub::Token => &["create"],
            Sub::Log => &["get"],
            Sub::Finalize => &["update"],
        }
    }
}

/// One served resource in one version.
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Sub],
    /// The store key prefix; several served versions of one resource share it.
    pub prefix: &'static str,
    /// The apiVersion of the stored form; objects are converted when served in another.
    pub storage_version: &'static str,
    /// The apiVersion served here (`v1`, `apps/v1`).
    pub served_api_version: &'static str,
    pub generation: Generation,
    /// Extra field selectors beyond metadata.name/metadata.namespace, with the JSON path of each.
    pub field_selectors: &'static [(&'static str, &'static str)],
    /// Whether DELETE answers with the object (true) or a Status (false), as upstream.
    pub return_deleted: bool,
    pub typed: Box<dyn TypedOps>,
    /// What a custom resource's entry knows beyond a built-in one; `None` for built-in ones.
    pub custom: Option<Arc<crate::crd::CustomInfo>>,
}

impl ResourceDef {
    fn new<T>(plural: &'static str, namespaced: bool) -> Self
    where
        T: ApiType + Serialize + DeserializeOwned + schemars::JsonSchema + 'static,
    {
        ResourceDef {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            plural,
            singular: T::KIND.to_ascii_lowercase(),
            namespaced,
            short_names: &[],
            categories: &[],
            subresources: &[],
            prefix: "",
            storage_version: T::API_VERSION,
            served_api_version: T::API_VERSION,
            generation: Generation::None,
            field_selectors: &[],
            return_deleted: false,
            typed: Box::new(Typed::<T>(PhantomData)),
            custom: None,
        }
    }

    fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }

    fn all(mut self) -> Self {
        self.categories = &["all"];
        self
    }

    fn categories(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }

    fn subs(mut self, subs: &'static [Sub]) -> Self {
        self.subresources = subs;
        self
    }

    fn generation(mut self, g: Generation) -> Self {
        self.generation = g;
        self
    }

    fn fields(mut self, f: &'static [(&'static str, &'static str)]) -> Self {
        self.field_selectors = f;
        self
    }

    fn stored_as(mut self, api_version: &'static str) -> Self {
        self.storage_version = api_version;
        self
    }

    fn prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = prefix;
        self
    }

    fn returns_deleted(mut self) -> Self {
        self.return_deleted = true;
        self
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The apiVersion and kind of this resource's objects.
    pub fn types(&self) -> (&'static str, &'static str) {
        (self.served_api_version, self.kind)
    }

    pub fn has(&self, sub: Sub) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn has_status(&self) -> bool {
        self.has(Sub::Status)
    }

    /// The store key of an object, or (with an empty name) the prefix of a list.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}/{ns}/{name}", self.prefix),
            (true, None) if name.is_empty() => format!("{}/", self.prefix),
            _ => format!("{}/{name}", self.prefix),
        }
    }

    /// Whether objects of this resource are stored in another version than served here.
    pub fn converts(&self) -> bool {
        self.storage_version != self.api_version()
    }

    pub fn group_version(&self) -> (&'static str, &'static str) {
        (self.group, self.version)
    }

    /// Whether the resource is served (a custom resource may be stored in a version it does
    /// not serve).
    pub fn served(&self) -> bool {
        self.custom.as_ref().is_none_or(|c| c.served)
    }

    /// Whether this is an entry of the custom resource that `crd` defines.
    pub fn custom_of(&self, crd: &Value) -> bool {
        self.custom.is_some()
            && crd["spec"]["group"] == self.group
            && crd["spec"]["names"]["plural"] == self.plural
    }
}

impl std::fmt::Debug for ResourceDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ResourceDef({}/{} {})",
            self.group, self.version, self.plural
        )
    }
}

const POD_FIELDS: &[(&str, &str)] = &[
    ("spec.nodeName", "spec.nodeName"),
    ("spec.restartPolicy", "spec.restartPolicy"),
    ("spec.schedulerName", "spec.schedulerName"),
    ("spec.serviceAccountName", "spec.serviceAccountName"),
    ("spec.hostNetwork", "spec.hostNetwork"),
    ("status.phase", "status.phase"),
    ("status.podIP", "status.podIP"),
    ("status.nominatedNodeName", "status.nominatedNodeName"),
];

const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject.kind", "involvedObject.kind"),
    ("involvedObject.namespace", "involvedObject.namespace"),
    ("involvedObject.name", "involvedObject.name"),
    ("involvedObject.uid", "involvedObject.uid"),
    ("involvedObject.apiVersion", "involvedObject.apiVersion"),
    (
        "involvedObject.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("involvedObject.fieldPath", "involvedObject.fieldPath"),
    ("reason", "reason"),
    ("reportingComponent", "reportingComponent"),
    ("source", "source.component"),
    ("type", "type"),
];

/// The built-in resources, each served version one entry.
pub fn builtin() -> Vec<ResourceDef> {
    use Generation::{Spec, SpecAndAnnotations};
    use Sub::*;
    vec![
        // core/v1
        ResourceDef::new::<core::Namespace>("namespaces", false)
            .short(&["ns"])
            .subs(&[Status, Finalize])
            .fields(&[("status.phase", "status.phase")])
            .prefix("/registry/namespaces")
            .returns_deleted(),
        ResourceDef::new::<core::Pod>("pods", true)
            .short(&["po"])
            .all()
            .subs(&[Status, Binding, Eviction, Log, Ephemeral])
            .fields(POD_FIELDS)
            .prefix("/registry/pods")
            .returns_deleted(),
        ResourceDef::new::<core::Service>("services", true)
            .short(&["svc"])
            .all()
            .subs(&[Status])
            .fields(&[
                ("spec.clusterIP", "spec.clusterIP"),
                ("spec.type", "spec.type"),
            ])
            .prefix("/registry/services/specs")
            .returns_deleted(),
        ResourceDef::new::<core::Endpoints>("endpoints", true)
            .short(&["ep"])
            .prefix("/registry/services/endpoints"),
        ResourceDef::new::<core::Node>("nodes", false)
            .short(&["no"])
            .subs(&[Status])
            .fields(&[("spec.unschedulable", "spec.unschedulable")])
            .prefix("/registry/minions")
            .returns_deleted(),
        ResourceDef::new::<core::ConfigMap>("configmaps", true)
            .short(&["cm"])
            .prefix("/registry/configmaps"),
        ResourceDef::new::<core::Secret>("secrets", true)
            .fields(&[("type", "type")])
            .prefix("/registry/secrets"),
        ResourceDef::new::<core::ServiceAccount>("serviceaccounts", true)
            .short(&["sa"])
            .subs(&[Token])
            .prefix("/registry/serviceaccounts"),
        ResourceDef::new::<core::Event>("events", true)
            .short(&["ev"])
            .fields(EVENT_FIELDS)
            .prefix("/registry/events"),
        ResourceDef::new::<core::ReplicationController>("replicationcontrollers", true)
            .short(&["rc"])
            .all()
            .subs(&[Status, Scale])
            .generation(Spec)
            .fields(&[("status.replicas", "status.replicas")])
            .prefix("/registry/controllers"),
        ResourceDef::new::<core::PersistentVolume>("persistentvolumes", false)
            .short(&["pv"])
            .subs(&[Status])
            .prefix("/registry/persistentvolumes"),
        ResourceDef::new::<core::PersistentVolumeClaim>("persistentvolumeclaims", true)
            .short(&["pvc"])
            .subs(&[Status])
            .prefix("/registry/persistentvolumeclaims"),
        ResourceDef::new::<core::ResourceQuota>("resourcequotas", true)
            .short(&["quota"])
            .subs(&[Status])
            .prefix("/registry/resourcequotas"),
        ResourceDef::new::<core::LimitRange>("limitranges", true)
            .short(&["limits"])
            .prefix("/registry/limitranges"),
        ResourceDef::new::<core::PodTemplate>("podtemplates", true)
            .prefix("/registry/podtemplates"),
        // apps/v1
        ResourceDef::new::<apps::Deployment>("deployments", true)
            .short(&["deploy"])
            .all()
            .subs(&[Status, Scale])
            .generation(SpecAndAnnotations)
            .prefix("/registry/deployments"),
        ResourceDef::new::<apps::ReplicaSet>("replicasets", true)
            .short(&["rs"])
            .all()
            .subs(&[Status, Scale])
            .generation(Spec)
            .fields(&[("status.replicas", "status.replicas")])
            .prefix("/registry/replicasets"),
        ResourceDef::new::<apps::StatefulSet>("statefulsets", true)
            .short(&["sts"])
            .all()
            .subs(&[Status, Scale])
            .generation(Spec)
            .prefix("/registry/statefulsets"),
        ResourceDef::new::<apps::DaemonSet>("daemonsets", true)
            .short(&["ds"])
            .all()
            .subs(&[Status])
            .generation(Spec)
            .prefix("/registry/daemonsets"),
        ResourceDef::new::<apps::ControllerRevision>("controllerrevisions", true)
            .prefix("/registry/controllerrevisions"),
        // batch/v1
        ResourceDef::new::<batch::Job>("jobs", true)
            .all()
            .subs(&[Status])
            .generation(Spec)
            .fields(&[("status.successful", "status.succeeded")])
            .prefix("/registry/jobs"),
        ResourceDef::new::<batch::CronJob>("cronjobs", true)
            .short(&["cj"])
            .all()
            .subs(&[Status])
            .generation(Spec)
            .prefix("/registry/cronjobs"),
        // autoscaling: one stored object (v2) served in v1 and v2.
        ResourceDef::new::<autoscalingv2::HorizontalPodAutoscaler>(
            "horizontalpodautoscalers",
            true,
        )
        .short(&["hpa"])
        .all()
        .subs(&[Status])
        .generation(Spec)
        .prefix("/registry/horizontalpodautoscalers"),
        ResourceDef::new::<autoscalingv1::HorizontalPodAutoscaler>(
            "horizontalpodautoscalers",
            true,
        )
        .short(&["hpa"])
        .all()
        .subs(&[Status])
        .generation(Spec)
        .stored_as("autoscaling/v2")
        .prefix("/registry/horizontalpodautoscalers"),
        ResourceDef::new::<coordination::Lease>("leases", true).prefix("/registry/leases"),
        ResourceDef::new::<discovery::EndpointSlice>("endpointslices", true)
            .generation(Spec)
            .prefix("/registry/endpointslices"),
        // events.k8s.io/v1: the same stored objects as core/v1 events.
        ResourceDef::new::<events::Event>("events", true)
            .short(&["ev"])
            .stored_as("v1")
            .prefix("/registry/events"),
        ResourceDef::new::<policy::PodDisruptionBudget>("poddisruptionbudgets", true)
            .short(&["pdb"])
            .subs(&[Status])
            .generation(Spec)
            .prefix("/registry/poddisruptionbudgets"),
        ResourceDef::new::<rbac::Role>("roles", true).prefix("/registry/roles"),
        ResourceDef::new::<rbac::RoleBinding>("rolebindings", true)
            .prefix("/registry/rolebindings"),
        ResourceDef::new::<rbac::ClusterRole>("clusterroles", false)
            .prefix("/registry/clusterroles"),
        ResourceDef::new::<rbac::ClusterRoleBinding>("clusterrolebindings", false)
            .prefix("/registry/clusterrolebindings"),
        ResourceDef::new::<networking::NetworkPolicy>("networkpolicies", true)
            .short(&["netpol"])
            .generation(Spec)
            .prefix("/registry/networkpolicies"),
        ResourceDef::new::<networking::Ingress>("ingresses", true)
            .short(&["ing"])
            .subs(&[Status])
            .generation(Spec)
            .prefix("/registry/ingress"),
        ResourceDef::new::<networking::IngressClass>("ingressclasses", false)
            .generation(Spec)
            .prefix("/registry/ingressclasses"),
        ResourceDef::new::<storage::StorageClass>("storageclasses", false)
            .short(&["sc"])
            .prefix("/registry/storageclasses"),
        ResourceDef::new::<scheduling::PriorityClass>("priorityclasses", false)
            .short(&["pc"])
            .prefix("/registry/priorityclasses"),
        ResourceDef::new::<certificates::CertificateSigningRequest>(
            "certificatesigningrequests",
            false,
        )
        .short(&["csr"])
        .subs(&[Status, Approval])
        .fields(&[("spec.signerName", "spec.signerName")])
        .prefix("/registry/certificatesigningrequests"),
        ResourceDef::new::<apiextensions::CustomResourceDefinition>(
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .categories(&["api-extensions"])
        .subs(&[Status])
        .generation(Spec)
        .prefix("/registry/apiextensions.k8s.io/customresourcedefinitions"),
    ]
}

/// A served resource's entry; custom resources' entries come and go with their definitions.
pub type Def = Arc<ResourceDef>;

/// The registry of served resources with its lookups: the built-in resources, fixed, and the
/// custom resources of the CustomResourceDefinitions being served, replaced as a whole when
/// they change (readers keep the set they looked up in).
pub struct Registry {
    builtin: Vec<Def>,
    served: RwLock<Arc<Served>>,
}

/// One consistent set of served resources.
struct Served {
    defs: Vec<Def>,
    by_path: HashMap<(&'static str, &'static str, &'static str), usize>,
    /// The entry in the storage version of each key prefix (which a custom resource may store
    /// in a version it does not serve).
    by_prefix: HashMap<&'static str, Def>,
}

impl Served {
    /// `entries` holds the served entries and the storage entries that are not served.
    fn new(entries: Vec<Def>) -> Self {
        let by_prefix = entries
            .iter()
            .filter(|d| !d.converts())
            .map(|d| (d.prefix, d.clone()))
            .collect();
        let defs: Vec<Def> = entries.into_iter().filter(|d| d.served()).collect();
        let by_path = defs
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.group, d.version, d.plural), i))
            .collect();
        Served {
            defs,
            by_path,
            by_prefix,
        }
    }
}

impl Registry {
    pub fn new(defs: Vec<ResourceDef>) -> Self {
        let builtin: Vec<Def> = defs.into_iter().map(Arc::new).collect();
        let served = RwLock::new(Arc::new(Served::new(builtin.clone())));
        Registry { builtin, served }
    }

    pub fn builtin() -> Self {
        Self::new(builtin())
    }

    fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `custom` beside the built-in resources, in place of the custom resources served
    /// before (a storage entry that is not served is only stored in). An entry whose group,
    /// version and plural a built-in resource has is ignored.
    pub fn set_custom(&self, custom: Vec<Def>) {
        let mut defs = self.builtin.clone();
        for def in custom {
            let taken = defs
                .iter()
                .any(|d| (d.group, d.version, d.plural) == (def.group, def.version, def.plural));
            if !taken {
                defs.push(def);
            }
        }
        *self.served.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Served::new(defs));
    }

    /// The built-in resources.
    pub fn builtin_defs(&self) -> &[Def] {
        &self.builtin
    }

    /// Every served resource, built-in ones first.
    pub fn all(&self) -> Vec<Def> {
        self.served().defs.clone()
    }

    /// The resource served at `/apis/{group}/{version}/{plural}`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Def> {
        let served = self.served();
        served
            .by_path
            .get(&(group, version, plural))
            .map(|&i| served.defs[i].clone())
    }

    /// The entry whose stored objects live under the prefix of `key`, with the object's
    /// namespace and name. The entry returned is the one in the storage version.
    pub fn for_key<'k>(&self, key: &'k str) -> Option<(Def, Option<&'k str>, &'k str)> {
        let served = self.served();
        let storage_def = |prefix: &str| served.by_prefix.get(prefix);
        let (rest, name) = key.rsplit_once('/')?;
        if let Some(d) = storage_def(rest).filter(|d| !d.namespaced) {
            return Some((d.clone(), None, name));
        }
        let (prefix, ns) = rest.rsplit_once('/')?;
        storage_def(prefix)
            .filter(|d| d.namespaced)
            .map(|d| (d.clone(), Some(ns), name))
    }

    /// The entry of `def`'s resource in its storage version (itself when it is stored as served).
    pub fn storage_def(&self, def: &ResourceDef) -> Option<Def> {
        self.stored_at(def.prefix)
    }

    /// The entry in the storage version of every stored resource.
    pub fn stored(&self) -> Vec<Def> {
        self.served().by_prefix.values().cloned().collect()
    }

    /// The entry in the storage version of the resource stored under `prefix`.
    pub fn stored_at(&self, prefix: &str) -> Option<Def> {
        self.served().by_prefix.get(prefix).cloned()
    }

    /// The groups served, in discovery order (core first), each with its versions.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for d in &self.served().defs {
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, versions)) if !versions.contains(&d.version) => versions.push(d.version),
                Some(_) => {}
                None => out.push((d.group, vec![d.version])),
            }
        }
        out
    }

    /// The resources of one group version.
    pub fn resources(&self, group: &str, version: &str) -> impl Iterator<Item = Def> + use<> {
        let served = self.served();
        let group_version = |d: &&Def| d.group == group && d.version == version;
        let defs: Vec<Def> = served.defs.iter().filter(group_version).cloned().collect();
        defs.into_iter()
    }
}
