//! Per-type write strategies, as upstream's registry strategies: what create resets, what an
//! update of the main resource or of `status` may change, when `generation` moves, how
//! deletion starts, and the Service address and port allocation.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::ApiServer;
use crate::error::{ApiError, ApiResult};
use crate::objects::{DeleteOptions, finalizers, meta, meta_mut, now_rfc3339};
use crate::registry::{Generation, ResourceDef};

const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub fn is_protected_namespace(name: &str) -> bool {
    PROTECTED_NAMESPACES.contains(&name)
}

/// Runs a typed helper of the api crate on a JSON object.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    obj: &mut Value,
    f: impl FnOnce(&mut T),
) {
    if let Ok(mut t) = serde_json::from_value::<T>(obj.clone()) {
        f(&mut t);
        if let Ok(v) = serde_json::to_value(&t) {
            *obj = v;
        }
    }
}

/// Resets what a client may not set on create.
pub fn prepare_for_create(def: &ResourceDef, obj: &mut Value) {
    match (def.group, def.plural) {
        ("batch", "jobs") => {
            typed(obj, k8rs_api::job_generate_selector);
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        ("", "pods") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(&obj["spec"])});
        }
        ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
        (crate::crd::GROUP, crate::crd::PLURAL) => {
            add_finalizer(obj, crate::crd::CLEANUP_FINALIZER);
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        ("", "nodes") => {}
        ("", "persistentvolumes") | ("", "persistentvolumeclaims") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        _ if def.has_status() => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let finalizers = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(vec![]));
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(finalizer.into());
    }
}

/// Keeps what the endpoint written to may not change: the main resource keeps the old status,
/// `status` keeps everything but the status. Moves `generation`.
pub fn prepare_for_update(def: &ResourceDef, sub: Option<&str>, new: &mut Value, old: &Value) {
    let old_meta = meta(old).clone();
    match sub {
        Some("status") => {
            let status = new["status"].take();
            let annotations = new["metadata"]["annotations"].take();
            *new = old.clone();
            new["status"] = status;
            // As upstream, the deployment controller records revisions through the status
            // endpoint so that they do not move the generation.
            if (def.group, def.plural) == ("apps", "deployments") {
                match annotations {
                    Value::Null => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove("annotations");
                        }
                    }
                    a => new["metadata"]["annotations"] = a,
                }
            }
        }
        Some(_) => {}
        None if def.has_status() => new["status"] = old["status"].clone(),
        None => {}
    }
    if def.plural == "services"
        && def.group.is_empty()
        && sub.is_none()
        && let Ok(old) = serde_json::from_value::<k8s_openapi::api::core::v1::Service>(old.clone())
    {
        typed(new, |svc| k8rs_api::service_carry_allocated(svc, &old));
    }
    if def.plural == "namespaces" && sub != Some("finalize") {
        new["spec"]["finalizers"] = old["spec"]["finalizers"].clone();
    }
    strip_nulls(new);
    let m = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
    if let Some(ns) = old_meta.get("namespace") {
        m.insert("namespace".into(), ns.clone());
    }
    let generation = old_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let changed = match def.generation {
        Generation::None => {
            m.remove("generation");
            return;
        }
        Generation::Spec => spec_changed(new, old),
        Generation::SpecAndAnnotations => {
            spec_changed(new, old)
                || new["metadata"]["annotations"] != old["metadata"]["annotations"]
        }
    };
    let generation = if changed && sub.is_none() {
        generation + 1
    } else {
        generation
    };
    meta_mut(new).insert("generation".into(), generation.into());
}

/// Whether anything outside metadata and status differs.
fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for f in ["metadata", "status", "apiVersion", "kind"] {
                m.remove(f);
            }
        }
        v
    };
    strip(new) != strip(old)
}

fn strip_nulls(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
}

