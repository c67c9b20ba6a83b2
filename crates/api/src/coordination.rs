//! coordination.k8s.io/v1: Leases.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};

use crate::field::{FieldError, Path, forbidden, invalid, not_supported};
use crate::{ApiType, check_meta, check_meta_update};

impl ApiType for Lease {
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

fn validate_spec(spec: &LeaseSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errs.push(invalid(
            &sp.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
        errs.push(invalid(
            &sp.child("leaseTransitions"),
            t,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(s) = spec
        .strategy
        .as_deref()
        .filter(|s| *s != "OldestEmulationVersion")
    {
        errs.push(not_supported(
            &sp.child("strategy"),
            s,
            &["OldestEmulationVersion"],
        ));
    }
    if spec
        .preferred_holder
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && spec.strategy.as_deref().unwrap_or("").is_empty()
    {
        errs.push(forbidden(
            &sp.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lease_duration_must_be_positive() {
        let l: Lease = serde_json::from_value(json!({
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 0}
        }))
        .unwrap_or_default();
        let e: Vec<String> = l.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
    }
}
