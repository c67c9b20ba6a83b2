//! Pod volume validation (upstream `ValidateVolumes` and the common volume sources).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{KeyToPath, Volume, VolumeProjection};

use super::container::{dns_label, local_non_reserved_path, no_backsteps, validate_field_ref};
use super::pod_defaults::source_names;
use super::storage::validate_pvc_spec;
use crate::field::{FieldError, Path, duplicate, forbidden, invalid, required};
use crate::quantity;

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// Validates the volumes and returns the names of the valid ones.
pub fn validate_volumes(
    volumes: &[Volume],
    is_pod: bool,
    path: &Path,
) -> (BTreeSet<String>, Vec<FieldError>) {
    let mut names = BTreeSet::new();
    let mut errs = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let ip = path.index(i);
        let np = ip.child("name");
        let mut el = validate_source(v, is_pod, &ip);
        if v.name.is_empty() {
            el.push(required(&np, ""));
        } else {
            el.extend(dns_label(&v.name, &np));
        }
        if names.contains(&v.name) {
            el.push(duplicate(&np, &v.name));
        }
        if el.is_empty() {
            names.insert(v.name.clone());
        } else {
            errs.extend(el);
        }
    }
    (names, errs)
}

fn validate_source(v: &Volume, is_pod: bool, path: &Path) -> Vec<FieldError> {
    let sources: Vec<&str> = source_names(v).collect();
    let mut errs: Vec<FieldError> = sources
        .iter()
        .skip(1)
        .map(|s| forbidden(&path.child(s), "may not specify more than 1 volume type"))
        .collect();
    match sources.first() {
        None => errs.push(required(path, "must specify a volume type")),
        Some(first) => errs.extend(validate_one_source(v, first, is_pod, &path.child(first))),
    }
    errs
}

fn file_mode(mode: Option<i32>, path: &Path) -> Vec<FieldError> {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => vec![invalid(path, m, FILE_MODE_MSG)],
        _ => vec![],
    }
}

