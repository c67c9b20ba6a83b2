//! A container's environment, as upstream's `makeEnvironmentVariables`: Service variables,
//! `envFrom`, then `env` (values with `$(VAR)` expansion, configMap/secret keys, field and
//! resource references). The lookups are fetched first ([`Refs`]); the rest is pure.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret, Service};

use super::qos::{milli, whole};

/// The ConfigMaps and Secrets a container refers to (`None`: not found), and the Services
/// visible to it.
#[derive(Clone, Debug, Default)]
pub struct Refs {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    pub services: Vec<Service>,
}

/// What the field references need besides the pod.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub pod_ip: String,
    pub pod_ips: Vec<String>,
    pub node_ip: String,
    pub node_name: String,
    /// Node allocatable cpu (milli) and memory (bytes), for limits left unset.
    pub node_milli_cpu: i64,
    pub node_memory: i64,
}

/// Expands `$(VAR)` references in `input` (upstream's `expansion.Expand`): `$$` escapes, unknown
/// names are left as they are.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(end) => {
                    let name = &tail[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Service variables (`FOO_SERVICE_HOST`, `FOO_PORT_80_TCP`, ...) of `services` for `pod`:
/// those of its namespace when `enableServiceLinks`, and always the `kubernetes` Service.
pub fn service_env(pod: &Pod, services: &[Service]) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let sns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let master = sns == "default" && name == "kubernetes";
        if master || (links && sns == ns) {
            // The pod's own namespace wins over the master service of the same name.
            if !(master && chosen.contains_key(&name) && ns != "default") {
                chosen.insert(name, svc);
            }
        }
    }
    let mut out = Vec::new();
    for (name, svc) in chosen {
        out.extend(one_service_env(&name, svc));
    }
    out
}

fn one_service_env(name: &str, svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    if ip.is_empty() || ip == "None" {
        return Vec::new();
    }
    let prefix = name.to_uppercase().replace('-', "_");
    let ports = spec.ports.clone().unwrap_or_default();
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.clone())];
    let Some(first) = ports.first() else {
        return out;
    };
    out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for p in &ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let pn = pn.to_uppercase().replace('-', "_");
            out.push((format!("{prefix}_SERVICE_PORT_{pn}"), p.port.to_string()));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.clone().unwrap_or_else(|| "TCP".into())
    };
    let fp = proto(first);
    out.push((
        format!("{prefix}_PORT"),
        format!("{}://{ip}:{}", fp.to_lowercase(), first.port),
    ));
    for p in &ports {
        let pr = proto(p);
        let base = format!("{prefix}_PORT_{}_{}", p.port, pr.to_uppercase());
        out.push((
            base.clone(),
            format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
        ));
        out.push((format!("{base}_PROTO"), pr.to_lowercase()));
        out.push((format!("{base}_PORT"), p.port.to_string()));
        out.push((format!("{base}_ADDR"), ip.clone()));
    }
    out
}

/// Why a container's environment could not be made: `CreateContainerConfigError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn data_of_cm(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn data_of_secret(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

fn cm<'a>(refs: &'a Refs, name: &str) -> Result<&'a ConfigMap, ConfigError> {
    match refs.config_maps.get(name) {
        Some(Some(c)) => Ok(c),
        _ => Err(ConfigError(format!("configmap \"{name}\" not found"))),
    }
}

fn secret<'a>(refs: &'a Refs, name: &str) -> Result<&'a Secret, ConfigError> {
    match refs.secrets.get(name) {
        Some(Some(s)) => Ok(s),
        _ => Err(ConfigError(format!("secret \"{name}\" not found"))),
    }
}

fn env_from(
    c: &Container,
    refs: &Refs,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    for src in c.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &src.config_map_ref {
            match cm(refs, &r.name) {
                Ok(m) => data_of_cm(m),
                Err(_) if r.optional == Some(true) => continue,
                Err(e) => return Err(e),
            }
        } else if let Some(r) = &src.secret_ref {
            match secret(refs, &r.name) {
                Ok(s) => data_of_secret(s),
                Err(_) if r.optional == Some(true) => continue,
                Err(e) => return Err(e),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            out.push((format!("{prefix}{k}"), v));
        }
    }
    Ok(())
}

pub(crate) fn field_ref(path: &str, pod: &Pod, facts: &Facts) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let annotation_or_label = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    if let Some(v) = annotation_or_label("metadata.annotations['", &meta.annotations) {
        return Ok(v);
    }
    if let Some(v) = annotation_or_label("metadata.labels['", &meta.labels) {
        return Ok(v);
    }
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => facts.node_ip.clone(),
        "status.hostIPs" => facts.node_ip.clone(),
        "status.podIP" => facts.pod_ip.clone(),
        "status.podIPs" => facts.pod_ips.join(","),
        other => return Err(ConfigError(format!("unsupported fieldPath: {other}"))),
    })
}

