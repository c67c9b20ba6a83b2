//! PersistentVolumes and PersistentVolumeClaims.

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec,
};
use serde_json::Value;

use super::container::{dns_label, dns_subdomain, validate_quantity};
use super::pod::validate_node_selector;
use crate::field::{FieldError, Path, bad_json, forbidden, invalid, not_supported, required};
use crate::meta::{FIELD_IMMUTABLE, diff, immutable, semantic_eq, validate_label_selector};
use crate::names::is_dns1123_subdomain;
use crate::quantity;
use crate::{ApiType, check_meta, check_meta_update};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
/// PV spec fields that are not part of the volume source.
const PV_NON_SOURCE: &[&str] = &[
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeAttributesClassName",
    "volumeMode",
];

/// PVC spec defaults (also used for claim templates).
pub fn default_pvc_spec(spec: &mut PersistentVolumeClaimSpec) {
    if spec.volume_mode.as_deref().unwrap_or("").is_empty() {
        spec.volume_mode = Some("Filesystem".into());
    }
}

/// PVC defaults: spec plus `status.phase: Pending`.
pub fn default_pvc(pvc: &mut PersistentVolumeClaim) {
    default_pvc_spec(pvc.spec.get_or_insert_with(Default::default));
    let status = pvc.status.get_or_insert_with(Default::default);
    if status.phase.as_deref().unwrap_or("").is_empty() {
        status.phase = Some("Pending".into());
    }
}

fn access_modes(modes: &[String], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (mut once_pod, mut other) = (false, false);
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str()) {
            errs.push(not_supported(path, m, ACCESS_MODES));
        } else if m == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        errs.push(forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errs
}

fn positive_quantity(
    name: &str,
    q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    path: &Path,
) -> Vec<FieldError> {
    if quantity::value(q).is_some_and(|v| v <= 0) {
        return vec![invalid(path, &q.0, "must be greater than zero")];
    }
    validate_quantity(name, q, path)
}

/// Upstream's `ValidatePersistentVolumeClaimSpec`.
pub fn validate_pvc_spec(spec: &PersistentVolumeClaimSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(required(
            &path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    errs.extend(validate_label_selector(
        spec.selector.as_ref(),
        &path.child("selector"),
    ));
    errs.extend(access_modes(modes, &path.child("accessModes")));
    let sp = path.child("resources").key("storage");
    match spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
    {
        None => errs.push(required(&sp, "")),
        Some(q) => errs.extend(positive_quantity("storage", q, &sp)),
    }
    if let Some(sc) = spec.storage_class_name.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(dns_subdomain(sc, &path.child("storageClassName")));
    }
    if let Some(m) = spec
        .volume_mode
        .as_deref()
        .filter(|m| !VOLUME_MODES.contains(m))
    {
        errs.push(not_supported(&path.child("volumeMode"), m, VOLUME_MODES));
    }
    if let Some(ds) = &spec.data_source {
        errs.extend(data_source(
            &ds.name,
            &ds.kind,
            ds.api_group.as_deref(),
            &path.child("dataSource"),
        ));
    }
    if let Some(r) = &spec.data_source_ref {
        let rp = path.child("dataSourceRef");
        errs.extend(data_source(&r.name, &r.kind, r.api_group.as_deref(), &rp));
        if let Some(ns) = r.namespace.as_deref().filter(|n| !n.is_empty()) {
            errs.extend(dns_label(ns, &rp.child("namespace")));
        }
    }
    errs
}

fn data_source(name: &str, kind: &str, group: Option<&str>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    }
    if kind.is_empty() {
        errs.push(required(&path.child("kind"), ""));
    }
    let group = group.unwrap_or("");
    if group.is_empty() && kind != "PersistentVolumeClaim" {
        errs.push(invalid(
            path,
            kind,
            "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
        ));
    }
    if !group.is_empty() {
        errs.extend(
            is_dns1123_subdomain(group)
                .iter()
                .map(|m| invalid(&path.child("apiGroup"), group, m)),
        );
    }
    errs
}