fn validate_one_source(v: &Volume, which: &str, is_pod: bool, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let req = |s: &str, field: &str, errs: &mut Vec<FieldError>| {
        if s.is_empty() {
            errs.push(required(&path.child(field), ""));
        }
    };
    match which {
        "emptyDir" => {
            let limit = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref());
            if limit.and_then(quantity::value).is_some_and(|q| q < 0) {
                errs.push(forbidden(
                    &path.child("sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
        "hostPath" => {
            if let Some(h) = &v.host_path {
                if h.path.is_empty() {
                    errs.push(required(&path.child("path"), ""));
                    return errs;
                }
                errs.extend(no_backsteps(&h.path, &path.child("path")));
                let t = h.type_.as_deref().unwrap_or("");
                if !HOST_PATH_TYPES.contains(&t) {
                    errs.push(crate::field::not_supported(
                        &path.child("type"),
                        t,
                        HOST_PATH_TYPES,
                    ));
                }
            }
        }
        "secret" => {
            if let Some(s) = &v.secret {
                req(
                    s.secret_name.as_deref().unwrap_or(""),
                    "secretName",
                    &mut errs,
                );
                errs.extend(file_mode(s.default_mode, &path.child("defaultMode")));
                errs.extend(items(
                    s.items.as_deref().unwrap_or_default(),
                    &path.child("items"),
                ));
            }
        }
        "configMap" => {
            if let Some(c) = &v.config_map {
                req(&c.name, "name", &mut errs);
                errs.extend(file_mode(c.default_mode, &path.child("defaultMode")));
                errs.extend(items(
                    c.items.as_deref().unwrap_or_default(),
                    &path.child("items"),
                ));
            }
        }
        "persistentVolumeClaim" => {
            if let Some(c) = &v.persistent_volume_claim {
                req(&c.claim_name, "claimName", &mut errs);
            }
        }
        "nfs" => {
            if let Some(n) = &v.nfs {
                req(&n.server, "server", &mut errs);
                req(&n.path, "path", &mut errs);
                if !n.path.starts_with('/') {
                    errs.push(invalid(
                        &path.child("path"),
                        &n.path,
                        "must be an absolute path",
                    ));
                }
            }
        }
        "csi" => {
            if let Some(c) = &v.csi {
                req(&c.driver, "driver", &mut errs);
            }
        }
        "downwardAPI" => {
            if let Some(d) = &v.downward_api {
                errs.extend(file_mode(d.default_mode, &path.child("defaultMode")));
                for item in d.items.iter().flatten() {
                    errs.extend(downward_file(
                        item.path.as_str(),
                        item.field_ref
                            .as_ref()
                            .map(|f| (f.api_version.as_deref(), f.field_path.as_str())),
                        item.resource_field_ref.is_some(),
                        item.mode,
                        path,
                    ));
                }
            }
        }
        "projected" => {
            if let Some(p) = &v.projected {
                errs.extend(file_mode(p.default_mode, &path.child("defaultMode")));
                errs.extend(projections(p.sources.as_deref().unwrap_or_default(), path));
            }
        }
        "ephemeral" => {
            match v
                .ephemeral
                .as_ref()
                .and_then(|e| e.volume_claim_template.as_ref())
            {
                None => errs.push(required(&path.child("volumeClaimTemplate"), "")),
                Some(t) => errs.extend(validate_pvc_spec(
                    &t.spec,
                    &path.child("volumeClaimTemplate").child("spec"),
                )),
            }
        }
        "image" => {
            if let Some(i) = &v.image
                && is_pod
                && i.reference.as_deref().unwrap_or("").is_empty()
            {
                errs.push(required(&path.child("reference"), ""));
            }
        }
        _ => {}
    }
    errs
}

fn items(list: &[KeyToPath], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, kp) in list.iter().enumerate() {
        errs.extend(key_to_path(kp, &path.index(i)));
    }
    errs
}

fn key_to_path(kp: &KeyToPath, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if kp.key.is_empty() {
        errs.push(required(&path.child("key"), ""));
    }
    if kp.path.is_empty() {
        errs.push(required(&path.child("path"), ""));
    }
    errs.extend(local_non_reserved_path(&kp.path, &path.child("path")));
    errs.extend(file_mode(kp.mode, &path.child("mode")));
    errs
}

/// One downward-API volume file (path, exactly one reference, mode).
fn downward_file(
    file_path: &str,
    field_ref: Option<(Option<&str>, &str)>,
    has_resource_ref: bool,
    mode: Option<i32>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if file_path.is_empty() {
        errs.push(required(&path.child("path"), ""));
    }
    errs.extend(local_non_reserved_path(file_path, &path.child("path")));
    match field_ref {
        Some((api_version, fp)) => {
            let fp_errs = if matches!(fp, "metadata.labels" | "metadata.annotations") {
                vec![]
            } else {
                validate_field_ref(api_version, fp, &path.child("fieldRef"))
            };
            errs.extend(fp_errs);
            if has_resource_ref {
                errs.push(invalid(
                    path,
                    "resource",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        None if !has_resource_ref => errs.push(required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        )),
        None => {}
    }
    errs.extend(file_mode(mode, &path.child("mode")));
    errs
}

fn projections(sources: &[VolumeProjection], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen_paths = BTreeSet::new();
    for (i, s) in sources.iter().enumerate() {
        let sp = path.child("sources").index(i);
        let mut count = 0;
        let mut add_items =
            |name: &str, list: &[KeyToPath], pp: &Path, errs: &mut Vec<FieldError>| {
                for (j, kp) in list.iter().enumerate() {
                    errs.extend(key_to_path(kp, &pp.child("items").index(j)));
                    if !kp.path.is_empty() && !seen_paths.insert(kp.path.clone()) {
                        errs.push(invalid(path, name, "conflicting duplicate paths"));
                    }
                }
            };
        if let Some(sec) = &s.secret {
            count += 1;
            let pp = sp.child("secret");
            let name = sec.name.clone();
            if name.is_empty() {
                errs.push(required(&pp.child("name"), ""));
            }
            add_items(
                &name,
                sec.items.as_deref().unwrap_or_default(),
                &pp,
                &mut errs,
            );
        }
        if let Some(cm) = &s.config_map {
            count += 1;
            let pp = sp.child("configMap");
            let name = cm.name.clone();
            if name.is_empty() {
                errs.push(required(&pp.child("name"), ""));
            }
            add_items(
                &name,
                cm.items.as_deref().unwrap_or_default(),
                &pp,
                &mut errs,
            );
        }
        if let Some(t) = &s.service_account_token {
            count += 1;
            let pp = sp.child("serviceAccountToken");
            let exp = t.expiration_seconds.unwrap_or(0);
            if exp < 600 {
                errs.push(invalid(
                    &pp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration less than 10 minutes",
                ));
            } else if exp > 1 << 32 {
                errs.push(invalid(
                    &pp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            if t.path.is_empty() {
                errs.push(required(&pp.child("path"), ""));
            }
        }
        if s.downward_api.is_some() {
            count += 1;
        }
        if s.cluster_trust_bundle.is_some() {
            count += 1;
        }
        if count > 1 {
            errs.push(forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value) -> Vec<String> {
        let vols: Vec<Volume> = serde_json::from_value(v).unwrap_or_default();
        validate_volumes(&vols, true, &Path::new("spec").child("volumes"))
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn volume_table() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (json!([{"name": "a", "emptyDir": {}}]), vec![]),
            (
                json!([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]),
                vec!["spec.volumes[1].name: Duplicate value: \"a\""],
            ),
            (
                json!([{"name": "a"}]),
                vec!["spec.volumes[0]: Required value: must specify a volume type"],
            ),
            (
                json!([{"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
                vec![
                    "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                ],
            ),
            (
                json!([{"name": "a", "secret": {}}]),
                vec!["spec.volumes[0].secret.secretName: Required value"],
            ),
            (
                json!([{"name": "a", "configMap": {"name": "c", "defaultMode": 1000}}]),
                vec![
                    "spec.volumes[0].configMap.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
                ],
            ),
            (
                json!([{"name": "a", "persistentVolumeClaim": {"claimName": ""}}]),
                vec!["spec.volumes[0].persistentVolumeClaim.claimName: Required value"],
            ),
        ];
        for (vols, want) in cases {
            assert_eq!(check(vols.clone()), want, "{vols}");
        }
    }
}