/// Starts a deletion: records deletionTimestamp and the finalizers asked for. Returns `true`
/// when the object must stay (finalizers or a grace period), `false` when it can go now.
pub fn prepare_for_delete(def: &ResourceDef, obj: &mut Value, opts: &DeleteOptions) -> bool {
    let mut fins: Vec<String> = finalizers(obj);
    let policy = match (opts.propagation_policy.as_deref(), opts.orphan_dependents) {
        (Some(p), _) => Some(p),
        (None, Some(true)) => Some("Orphan"),
        _ => None,
    };
    let mut add = |f: &str| {
        if !fins.iter().any(|x| x == f) {
            fins.push(f.to_string());
        }
    };
    match policy {
        Some("Foreground") => add("foregroundDeletion"),
        Some("Orphan") => add("orphan"),
        _ => {}
    }
    if def.plural == "namespaces" {
        obj["status"]["phase"] = "Terminating".into();
        let spec_fins = obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if spec_fins {
            mark_deleting(def, obj, 0, fins);
            return true;
        }
    }
    let grace = pod_grace_period(def, obj, opts);
    if grace > 0 {
        if meta(obj)["deletionTimestamp"].is_string() {
            let current = meta(obj)["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0);
            if grace >= current {
                return true;
            }
        }
        mark_deleting(def, obj, grace, fins);
        return true;
    }
    if !fins.is_empty() {
        if meta(obj)["deletionTimestamp"].is_null() || finalizers(obj) != fins {
            mark_deleting(def, obj, 0, fins);
        }
        return true;
    }
    false
}

fn mark_deleting(def: &ResourceDef, obj: &mut Value, grace: i64, fins: Vec<String>) {
    let already = meta(obj)["deletionTimestamp"].is_string();
    let m = meta_mut(obj);
    if !already || grace > 0 {
        let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
        m.insert(
            "deletionTimestamp".into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into(),
        );
        m.insert("deletionGracePeriodSeconds".into(), grace.into());
        if def.generation != Generation::None || def.plural == "pods" {
            let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
            if def.generation != Generation::None {
                m.insert("generation".into(), (g + 1).into());
            }
        }
    }
    if !fins.is_empty() {
        m.insert("finalizers".into(), fins.into());
    }
}

/// A pod bound to a node and not finished ends gracefully; others go at once.
fn pod_grace_period(def: &ResourceDef, pod: &Value, opts: &DeleteOptions) -> i64 {
    if def.plural != "pods" || !def.group.is_empty() {
        return 0;
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
        || matches!(phase, "Succeeded" | "Failed")
    {
        return 0;
    }
    opts.grace_period_seconds
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

/// Upstream's QoS class of a pod spec.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec["containers"].as_array().into_iter().flatten();
    let init = spec["initContainers"].as_array().into_iter().flatten();
    for c in containers.chain(init) {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (rq, lm) = (&req[r], &lim[r]);
            if !rq.is_null() || !lm.is_null() {
                any = true;
            }
            if lm.is_null() || (!rq.is_null() && rq != lm) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// ClusterIP and NodePort allocation, rebuilt from the stored Services at start.
#[derive(Debug)]
pub struct Allocators {
    pub service_net: Ipv4Addr,
    pub service_prefix: u8,
    ips: Mutex<BTreeSet<u32>>,
    ports: Mutex<BTreeSet<u16>>,
}

const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

impl Allocators {
    pub fn new(service_net: Ipv4Addr, service_prefix: u8) -> Self {
        Allocators {
            service_net,
            service_prefix,
            ips: Mutex::new(BTreeSet::new()),
            ports: Mutex::new(BTreeSet::new()),
        }
    }

    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.service_prefix))
    }

    /// The n-th address of the service range (1 = the `kubernetes` Service).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_net) + n)
    }

    fn offset(&self, ip: &str) -> Option<u32> {
        let ip: Ipv4Addr = ip.parse().ok()?;
        let off = u32::from(ip).checked_sub(u32::from(self.service_net))?;
        (off > 0 && off < self.size() - 1).then_some(off)
    }

    /// Records a Service's addresses and ports as taken.
    pub fn observe(&self, svc: &Value) {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(off) = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|ip| self.offset(ip))
        {
            ips.insert(off);
        }
        drop(ips);
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        ports.extend(node_ports(svc));
    }

    fn release(&self, svc: &Value) {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(off) = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|ip| self.offset(ip))
        {
            ips.remove(&off);
        }
        drop(ips);
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        for p in node_ports(svc) {
            ports.remove(&p);
        }
    }

    /// Upstream's static band: the lower addresses are kept for Services that ask for one.
    fn static_band(&self) -> u32 {
        (self.size() / 16).clamp(16, 256)
    }

    fn allocate_ip(&self, requested: Option<&str>) -> ApiResult<String> {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(req) = requested {
            let off = self.offset(req).ok_or_else(|| invalid_ip(req, self))?;
            if !ips.insert(off) {
                return Err(ApiError::UnprocessableEntity {
                    message: format!(
                        "Service \"\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{req}\"}}: failed to allocate IP {req}: provided IP is already allocated"
                    ),
                });
            }
            return Ok(req.to_string());
        }
        let band = self.static_band();
        let last = self.size() - 1;
        let start = band + rand::random_range(0..(last - band).max(1));
        let candidates = (start..last).chain(band..start).chain(1..band);
        for off in candidates {
            if ips.insert(off) {
                return Ok(self.nth(off).to_string());
            }
        }
        Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        ))
    }

    fn allocate_port(&self, requested: Option<u16>) -> ApiResult<u16> {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = requested {
            if !NODE_PORTS.contains(&p) {
                return Err(ApiError::UnprocessableEntity {
                    message: format!(
                        "spec.ports.nodePort: Invalid value: {p}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                    ),
                });
            }
            if !ports.insert(p) {
                return Err(ApiError::UnprocessableEntity {
                    message: format!(
                        "spec.ports.nodePort: Invalid value: {p}: provided port is already allocated"
                    ),
                });
            }
            return Ok(p);
        }
        let start = rand::random_range(*NODE_PORTS.start()..=*NODE_PORTS.end());
        for p in (start..=*NODE_PORTS.end()).chain(*NODE_PORTS.start()..start) {
            if ports.insert(p) {
                return Ok(p);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a nodePort: range is full",
        ))
    }
}

