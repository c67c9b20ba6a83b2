//! Container validation: names, images, ports, env, mounts, probes, resources
//! (upstream `validateContainerCommon` and what it calls).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, ResourceRequirements, SecurityContext,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{
    Bad, FieldError, Path, bad_json, duplicate, invalid, not_found, not_supported, required,
};
use crate::meta::IS_NEGATIVE;
use crate::names::{
    is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_qualified_name,
    is_valid_id, is_valid_port_name, is_valid_port_num, name_is_dns_subdomain,
};
use crate::quantity;

pub const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// `ValidateDNS1123Label` as field errors.
pub fn dns_label(value: &str, path: &Path) -> Vec<FieldError> {
    is_dns1123_label(value)
        .into_iter()
        .map(|m| invalid(path, value, &m))
        .collect()
}

/// `ValidateDNS1123Subdomain` as field errors.
pub fn dns_subdomain(value: &str, path: &Path) -> Vec<FieldError> {
    is_dns1123_subdomain(value)
        .into_iter()
        .map(|m| invalid(path, value, &m))
        .collect()
}

/// `ValidateQualifiedName` as field errors.
pub fn qualified_name(value: &str, path: &Path) -> Vec<FieldError> {
    is_qualified_name(value)
        .into_iter()
        .map(|m| invalid(path, value, &m))
        .collect()
}

/// Validation common to regular, init and ephemeral containers.
pub fn validate_container_common(
    c: &Container,
    volumes: &BTreeSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else {
        errs.extend(dns_label(&c.name, &path.child("name")));
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(required(&path.child("image"), ""));
    }
    let tmp = c.termination_message_policy.as_deref().unwrap_or("");
    match tmp {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(&path.child("terminationMessagePolicy"), "")),
        other => errs.push(not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_ports(
        c.ports.as_deref().unwrap_or_default(),
        &path.child("ports"),
    ));
    errs.extend(validate_env(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
    ));
    errs.extend(validate_env_from(
        c.env_from.as_deref().unwrap_or_default(),
        &path.child("envFrom"),
    ));
    errs.extend(validate_mounts(
        c.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
        &path.child("volumeMounts"),
    ));
    match c.image_pull_policy.as_deref().unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(required(&path.child("imagePullPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("imagePullPolicy"),
            other,
            PULL_POLICIES,
        )),
    }
    if let Some(r) = &c.resources {
        errs.extend(validate_resource_requirements(r, &path.child("resources")));
    }
    if let Some(sc) = &c.security_context {
        errs.extend(validate_security_context(
            sc,
            &path.child("securityContext"),
        ));
    }
    errs
}

/// Upstream's `ValidatePortNumOrName`.
pub fn port_num_or_name(port: &IntOrString, path: &Path) -> Vec<FieldError> {
    match port {
        IntOrString::Int(n) => is_valid_port_num(i64::from(*n))
            .into_iter()
            .map(|m| invalid(path, *n, &m))
            .collect(),
        IntOrString::String(s) => is_valid_port_name(s)
            .into_iter()
            .map(|m| invalid(path, s, &m))
            .collect(),
    }
}

fn validate_ports(ports: &[ContainerPort], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ip = path.index(i);
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(msgs.iter().map(|m| invalid(&ip.child("name"), name, m)));
            } else if !names.insert(name) {
                errs.push(duplicate(&ip.child("name"), name));
            }
        }
        if p.container_port == 0 {
            errs.push(required(&ip.child("containerPort"), ""));
        } else {
            for m in is_valid_port_num(i64::from(p.container_port)) {
                errs.push(invalid(&ip.child("containerPort"), p.container_port, &m));
            }
        }
        if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
            for m in is_valid_port_num(i64::from(hp)) {
                errs.push(invalid(&ip.child("hostPort"), hp, &m));
            }
        }
        match p.protocol.as_deref().unwrap_or("") {
            "" => errs.push(required(&ip.child("protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => {
                errs.push(not_supported(&ip.child("protocol"), proto, PROTOCOLS))
            }
            _ => {}
        }
    }
    errs
}

