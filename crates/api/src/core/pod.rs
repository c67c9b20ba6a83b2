//! Pod and pod template validation (upstream `ValidatePodSpec`, `ValidatePodCreate`,
//! `ValidatePodUpdate`, `ValidatePodTemplateSpec`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};

use super::container::{
    dns_label, dns_subdomain, host_port_conflicts, validate_container_common,
    validate_resource_requirements,
};
use super::probe::validate_probes_and_lifecycle;
use super::scheduling::{
    validate_affinity, validate_dns_config, validate_gates, validate_pod_security_context,
    validate_spread,
};
pub use super::scheduling::{validate_node_selector, validate_tolerations};
use super::volume::validate_volumes;
use crate::field::{
    FieldError, Path, bad_map, duplicate, forbidden, invalid, not_found, not_supported, required,
};
use crate::meta::{diff, semantic_eq, validate_annotations, validate_labels};
use crate::names::{inclusive_range_error, is_valid_ip};

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const MAX_INT32: i64 = i32::MAX as i64;

/// Where a pod spec lives: pods get a few checks templates do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecOf {
    Pod,
    Template,
}

/// Upstream's `ValidatePodSpec`.
pub fn validate_pod_spec(spec: &PodSpec, of: SpecOf, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let grace = spec.termination_grace_period_seconds;
    if grace.is_none() {
        errs.push(required(&path.child("terminationGracePeriodSeconds"), ""));
    }
    let (volumes, verrs) = validate_volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        of == SpecOf::Pod,
        &path.child("volumes"),
    );
    errs.extend(verrs);
    errs.extend(validate_containers(
        &spec.containers,
        &volumes,
        grace,
        &path.child("containers"),
    ));
    errs.extend(validate_init_containers(
        spec,
        &volumes,
        grace,
        &path.child("initContainers"),
    ));
    errs.extend(validate_ephemeral_containers(
        spec,
        &volumes,
        &path.child("ephemeralContainers"),
    ));
    errs.extend(host_network_ports(spec, of, path));
    errs.extend(enum_field(
        spec.restart_policy.as_deref(),
        &["Always", "OnFailure", "Never"],
        &path.child("restartPolicy"),
    ));
    errs.extend(enum_field(
        spec.dns_policy.as_deref(),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        &path.child("dnsPolicy"),
    ));
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        &path.child("nodeSelector"),
    ));
    if let Some(sc) = &spec.security_context {
        errs.extend(validate_pod_security_context(
            sc,
            &path.child("securityContext"),
        ));
    }
    if let Some(a) = &spec.affinity {
        errs.extend(validate_affinity(a, &path.child("affinity")));
    }
    errs.extend(validate_dns_config(
        spec.dns_config.as_ref(),
        spec.dns_policy.as_deref(),
        &path.child("dnsConfig"),
    ));
    errs.extend(validate_gates(spec, path));
    for (i, c) in spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        errs.extend(validate_spread(
            c,
            &path.child("topologySpreadConstraints").index(i),
        ));
    }
    errs.extend(validate_names_and_numbers(spec, path));
    errs
}

/// A required enumerated string: `Required value` when empty, else one of `valid`.
pub fn enum_field(value: Option<&str>, valid: &[&str], path: &Path) -> Vec<FieldError> {
    match value.unwrap_or("") {
        "" => vec![required(path, "")],
        v if !valid.contains(&v) => vec![not_supported(path, v, valid)],
        _ => vec![],
    }
}

