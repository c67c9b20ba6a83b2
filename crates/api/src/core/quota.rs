//! ResourceQuotas and LimitRanges.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::container::{qualified_name, validate_quantity};
use crate::field::{Bad, FieldError, Path, bad_strings, duplicate, forbidden, invalid, required};
use crate::meta::FIELD_IMMUTABLE;
use crate::quantity;
use crate::{ApiType, check_meta, check_meta_update};

const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];
const QUOTA_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// Upstream's `IsStandardResourceName`.
pub fn is_standard_resource_name(name: &str) -> bool {
    STANDARD_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

fn is_standard_quota_name(name: &str) -> bool {
    (STANDARD_RESOURCES.contains(&name) && name != "storage")
        || name.starts_with("requests.hugepages-")
}

/// `validateResourceName`: qualified, and standard when unprefixed.
fn validate_resource_name(name: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = qualified_name(name, path);
    if errs.is_empty() && !name.contains('/') && !is_standard_resource_name(name) {
        errs.push(invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
    errs
}

fn validate_quota_resources(
    list: Option<&BTreeMap<String, Quantity>>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in list.into_iter().flatten() {
        let p = path.key(k);
        errs.extend(validate_resource_name(k, &p));
        if !k.contains('/') && !is_standard_quota_name(k) {
            errs.push(invalid(&p, k, "must be a standard resource for quota"));
        }
        errs.extend(validate_quantity(k, v, &p));
    }
    errs
}

fn validate_quota_spec(spec: &ResourceQuotaSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_quota_resources(spec.hard.as_ref(), &path.child("hard"));
    let scopes = spec.scopes.as_deref().unwrap_or_default();
    let sp = path.child("scopes");
    for s in scopes {
        if !QUOTA_SCOPES.contains(&s.as_str()) {
            errs.push(invalid(&sp, scopes_bad(scopes), "unsupported scope"));
        }
    }
    let set: HashSet<&str> = scopes.iter().map(String::as_str).collect();
    for (a, b) in [
        ("BestEffort", "NotBestEffort"),
        ("Terminating", "NotTerminating"),
    ] {
        if set.contains(a) && set.contains(b) {
            errs.push(invalid(&sp, scopes_bad(scopes), "conflicting scopes"));
        }
    }
    for (i, req) in spec
        .scope_selector
        .iter()
        .flat_map(|s| s.match_expressions.iter().flatten())
        .enumerate()
    {
        let rp = path.child("scopeSelector").child("matchExpressions");
        let _ = i;
        if !QUOTA_SCOPES.contains(&req.scope_name.as_str()) {
            errs.push(invalid(
                &rp.child("scopeName"),
                &req.scope_name,
                "unsupported scope",
            ));
        }
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(required(
                &rp.child("values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(invalid(
                &rp.child("values"),
                bad_strings(Some(values)),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(invalid(
                &rp.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
    }
    errs
}

fn scopes_bad(scopes: &[String]) -> Bad {
    let items: Vec<String> = scopes.iter().map(|s| crate::field::go_quote(s)).collect();
    Bad::Go(format!("[]core.ResourceQuotaScope{{{}}}", items.join(", ")))
}

impl ApiType for ResourceQuota {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_quota_spec(
            self.spec.as_ref().unwrap_or(&Default::default()),
            &Path::new("spec"),
        ));
        if let Some(s) = &self.status {
            errs.extend(validate_quota_resources(
                s.hard.as_ref(),
                &Path::new("status").child("hard"),
            ));
            errs.extend(validate_quota_resources(
                s.used.as_ref(),
                &Path::new("status").child("used"),
            ));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let default = ResourceQuotaSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        errs.extend(validate_quota_spec(spec, &Path::new("spec")));
        let scopes = |s: Option<&ResourceQuotaSpec>| -> BTreeSet<String> {
            s.and_then(|s| s.scopes.clone())
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        if scopes(self.spec.as_ref()) != scopes(old.spec.as_ref()) {
            errs.push(invalid(
                &Path::new("spec").child("scopes"),
                scopes_bad(spec.scopes.as_deref().unwrap_or_default()),
                FIELD_IMMUTABLE,
            ));
        }
        errs
    }
}

fn default_limit_item(item: &mut LimitRangeItem) {
    if item.type_ != "Container" {
        return;
    }
    let default = item.default.get_or_insert_with(BTreeMap::new);
    for (k, v) in item.max.iter().flatten() {
        default.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let request = item.default_request.get_or_insert_with(BTreeMap::new);
    for (k, v) in default.iter().chain(item.min.iter().flatten()) {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

impl ApiType for LimitRange {
    fn set_defaults(&mut self) {
        for item in self.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
            default_limit_item(item);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let mut types = HashSet::new();
        for (i, item) in self.spec.iter().flat_map(|s| s.limits.iter()).enumerate() {
            let ip = Path::new("spec").child("limits").index(i);
            errs.extend(validate_limit_type(&item.type_, &ip.child("type")));
            if !types.insert(item.type_.as_str()) {
                errs.push(duplicate(&ip.child("type"), &item.type_));
            }
            errs.extend(validate_limit_item(item, &ip));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(self.validate());
        errs
    }
}

fn validate_limit_type(t: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = qualified_name(t, path);
    if errs.is_empty()
        && !t.contains('/')
        && !["Pod", "Container", "PersistentVolumeClaim"].contains(&t)
    {
        errs.push(invalid(
            path,
            t,
            "must be a standard limit type or fully qualified",
        ));
    }
    errs
}

fn validate_limit_item(item: &LimitRangeItem, ip: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = BTreeMap::new();
    let lists = [
        ("max", item.max.as_ref().unwrap_or(&empty)),
        ("min", item.min.as_ref().unwrap_or(&empty)),
        ("default", item.default.as_ref().unwrap_or(&empty)),
        (
            "defaultRequest",
            item.default_request.as_ref().unwrap_or(&empty),
        ),
        (
            "maxLimitRequestRatio",
            item.max_limit_request_ratio.as_ref().unwrap_or(&empty),
        ),
    ];
    if item.type_ == "Pod" {
        for field in ["default", "defaultRequest"] {
            if lists.iter().any(|(f, l)| *f == field && !l.is_empty()) {
                errs.push(forbidden(
                    &ip.child(field),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
        }
    }
    for (field, list) in &lists {
        for k in list.keys() {
            errs.extend(qualified_name(k, &ip.child(field).key(k)));
        }
    }
    if item.type_ == "PersistentVolumeClaim"
        && !lists[0].1.contains_key("storage")
        && !lists[1].1.contains_key("storage")
    {
        errs.push(required(
            &ip.child("limits"),
            "either minimum or maximum storage value is required, but neither was provided",
        ));
    }
    let keys: BTreeSet<&String> = lists.iter().flat_map(|(_, l)| l.keys()).collect();
    for k in keys {
        errs.extend(compare_limits(k, &lists, ip));
    }
    errs
}

fn compare_limits(
    k: &str,
    lists: &[(&str, &BTreeMap<String, Quantity>); 5],
    ip: &Path,
) -> Vec<FieldError> {
    let get = |i: usize| lists[i].1.get(k).map(|q| (q, quantity::value(q)));
    let (max, min, def, def_req, ratio) = (get(0), get(1), get(2), get(3), get(4));
    let mut errs = Vec::new();
    let mut check = |a: Option<(&Quantity, Option<i128>)>,
                     b: Option<(&Quantity, Option<i128>)>,
                     field: &str,
                     bad_from_a: bool,
                     msg: &dyn Fn(&str, &str) -> String| {
        if let (Some((qa, va)), Some((qb, vb))) = (a, b)
            && va > vb
        {
            let bad = if bad_from_a { qa } else { qb };
            errs.push(invalid(
                &ip.child(field).key(k),
                Bad::Go(bad.0.clone()),
                &msg(&qa.0, &qb.0),
            ));
        }
    };
    check(min, max, "min", true, &|a, b| {
        format!("min value {a} is greater than max value {b}")
    });
    check(min, def_req, "defaultRequest", false, &|a, b| {
        format!("min value {a} is greater than default request value {b}")
    });
    check(def_req, max, "defaultRequest", true, &|a, b| {
        format!("default request value {a} is greater than max value {b}")
    });
    check(def_req, def, "defaultRequest", true, &|a, b| {
        format!("default request value {a} is greater than default limit value {b}")
    });
    check(min, def, "default", true, &|a, b| {
        format!("min value {a} is greater than default value {b}")
    });
    check(def, max, "default", false, &|a, b| {
        format!("default value {a} is greater than max value {b}")
    });
    if let Some((q, v)) = ratio
        && v < Some(1_000_000_000)
    {
        errs.push(invalid(
            &ip.child("maxLimitRequestRatio").key(k),
            Bad::Go(q.0.clone()),
            &format!("ratio {} is less than 1", q.0),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limit_range_defaults_and_checks() {
        let mut lr: LimitRange = serde_json::from_value(json!({
            "metadata": {"name": "l", "namespace": "default"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}
        }))
        .unwrap_or_default();
        lr.set_defaults();
        let v = serde_json::to_value(&lr).unwrap_or_default();
        assert_eq!(v["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            v["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "1Mi"})
        );
        assert!(lr.validate().is_empty());
        let bad: LimitRange = serde_json::from_value(json!({
            "metadata": {"name": "l", "namespace": "default"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}}]}
        }))
        .unwrap_or_default();
        let e: Vec<String> = bad.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "spec.limits[0].min[cpu]: Invalid value: 2: min value 2 is greater than max value 1"
            ]
        );
    }

    #[test]
    fn quota_resources_and_scopes() {
        let q: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "default"},
            "spec": {"hard": {"pods": "10", "bogus": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}
        }))
        .unwrap_or_default();
        let e: Vec<String> = q.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "spec.hard[bogus]: Invalid value: \"bogus\": must be a standard resource type or fully qualified",
                "spec.hard[bogus]: Invalid value: \"bogus\": must be a standard resource for quota",
                "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\"}: conflicting scopes",
            ]
        );
    }
}