fn invalid_ip(req: &str, a: &Allocators) -> ApiError {
    ApiError::UnprocessableEntity {
        message: format!(
            "Service \"\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{req}\"}}: failed to allocate IP {req}: the provided IP ({req}) is not in the valid range. The range of valid IPs is {}/{}",
            a.service_net, a.service_prefix
        ),
    }
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Allocates the ClusterIP and NodePorts a Service needs (on create, and on update when its
/// type changes). Nothing is allocated on a dry run.
pub fn allocate(
    api: &ApiServer,
    def: &ResourceDef,
    obj: &mut Value,
    old: Option<&Value>,
    dry_run: bool,
) -> ApiResult<()> {
    if def.plural != "services" || !def.group.is_empty() || dry_run {
        return Ok(());
    }
    let a = &api.allocators;
    let kind = obj["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .unwrap_or_default();
    if kind == "ExternalName" {
        if let Some(spec) = obj["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    } else if old_ip.is_empty() {
        let requested = obj["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty());
        let ip = match requested {
            Some("None") => "None".to_string(),
            req => a.allocate_ip(req)?,
        };
        obj["spec"]["clusterIP"] = ip.clone().into();
        obj["spec"]["clusterIPs"] = json!([ip]);
    } else {
        obj["spec"]["clusterIP"] = old_ip.into();
        obj["spec"]["clusterIPs"] = json!([old_ip]);
    }
    if wants_node_ports(obj) {
        let old_ports = old.map(node_ports).unwrap_or_default();
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                let requested = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok());
                let keep = requested.filter(|r| old_ports.contains(r));
                let port = match (keep, requested) {
                    (Some(k), _) => k,
                    (None, Some(r)) => a.allocate_port(Some(r))?,
                    (None, None) => match old_ports.get(i) {
                        Some(&o) => o,
                        None => a.allocate_port(None)?,
                    },
                };
                p["nodePort"] = port.into();
            }
        }
    } else if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
        for p in ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    Ok(())
}

/// Releases what a deleted (or never stored) Service held.
pub fn release(api: &ApiServer, def: &ResourceDef, obj: &Value) {
    if def.plural == "services" && def.group.is_empty() {
        api.allocators.release(obj);
    }
}

/// Releases the NodePorts an updated Service no longer uses.
pub fn release_replaced(api: &ApiServer, def: &ResourceDef, new: &Value, old: &Value) {
    if def.plural != "services" || !def.group.is_empty() {
        return;
    }
    let keep = node_ports(new);
    let mut ports = api
        .allocators
        .ports
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for p in node_ports(old) {
        if !keep.contains(&p) {
            ports.remove(&p);
        }
    }
}

pub fn creation_now() -> String {
    now_rfc3339()
}