fn validate_containers(
    containers: &[Container],
    volumes: &BTreeSet<String>,
    grace: Option<i64>,
    path: &Path,
) -> Vec<FieldError> {
    if containers.is_empty() {
        return vec![required(path, "")];
    }
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let ip = path.index(i);
        errs.extend(validate_container_common(c, volumes, &ip));
        if !names.insert(c.name.as_str()) {
            errs.push(duplicate(&ip.child("name"), &c.name));
        }
        errs.extend(validate_probes_and_lifecycle(c, grace, &ip));
        if c.restart_policy.is_some() {
            errs.push(forbidden(
                &ip.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(containers.iter().enumerate(), path));
    errs
}

fn validate_init_containers(
    spec: &PodSpec,
    volumes: &BTreeSet<String>,
    grace: Option<i64>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names: HashSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let ip = path.index(i);
        errs.extend(validate_container_common(c, volumes, &ip));
        let restartable = c.restart_policy.as_deref() == Some("Always");
        if let Some(rp) = c.restart_policy.as_deref().filter(|rp| *rp != "Always") {
            errs.push(not_supported(&ip.child("restartPolicy"), rp, &["Always"]));
        }
        if names.contains(c.name.as_str()) {
            errs.push(duplicate(&ip.child("name"), &c.name));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        errs.extend(host_port_conflicts(std::iter::once((i, c)), path));
        if restartable {
            errs.extend(validate_probes_and_lifecycle(c, grace, &ip));
            continue;
        }
        let disallowed = [
            ("lifecycle", c.lifecycle.is_some()),
            ("livenessProbe", c.liveness_probe.is_some()),
            ("readinessProbe", c.readiness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ];
        for (field, set) in disallowed {
            if set {
                errs.push(forbidden(
                    &ip.child(field),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    }
    errs
}

fn validate_ephemeral_containers(
    spec: &PodSpec,
    volumes: &BTreeSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let others: HashSet<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    let mut all = others.clone();
    for (i, ec) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let ip = path.index(i);
        let as_container: Container = serde_json::to_value(ec)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        errs.extend(validate_container_common(&as_container, volumes, &ip));
        if !all.insert(ec.name.as_str()) {
            errs.push(duplicate(&ip.child("name"), &ec.name));
        }
        if let Some(t) = ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
            && !others.contains(t)
        {
            errs.push(not_found(&ip.child("targetContainerName"), t));
        }
        let disallowed = [
            ("ports", ec.ports.is_some()),
            ("resources", ec.resources.is_some()),
            ("lifecycle", ec.lifecycle.is_some()),
            ("livenessProbe", ec.liveness_probe.is_some()),
            ("readinessProbe", ec.readiness_probe.is_some()),
            ("startupProbe", ec.startup_probe.is_some()),
        ];
        for (field, set) in disallowed {
            if set {
                errs.push(forbidden(
                    &ip.child(field),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
    errs
}

fn host_network_ports(spec: &PodSpec, of: SpecOf, path: &Path) -> Vec<FieldError> {
    if spec.host_network != Some(true) {
        return vec![];
    }
    let mut errs = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let hp = p.host_port.unwrap_or(0);
            if (of == SpecOf::Pod || hp != 0) && hp != p.container_port {
                let pp = path
                    .child("containers")
                    .index(i)
                    .child("ports")
                    .index(j)
                    .child("hostPort");
                errs.push(invalid(
                    &pp,
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
    errs
}

fn validate_names_and_numbers(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let subdomains = [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
        ("priorityClassName", &spec.priority_class_name),
    ];
    for (field, v) in subdomains {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(dns_subdomain(v, &path.child(field)));
        }
    }
    if let Some(v) = spec
        .active_deadline_seconds
        .filter(|v| !(1..=MAX_INT32).contains(v))
    {
        errs.push(invalid(
            &path.child("activeDeadlineSeconds"),
            v,
            &inclusive_range_error(1, MAX_INT32),
        ));
    }
    for (field, v) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(dns_label(v, &path.child(field)));
        }
    }
    errs.extend(validate_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
    ));
    for (i, h) in spec.host_aliases.iter().flatten().enumerate() {
        let hp = path.child("hostAliases").index(i);
        errs.extend(
            is_valid_ip(&h.ip)
                .iter()
                .map(|m| invalid(&hp.child("ip"), &h.ip, m)),
        );
        for (j, name) in h.hostnames.iter().flatten().enumerate() {
            errs.extend(dns_subdomain(name, &hp.child("hostnames").index(j)));
        }
    }
    if let Some(r) = &spec.runtime_class_name {
        errs.extend(dns_subdomain(r, &path.child("runtimeClassName")));
    }
    if let Some(p) = &spec.preemption_policy {
        errs.extend(enum_field(
            Some(p),
            &["PreemptLowerPriority", "Never"],
            &path.child("preemptionPolicy"),
        ));
    }
    if let Some(o) = &spec.overhead {
        let r = k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(o.clone()),
            ..Default::default()
        };
        errs.extend(validate_resource_requirements(&r, &path.child("overhead")));
    }
    if let Some(os) = &spec.os
        && !["linux", "windows"].contains(&os.name.as_str())
    {
        errs.push(not_supported(
            &path.child("os").child("name"),
            &os.name,
            &["linux", "windows"],
        ));
    }
    errs
}

/// `validatePodMetadataAndSpec` minus the object metadata (checked by the caller).
pub fn validate_pod_body(pod: &Pod) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let mut errs = pod_annotations(
        pod.metadata.annotations.as_ref(),
        spec,
        &Path::new("metadata").child("annotations"),
    );
    errs.extend(validate_pod_spec(spec, SpecOf::Pod, &spec_path));
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        for (vi, v) in spec.volumes.iter().flatten().enumerate() {
            for (si, s) in v
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .enumerate()
            {
                if s.service_account_token.is_some() {
                    let p = spec_path
                        .child("volumes")
                        .index(vi)
                        .child("projected")
                        .child("sources")
                        .index(si)
                        .child("serviceAccountToken");
                    errs.push(forbidden(
                        &p,
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    let lists = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (name, list) in lists {
        for (i, c) in list.into_iter().flatten().enumerate() {
            let image = c.image.as_deref().unwrap_or("");
            if image.trim() != image {
                errs.push(invalid(
                    &spec_path.child(name).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

fn pod_annotations(
    ann: Option<&BTreeMap<String, String>>,
    spec: &PodSpec,
    path: &Path,
) -> Vec<FieldError> {
    match ann.and_then(|a| a.get(MIRROR_POD_ANNOTATION)) {
        Some(v) if spec.node_name.as_deref().unwrap_or("").is_empty() => vec![invalid(
            &path.key(MIRROR_POD_ANNOTATION),
            v,
            "must set spec.nodeName if mirror pod annotation is set",
        )],
        _ => vec![],
    }
}

/// The mirror-pod annotation may not be added, changed or removed by an update.
pub fn mirror_annotation_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let get = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
            .cloned()
    };
    let path = Path::new("metadata")
        .child("annotations")
        .key(MIRROR_POD_ANNOTATION);
    match (get(new), get(old)) {
        (None, Some(_)) => vec![forbidden(
            &path,
            "may not remove or update mirror pod annotation",
        )],
        (Some(n), Some(o)) if n != o => vec![forbidden(
            &path,
            "may not remove or update mirror pod annotation",
        )],
        (Some(_), None) => vec![forbidden(&path, "may not add mirror pod annotation")],
        _ => vec![],
    }
}

/// Create-only pod checks (`ValidatePodCreate`).
pub fn validate_pod_create(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_pod_body(pod);
    let Some(spec) = &pod.spec else { return errs };
    let sp = Path::new("spec");
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(forbidden(
            &sp.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    if !spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec
            .scheduling_gates
            .as_ref()
            .is_some_and(|g| !g.is_empty())
    {
        errs.push(forbidden(
            &sp.child("nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    errs
}

const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The spec part of `ValidatePodUpdate`.
pub fn validate_pod_spec_update(new: &PodSpec, old: &PodSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let new_init = new.init_containers.as_deref().unwrap_or_default();
    let old_init = old.init_containers.as_deref().unwrap_or_default();
    for (name, n, o) in [
        ("containers", &new.containers[..], &old.containers[..]),
        ("initContainers", new_init, old_init),
    ] {
        if n.len() != o.len() {
            errs.push(forbidden(
                &sp.child(name),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in n.iter().enumerate() {
            let image = c.image.as_deref().unwrap_or("");
            let ip = sp.child(name).index(i).child("image");
            if image.is_empty() {
                errs.push(required(&ip, ""));
            }
            if image.trim() != image {
                errs.push(invalid(
                    &ip,
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    let adp = sp.child("activeDeadlineSeconds");
    match (new.active_deadline_seconds, old.active_deadline_seconds) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            errs.push(invalid(&adp, n, &inclusive_range_error(0, MAX_INT32)));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid(
                &adp,
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(invalid(
            &adp,
            None::<i64>,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    errs.extend(only_added_tolerations(new, old, &sp.child("tolerations")));
    errs.extend(only_deleted_gates(new, old, &sp.child("schedulingGates")));
    let munged = munge_updatable(new, old);
    if !semantic_eq(&munged, old) {
        errs.push(forbidden(
            &sp,
            &format!(
                "pod updates may not change fields other than {UPDATABLE_FIELDS}\n{}",
                diff(old, &munged)
            ),
        ));
    }
    errs
}

/// The new spec with the fields users may change copied back from the old one.
fn munge_updatable(new: &PodSpec, old: &PodSpec) -> PodSpec {
    let mut m = new.clone();
    for (c, o) in m.containers.iter_mut().zip(&old.containers) {
        c.image.clone_from(&o.image);
    }
    for (c, o) in m
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old.init_containers.iter().flatten())
    {
        c.image.clone_from(&o.image);
    }
    m.active_deadline_seconds = old.active_deadline_seconds;
    m.scheduling_gates.clone_from(&old.scheduling_gates);
    m.tolerations.clone_from(&old.tolerations);
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && m.termination_grace_period_seconds == Some(1)
    {
        m.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    if !old.scheduling_gates.as_ref().is_none_or(Vec::is_empty) {
        let adds_only = old
            .node_selector
            .iter()
            .flatten()
            .all(|(k, v)| m.node_selector.as_ref().and_then(|n| n.get(k)) == Some(v));
        if adds_only {
            m.node_selector.clone_from(&old.node_selector);
        }
    }
    m
}

fn only_added_tolerations(new: &PodSpec, old: &PodSpec, path: &Path) -> Vec<FieldError> {
    let new_t = new.tolerations.as_deref().unwrap_or_default();
    for o in old.tolerations.iter().flatten() {
        let found = new_t.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            semantic_eq(&o, n)
        });
        if !found {
            return vec![forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    validate_tolerations(new_t, path)
}

fn only_deleted_gates(new: &PodSpec, old: &PodSpec, path: &Path) -> Vec<FieldError> {
    let old_names: HashSet<&str> = old
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    new.scheduling_gates
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, g)| !old_names.contains(g.name.as_str()))
        .map(|(i, g)| {
            forbidden(
                &path.index(i).child("name"),
                &format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    g.name
                ),
            )
        })
        .collect()
}

/// Upstream's `ValidatePodTemplateSpec`.
pub fn validate_pod_template(t: &PodTemplateSpec, path: &Path) -> Vec<FieldError> {
    let meta = t.metadata.clone().unwrap_or_default();
    let default_spec = PodSpec::default();
    let spec = t.spec.as_ref().unwrap_or(&default_spec);
    let mut errs = validate_labels(meta.labels.as_ref(), &path.child("labels"));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs.extend(pod_annotations(
        meta.annotations.as_ref(),
        spec,
        &path.child("annotations"),
    ));
    errs.extend(validate_pod_spec(
        spec,
        SpecOf::Template,
        &path.child("spec"),
    ));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// The labels of a template (for selector matching), if any.
pub fn template_labels(t: &PodTemplateSpec) -> Option<&BTreeMap<String, String>> {
    t.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// `Invalid value: map[...]: `selector` does not match template `labels``.
pub fn selector_mismatch(t: &PodTemplateSpec, path: &Path) -> FieldError {
    invalid(
        path,
        bad_map(template_labels(t)),
        "`selector` does not match template `labels`",
    )
}

#[cfg(test)]
mod tests;