impl ApiType for PersistentVolumeClaim {
    fn set_defaults(&mut self) {
        default_pvc(self);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_pvc_spec(
            self.spec.as_ref().unwrap_or(&Default::default()),
            &Path::new("spec"),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_pvc_spec(
            self.spec.as_ref().unwrap_or(&Default::default()),
            &Path::new("spec"),
        ));
        let default = PersistentVolumeClaimSpec::default();
        let (n, o) = (
            self.spec.as_ref().unwrap_or(&default),
            old.spec.as_ref().unwrap_or(&default),
        );
        let (mut n_clone, mut o_clone) = (n.clone(), o.clone());
        if o.volume_name.as_deref().unwrap_or("").is_empty() {
            o_clone.volume_name.clone_from(&n.volume_name);
        }
        if o.storage_class_name.is_none() && n.storage_class_name.is_some() {
            n_clone.storage_class_name = None;
        }
        let bound = self.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            let old_storage = storage_request(o).cloned();
            if let Some(reqs) = n_clone.resources.as_mut().and_then(|r| r.requests.as_mut()) {
                match old_storage {
                    Some(q) => reqs.insert("storage".into(), q),
                    None => reqs.remove("storage"),
                };
            }
            n_clone
                .volume_attributes_class_name
                .clone_from(&o_clone.volume_attributes_class_name);
        }
        if !semantic_eq(&n_clone, &o_clone) {
            errs.push(forbidden(
                &Path::new("spec"),
                &format!("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}", diff(&o_clone, &n_clone)),
            ));
        }
        let (new_size, old_size) = (
            storage_request(n).and_then(quantity::value),
            storage_request(o).and_then(quantity::value),
        );
        if new_size < old_size {
            let capacity = old
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .and_then(quantity::value);
            if new_size <= capacity {
                errs.push(forbidden(
                    &Path::new("spec")
                        .child("resources")
                        .child("requests")
                        .child("storage"),
                    "field can not be less than status.capacity",
                ));
            }
        }
        if n.volume_mode != o.volume_mode {
            errs.push(immutable(
                &Path::new("volumeMode"),
                n.volume_mode.as_deref(),
            ));
        }
        errs
    }
}

fn storage_request(
    s: &PersistentVolumeClaimSpec,
) -> Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    s.resources.as_ref()?.requests.as_ref()?.get("storage")
}

/// The volume-source part of a PV spec, as JSON.
fn pv_source(spec: &PersistentVolumeSpec) -> serde_json::Map<String, Value> {
    let mut v = match serde_json::to_value(spec) {
        Ok(Value::Object(m)) => m,
        _ => Default::default(),
    };
    v.retain(|k, val| !PV_NON_SOURCE.contains(&k.as_str()) && !val.is_null());
    v
}

impl ApiType for PersistentVolume {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if spec
            .persistent_volume_reclaim_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            spec.persistent_volume_reclaim_policy = Some("Retain".into());
        }
        if spec.volume_mode.as_deref().unwrap_or("").is_empty() {
            spec.volume_mode = Some("Filesystem".into());
        }
        let status = self.status.get_or_insert_with(Default::default);
        if status.phase.as_deref().unwrap_or("").is_empty() {
            status.phase = Some("Pending".into());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_pv_spec(
            self.spec.as_ref().unwrap_or(&Default::default()),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let default = PersistentVolumeSpec::default();
        let (n, o) = (
            self.spec.as_ref().unwrap_or(&default),
            old.spec.as_ref().unwrap_or(&default),
        );
        errs.extend(validate_pv_spec(n));
        let (mut ns, os) = (pv_source(n), pv_source(o));
        let expand_ref_added = os
            .get("csi")
            .is_some_and(|c| c.get("controllerExpandSecretRef").is_none());
        if expand_ref_added && let Some(Value::Object(csi)) = ns.get_mut("csi") {
            csi.remove("controllerExpandSecretRef");
        }
        if ns != os {
            errs.push(forbidden(
                &Path::new("spec").child("persistentvolumesource"),
                &format!(
                    "spec.persistentvolumesource is immutable after creation\n{}",
                    diff(&Value::Object(os), &Value::Object(ns))
                ),
            ));
        }
        if n.volume_mode != o.volume_mode {
            errs.push(immutable(
                &Path::new("volumeMode"),
                n.volume_mode.as_deref(),
            ));
        }
        if o.node_affinity.is_some() && !semantic_eq(&n.node_affinity, &o.node_affinity) {
            errs.push(invalid(
                &Path::new("nodeAffinity"),
                bad_json(&n.node_affinity),
                &format!("{FIELD_IMMUTABLE}, except for updating from beta label to GA"),
            ));
        }
        errs
    }
}