pub(crate) fn resource_ref(
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    c: &Container,
    facts: &Facts,
) -> Result<String, ConfigError> {
    let res = c.resources.clone().unwrap_or_default();
    let get = |list: &Option<BTreeMap<String, _>>, k: &str| list.as_ref()?.get(k).cloned();
    let divisor_milli = r.divisor.as_ref().map(milli).filter(|d| *d > 0);
    let (milli_value, is_cpu) = match r.resource.as_str() {
        "limits.cpu" => (
            get(&res.limits, "cpu").map_or(facts.node_milli_cpu, |q| milli(&q)),
            true,
        ),
        "requests.cpu" => (get(&res.requests, "cpu").map_or(0, |q| milli(&q)), true),
        "limits.memory" => (
            get(&res.limits, "memory").map_or(facts.node_memory, |q| whole(&q)) * 1000,
            false,
        ),
        "requests.memory" => (
            get(&res.requests, "memory").map_or(0, |q| whole(&q)) * 1000,
            false,
        ),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => {
            let list = if r.resource.starts_with("limits") {
                &res.limits
            } else {
                &res.requests
            };
            (
                get(list, "ephemeral-storage").map_or(0, |q| whole(&q)) * 1000,
                false,
            )
        }
        other => {
            return Err(ConfigError(format!(
                "unsupported container resource: {other}"
            )));
        }
    };
    let divisor = divisor_milli.unwrap_or(1000);
    let v = (milli_value + divisor - 1) / divisor;
    // cpu rounds up to at least 1 (upstream's ExtractContainerResourceValue).
    Ok(if is_cpu { v.max(1) } else { v }.to_string())
}

fn one_env(
    e: &EnvVar,
    pod: &Pod,
    c: &Container,
    refs: &Refs,
    facts: &Facts,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let Some(from) = &e.value_from else {
        return Ok(Some(expand(e.value.as_deref().unwrap_or_default(), lookup)));
    };
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match cm(refs, &r.name) {
            Ok(m) => match data_of_cm(m).get(&r.key) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(ConfigError(format!(
                    "couldn't find key {} in ConfigMap {ns}/{}",
                    r.key, r.name
                ))),
            },
            Err(_) if optional => Ok(None),
            Err(e) => Err(e),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        return match secret(refs, &r.name) {
            Ok(s) => match data_of_secret(s).get(&r.key) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(ConfigError(format!(
                    "couldn't find key {} in Secret {ns}/{}",
                    r.key, r.name
                ))),
            },
            Err(_) if optional => Ok(None),
            Err(e) => Err(e),
        };
    }
    if let Some(f) = &from.field_ref {
        return field_ref(&f.field_path, pod, facts).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return resource_ref(r, c, facts).map(Some);
    }
    Ok(None)
}

/// The container's environment, in order.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    refs: &Refs,
    facts: &Facts,
) -> Result<Vec<(String, String)>, ConfigError> {
    let services = service_env(pod, &refs.services);
    let mut out: Vec<(String, String)> = Vec::new();
    env_from(c, refs, &mut out)?;
    for e in c.env.iter().flatten() {
        let known: HashMap<String, String> = services
            .iter()
            .chain(out.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let lookup = |name: &str| known.get(name).cloned();
        if let Some(v) = one_env(e, pod, c, refs, facts, &lookup)? {
            out.push((e.name.clone(), v));
        }
    }
    // Later definitions win; keep the first position of each name.
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in out {
        match index.get(&k) {
            Some(&i) => merged[i].1 = v,
            None => {
                index.insert(k.clone(), merged.len());
                merged.push((k, v));
            }
        }
    }
    for (k, v) in services {
        if !index.contains_key(&k) {
            index.insert(k.clone(), merged.len());
            merged.push((k, v));
        }
    }
    Ok(merged)
}

/// `command` and `args` with `$(VAR)` expanded from `env`.
pub fn expand_command(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |n: &str| map.get(n).map(|v| v.to_string());
    let ex = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, &lookup)).collect()
    };
    (ex(&c.command), ex(&c.args))
}

/// The ConfigMap and Secret names a container's environment refers to.
pub fn referenced(c: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for src in c.env_from.iter().flatten() {
        if let Some(r) = &src.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &src.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.push(r.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}