/// Host ports must not collide (`protocol/hostIP/port`) across the given containers.
pub fn host_port_conflicts<'a>(
    containers: impl Iterator<Item = (usize, &'a Container)>,
    path: &Path,
) -> Vec<FieldError> {
    let mut seen = HashSet::new();
    let mut errs = Vec::new();
    for (ci, c) in containers {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let Some(hp) = p.host_port.filter(|hp| *hp != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{hp}",
                p.protocol.as_deref().unwrap_or(""),
                p.host_ip.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errs.push(duplicate(
                    &path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
    errs
}

fn validate_env(vars: &[EnvVar], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in vars.iter().enumerate() {
        let ip = path.index(i);
        if ev.name.is_empty() {
            errs.push(required(&ip.child("name"), ""));
        } else {
            errs.extend(
                is_env_var_name(&ev.name)
                    .iter()
                    .map(|m| invalid(&ip.child("name"), &ev.name, m)),
            );
        }
        errs.extend(validate_env_value_from(ev, &ip.child("valueFrom")));
    }
    errs
}

fn validate_env_value_from(ev: &EnvVar, path: &Path) -> Vec<FieldError> {
    let Some(from) = &ev.value_from else {
        return vec![];
    };
    let mut errs = Vec::new();
    let mut sources = 0;
    if let Some(f) = &from.field_ref {
        sources += 1;
        errs.extend(validate_field_ref(
            f.api_version.as_deref(),
            &f.field_path,
            &path.child("fieldRef"),
        ));
    }
    if let Some(r) = &from.resource_field_ref {
        sources += 1;
        let rp = path.child("resourceFieldRef");
        if r.resource.is_empty() {
            errs.push(required(&rp.child("resource"), ""));
        } else if !RESOURCE_FIELD_PATHS.contains(&r.resource.as_str())
            && !r.resource.starts_with("requests.hugepages-")
            && !r.resource.starts_with("limits.hugepages-")
        {
            errs.push(not_supported(
                &rp.child("resource"),
                &r.resource,
                RESOURCE_FIELD_PATHS,
            ));
        }
    }
    if let Some(s) = &from.config_map_key_ref {
        sources += 1;
        errs.extend(validate_key_selector(
            &s.name,
            &s.key,
            &path.child("configMapKeyRef"),
        ));
    }
    if let Some(s) = &from.secret_key_ref {
        sources += 1;
        errs.extend(validate_key_selector(
            &s.name,
            &s.key,
            &path.child("secretKeyRef"),
        ));
    }
    if sources == 0 {
        errs.push(invalid(
            path,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if !ev.value.as_deref().unwrap_or("").is_empty() {
        errs.push(invalid(
            path,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if sources > 1 {
        errs.push(invalid(
            path,
            "",
            "may not have more than one field specified at a time",
        ));
    }
    errs
}

/// A downward-API `fieldRef` for env vars.
pub fn validate_field_ref(
    api_version: Option<&str>,
    field_path: &str,
    path: &Path,
) -> Vec<FieldError> {
    let api_version = api_version.unwrap_or("");
    if api_version.is_empty() {
        return vec![required(&path.child("apiVersion"), "")];
    }
    if field_path.is_empty() {
        return vec![required(&path.child("fieldPath"), "")];
    }
    if api_version != "v1" {
        return vec![invalid(
            &path.child("fieldPath"),
            field_path,
            &format!("error converting fieldPath: unsupported pod version: {api_version}"),
        )];
    }
    if let Some((base, subscript)) = split_subscript(field_path) {
        return match base {
            "metadata.annotations" => qualified_name(&subscript.to_lowercase(), path),
            "metadata.labels" => qualified_name(subscript, path),
            other => vec![invalid(path, other, "does not support subscript")],
        };
    }
    if !ENV_FIELD_PATHS.contains(&field_path) {
        return vec![not_supported(
            &path.child("fieldPath"),
            field_path,
            ENV_FIELD_PATHS,
        )];
    }
    vec![]
}

/// `metadata.labels['key']` into (`metadata.labels`, `key`).
fn split_subscript(p: &str) -> Option<(&str, &str)> {
    let (base, rest) = p.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    Some((base, key))
}

fn validate_key_selector(name: &str, key: &str, path: &Path) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = is_dns1123_subdomain(name)
        .iter()
        .map(|m| invalid(&path.child("name"), name, m))
        .collect();
    if key.is_empty() {
        errs.push(required(&path.child("key"), ""));
    } else {
        errs.extend(
            is_config_map_key(key)
                .iter()
                .map(|m| invalid(&path.child("key"), key, m)),
        );
    }
    errs
}

fn validate_env_from(list: &[EnvFromSource], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in list.iter().enumerate() {
        let ip = path.index(i);
        if let Some(p) = ev.prefix.as_deref().filter(|p| !p.is_empty()) {
            errs.extend(
                is_env_var_name(p)
                    .iter()
                    .map(|m| invalid(&ip.child("prefix"), p, m)),
            );
        }
        let refs = [
            ("configMapRef", ev.config_map_ref.as_ref().map(|r| &r.name)),
            ("secretRef", ev.secret_ref.as_ref().map(|r| &r.name)),
        ];
        let mut sources = 0;
        for (field, name) in refs {
            let Some(name) = name else { continue };
            sources += 1;
            let np = ip.child(field).child("name");
            if name.is_empty() {
                errs.push(required(&np, ""));
            } else {
                errs.extend(
                    name_is_dns_subdomain(name, true)
                        .iter()
                        .map(|m| invalid(&np, name, m)),
                );
            }
        }
        if sources == 0 {
            errs.push(invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if sources > 1 {
            errs.push(invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn validate_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut points = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let ip = path.index(i);
        if m.name.is_empty() {
            errs.push(required(&ip.child("name"), ""));
        }
        if !volumes.contains(&m.name) {
            errs.push(not_found(&ip.child("name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(required(&ip.child("mountPath"), ""));
        }
        if !points.insert(m.mount_path.as_str()) {
            errs.push(invalid(
                &ip.child("mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        let sub = m.sub_path.as_deref().unwrap_or("");
        if !sub.is_empty() {
            errs.extend(local_descending_path(sub, &path.child("subPath")));
        }
        let expr = m.sub_path_expr.as_deref().unwrap_or("");
        if !expr.is_empty() {
            if !sub.is_empty() {
                errs.push(invalid(
                    &ip.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(expr, &path.child("subPathExpr")));
        }
    }
    errs
}

/// A relative path without `..` components.
pub fn local_descending_path(p: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if p.starts_with('/') {
        errs.push(invalid(path, p, "must be a relative path"));
    }
    errs.extend(no_backsteps(p, path));
    errs
}

pub fn no_backsteps(p: &str, path: &Path) -> Vec<FieldError> {
    if p.split(['/', '\\']).any(|part| part == "..") {
        vec![invalid(path, p, "must not contain '..'")]
    } else {
        vec![]
    }
}

/// `ValidateLocalNonReservedPath`: also rejects a leading `..` (e.g. `..data`).
pub fn local_non_reserved_path(p: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = local_descending_path(p, path);
    if p.starts_with("..") && !p.starts_with("../") {
        errs.push(invalid(path, p, "must not start with '..'"));
    }
    errs
}

fn validate_security_context(sc: &SecurityContext, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (name, id) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if let Some(id) = id {
            errs.extend(
                is_valid_id(id)
                    .iter()
                    .map(|m| invalid(&path.child(name), id, m)),
            );
        }
    }
    if sc.allow_privilege_escalation == Some(false) && sc.privileged == Some(true) {
        errs.push(invalid(
            path,
            bad_json(sc),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
    errs
}

/// A resource name that is native to Kubernetes (no prefix, or `kubernetes.io/`).
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Whether requests may be lower than limits for the resource.
fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !name.starts_with("hugepages-")
}

fn integer_resource(name: &str) -> bool {
    !is_native(name) && !name.starts_with("requests.")
}

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// `validateContainerResourceName`.
fn validate_container_resource_name(name: &str, path: &Path) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = qualified_name(name, path);
    if !errs.is_empty() {
        return errs;
    }
    if !name.contains('/') {
        let standard =
            STANDARD_CONTAINER_RESOURCES.contains(&name) || name.starts_with("hugepages-");
        if !standard {
            if !super::quota::is_standard_resource_name(name) {
                errs.push(invalid(
                    path,
                    name,
                    "must be a standard resource type or fully qualified",
                ));
            }
            errs.push(invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native(name) && !qualified_name(&format!("requests.{name}"), path).is_empty() {
        errs.push(invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
    errs
}

/// `ValidateResourceQuantityValue`: non-negative, integral for integer resources.
pub fn validate_quantity(name: &str, q: &Quantity, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match quantity::value(q) {
        None => errs.push(invalid(path, &q.0, "must be a valid quantity")),
        Some(v) if v < 0 => errs.push(invalid(path, &q.0, IS_NEGATIVE)),
        Some(v) if integer_resource(name) && v % 1_000_000_000 != 0 => {
            errs.push(invalid(path, Bad::Go(q.0.clone()), "must be an integer"))
        }
        Some(_) => {}
    }
    errs
}

/// `ValidateContainerResourceRequirements`.
pub fn validate_resource_requirements(r: &ResourceRequirements, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = BTreeMap::new();
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let (lim_path, req_path) = (path.child("limits"), path.child("requests"));
    for (name, q) in limits {
        let p = lim_path.key(name);
        errs.extend(validate_container_resource_name(name, &p));
        errs.extend(validate_quantity(name, q, &p));
    }
    for (name, q) in r.requests.iter().flatten() {
        let p = req_path.key(name);
        errs.extend(validate_container_resource_name(name, &p));
        errs.extend(validate_quantity(name, q, &p));
        match limits.get(name) {
            Some(lim) => {
                let (rv, lv) = (quantity::value(q), quantity::value(lim));
                if rv != lv && !overcommit_allowed(name) {
                    errs.push(invalid(
                        &req_path,
                        &q.0,
                        &format!("must be equal to {name} limit of {}", lim.0),
                    ));
                } else if rv > lv {
                    errs.push(invalid(
                        &req_path,
                        &q.0,
                        &format!("must be less than or equal to {name} limit of {}", lim.0),
                    ));
                }
            }
            None if !overcommit_allowed(name) => errs.push(required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn errs_of(c: &Container) -> Vec<String> {
        let vols: BTreeSet<String> = ["data".to_string()].into();
        let p = Path::new("spec").child("containers").index(0);
        validate_container_common(c, &vols, &p)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn ok() -> serde_json::Value {
        json!({"name": "c", "image": "nginx", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"})
    }

    #[test]
    fn container_table() {
        let with = |patch: serde_json::Value| {
            let mut v = ok();
            json_patch::merge(&mut v, &patch);
            container(v)
        };
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (json!({}), vec![]),
            (
                json!({"name": "Bad_Name"}),
                vec![
                    "spec.containers[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                ],
            ),
            (
                json!({"image": null}),
                vec!["spec.containers[0].image: Required value"],
            ),
            (
                json!({"imagePullPolicy": "Sometimes"}),
                vec![
                    "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                ],
            ),
            (
                json!({"ports": [{"containerPort": 70000, "protocol": "TCP"}]}),
                vec![
                    "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"ports": [{"containerPort": 80, "protocol": "HTTP"}]}),
                vec![
                    "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ],
            ),
            (
                json!({"ports": [{"name": "web", "containerPort": 80, "protocol": "TCP"}, {"name": "web", "containerPort": 81, "protocol": "TCP"}]}),
                vec!["spec.containers[0].ports[1].name: Duplicate value: \"web\""],
            ),
            (
                json!({"env": [{"name": ""}]}),
                vec!["spec.containers[0].env[0].name: Required value"],
            ),
            (
                json!({"env": [{"name": "A=B"}]}),
                vec![
                    "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                ],
            ),
            (
                json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
                vec!["spec.containers[0].volumeMounts[0].name: Not found: \"nope\""],
            ),
            (
                json!({"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}),
                vec![
                    "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                ],
            ),
            (
                json!({"resources": {"requests": {"memory": "-1"}}}),
                vec![
                    "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
                ],
            ),
        ];
        for (patch, want) in cases {
            assert_eq!(errs_of(&with(patch.clone())), want, "{patch}");
        }
    }
}