fn validate_pv_spec(spec: &PersistentVolumeSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(required(&sp.child("accessModes"), ""));
    }
    errs.extend(access_modes(modes, &sp.child("accessModes")));
    let capacity = spec.capacity.clone().unwrap_or_default();
    if capacity.is_empty() {
        errs.push(required(&sp.child("capacity"), ""));
    }
    if !capacity.contains_key("storage") || capacity.len() > 1 {
        errs.push(not_supported(
            &sp.child("capacity"),
            bad_json(&capacity),
            &["storage"],
        ));
    }
    for (k, q) in &capacity {
        errs.extend(positive_quantity(k, q, &sp.child("capacity").key(k)));
    }
    if let Some(p) = spec
        .persistent_volume_reclaim_policy
        .as_deref()
        .filter(|p| !p.is_empty() && !RECLAIM_POLICIES.contains(p))
    {
        errs.push(not_supported(
            &sp.child("persistentVolumeReclaimPolicy"),
            p,
            RECLAIM_POLICIES,
        ));
    }
    if let Some(sel) = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
    {
        errs.extend(validate_node_selector(
            sel,
            &sp.child("nodeAffinity").child("required"),
        ));
    }
    errs.extend(validate_pv_source(spec, &sp));
    if let Some(sc) = spec.storage_class_name.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(dns_subdomain(sc, &sp.child("storageClassName")));
    }
    if let Some(m) = spec
        .volume_mode
        .as_deref()
        .filter(|m| !VOLUME_MODES.contains(m))
    {
        errs.push(not_supported(&sp.child("volumeMode"), m, VOLUME_MODES));
    }
    errs
}

fn validate_pv_source(spec: &PersistentVolumeSpec, sp: &Path) -> Vec<FieldError> {
    let source = pv_source(spec);
    let mut errs: Vec<FieldError> = source
        .keys()
        .skip(1)
        .map(|k| forbidden(&sp.child(k), "may not specify more than 1 volume type"))
        .collect();
    if source.is_empty() {
        errs.push(required(sp, "must specify a volume type"));
    }
    let req = |s: &str, p: Path, errs: &mut Vec<FieldError>| {
        if s.is_empty() {
            errs.push(required(&p, ""));
        }
    };
    if let Some(h) = &spec.host_path {
        req(&h.path, sp.child("hostPath").child("path"), &mut errs);
        if h.path.trim_end_matches('/').is_empty()
            && !h.path.is_empty()
            && spec.persistent_volume_reclaim_policy.as_deref() == Some("Recycle")
        {
            errs.push(forbidden(
                &sp.child("persistentVolumeReclaimPolicy"),
                "may not be 'recycle' for a hostPath mount of '/'",
            ));
        }
    }
    if let Some(n) = &spec.nfs {
        req(&n.server, sp.child("nfs").child("server"), &mut errs);
        req(&n.path, sp.child("nfs").child("path"), &mut errs);
    }
    if let Some(l) = &spec.local {
        req(&l.path, sp.child("local").child("path"), &mut errs);
        if spec
            .node_affinity
            .as_ref()
            .and_then(|a| a.required.as_ref())
            .is_none()
        {
            errs.push(required(
                &sp.child("nodeAffinity"),
                "Local volume requires node affinity",
            ));
        }
    }
    if let Some(c) = &spec.csi {
        req(&c.driver, sp.child("csi").child("driver"), &mut errs);
        req(
            &c.volume_handle,
            sp.child("csi").child("volumeHandle"),
            &mut errs,
        );
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(e: Vec<FieldError>) -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    }

    fn pvc(spec: Value) -> PersistentVolumeClaim {
        let mut p: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "resourceVersion": "1"}, "spec": spec
        }))
        .unwrap_or_default();
        p.set_defaults();
        p
    }

    #[test]
    fn pvc_create_and_update() {
        let good = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
        let p = pvc(good.clone());
        assert!(p.validate().is_empty());
        assert_eq!(
            p.spec.as_ref().and_then(|s| s.volume_mode.as_deref()),
            Some("Filesystem")
        );
        assert_eq!(
            errs(pvc(json!({})).validate()),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value"
            ]
        );
        let changed = pvc(
            json!({"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}),
        );
        let e = errs(changed.validate_update(&p));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"));
    }

    #[test]
    fn pv_needs_a_source_and_keeps_it() {
        let mut pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv1", "resourceVersion": "1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}
        }))
        .unwrap_or_default();
        pv.set_defaults();
        assert!(pv.validate().is_empty());
        let mut changed = pv.clone();
        if let Some(h) = changed.spec.as_mut().and_then(|s| s.host_path.as_mut()) {
            h.path = "/other".into();
        }
        let e = errs(changed.validate_update(&pv));
        assert!(e[0].starts_with("spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation\n"), "{e:?}");
        let mut none = pv.clone();
        if let Some(s) = none.spec.as_mut() {
            s.host_path = None;
        }
        assert_eq!(
            errs(none.validate()),
            vec!["spec: Required value: must specify a volume type"]
        );
    }
}
