//! The resources the collector watches: the built-in kinds that carry ownerReferences or are
//! named as owners. A fixed table, so the collector needs no discovery round trips.

use kube::core::ApiResource;

/// One watched resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Resource {
    /// The `apiVersion` objects of this resource carry.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The type-erased resource for a dynamic `Api`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: self.api_version(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        namespaced,
    }
}

/// Every resource the collector watches.
pub const RESOURCES: &[Resource] = &[
    res("", "v1", "Pod", "pods", true),
    res(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
    ),
    res(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    res("", "v1", "PersistentVolume", "persistentvolumes", false),
    res("", "v1", "ConfigMap", "configmaps", true),
    res("", "v1", "Secret", "secrets", true),
    res("", "v1", "Service", "services", true),
    res("", "v1", "ServiceAccount", "serviceaccounts", true),
    res("", "v1", "Endpoints", "endpoints", true),
    res("", "v1", "Event", "events", true),
    res("", "v1", "Node", "nodes", false),
    res("apps", "v1", "ReplicaSet", "replicasets", true),
    res("apps", "v1", "Deployment", "deployments", true),
    res("apps", "v1", "DaemonSet", "daemonsets", true),
    res("apps", "v1", "StatefulSet", "statefulsets", true),
    res(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
    ),
    res("batch", "v1", "Job", "jobs", true),
    res("batch", "v1", "CronJob", "cronjobs", true),
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    res("coordination.k8s.io", "v1", "Lease", "leases", true),
    res(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    res(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        false,
    ),
];

/// The index in [`RESOURCES`] of the kind an ownerReference names (`apiVersion` and `kind`).
pub fn lookup(api_version: &str, kind: &str) -> Option<usize> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_kinds_by_group_whatever_the_version() {
        let rs = lookup("apps/v1", "ReplicaSet").map(|i| RESOURCES[i].plural);
        assert_eq!(rs, Some("replicasets"));
        let pod = lookup("v1", "Pod").map(|i| RESOURCES[i].plural);
        assert_eq!(pod, Some("pods"));
        assert!(lookup("apps/v1beta2", "Deployment").is_some());
        assert_eq!(lookup("example.com/v1", "Widget"), None);
    }
}
