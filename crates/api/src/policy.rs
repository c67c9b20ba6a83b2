//! policy/v1: PodDisruptionBudgets.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};

use crate::apps::{at_most_100, int_or_percent};
use crate::field::{FieldError, Path, bad_json, invalid, not_supported};
use crate::meta::validate_label_selector;
use crate::{ApiType, check_meta, check_meta_update};

const EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

impl ApiType for PodDisruptionBudget {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }
}

fn validate_spec(spec: &PodDisruptionBudgetSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(invalid(
            &sp,
            bad_json(spec),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (field, v) in [
        ("minAvailable", &spec.min_available),
        ("maxUnavailable", &spec.max_unavailable),
    ] {
        if let Some(v) = v {
            errs.extend(int_or_percent(v, &sp.child(field)));
            errs.extend(at_most_100(v, &sp.child(field)));
        }
    }
    errs.extend(validate_label_selector(
        spec.selector.as_ref(),
        &sp.child("selector"),
    ));
    if let Some(p) = spec
        .unhealthy_pod_eviction_policy
        .as_deref()
        .filter(|p| !EVICTION_POLICIES.contains(p))
    {
        errs.push(not_supported(
            &sp.child("unhealthyPodEvictionPolicy"),
            p,
            EVICTION_POLICIES,
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pdb_checks() {
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"minAvailable": "120%", "selector": {"matchLabels": {"app": "web"}}}
        }))
        .unwrap_or_default();
        let e: Vec<String> = pdb.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"120%\"}: must not be greater than 100%"
            ]
        );
    }
}
