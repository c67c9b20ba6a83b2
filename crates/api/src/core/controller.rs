//! ReplicationControllers and PodTemplates.

use k8s_openapi::api::core::v1::{PodTemplate, ReplicationController, ReplicationControllerSpec};

use super::pod::{selector_mismatch, template_labels, validate_pod_template};
use super::pod_defaults::default_pod_template;
use crate::field::{FieldError, Path, forbidden, not_supported, required};
use crate::meta::{non_negative, validate_labels};
use crate::{ApiType, check_meta, check_meta_update};

impl ApiType for ReplicationController {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let labels = spec.template.as_ref().and_then(template_labels).cloned();
        if let Some(labels) = labels {
            if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                spec.selector = Some(labels.clone());
            }
            if self.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                self.metadata.labels = Some(labels);
            }
        }
        if spec.replicas.is_none() {
            spec.replicas = Some(1);
        }
        if let Some(t) = spec.template.as_mut() {
            default_pod_template(t);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_rc_spec(
            self.spec.as_ref().unwrap_or(&Default::default()),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_rc_spec(
            self.spec.as_ref().unwrap_or(&Default::default()),
        ));
        errs
    }
}

fn validate_rc_spec(spec: &ReplicationControllerSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &sp.child("minReadySeconds"),
    );
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        errs.push(required(&sp.child("selector"), ""));
    }
    errs.extend(validate_labels(Some(&selector), &sp.child("selector")));
    errs.extend(non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &sp.child("replicas"),
    ));
    let tp = sp.child("template");
    let Some(t) = &spec.template else {
        errs.push(required(&tp, ""));
        return errs;
    };
    let labels = template_labels(t);
    if !selector.is_empty()
        && !selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    {
        errs.push(selector_mismatch(t, &tp.child("metadata").child("labels")));
    }
    errs.extend(validate_pod_template(t, &tp));
    let pod_spec = t.spec.clone().unwrap_or_default();
    let rp = pod_spec.restart_policy.as_deref().unwrap_or("");
    if rp != "Always" {
        errs.push(not_supported(
            &tp.child("spec").child("restartPolicy"),
            rp,
            &["Always"],
        ));
    }
    if pod_spec.active_deadline_seconds.is_some() {
        errs.push(forbidden(
            &tp.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in ReplicationController is not Supported",
        ));
    }
    errs
}

impl ApiType for PodTemplate {
    fn set_defaults(&mut self) {
        if let Some(t) = self.template.as_mut() {
            default_pod_template(t);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_pod_template(
            &self.template.clone().unwrap_or_default(),
            &Path::new("template"),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_pod_template(
            &self.template.clone().unwrap_or_default(),
            &Path::new("template"),
        ));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rc_defaults_selector_and_checks_match() {
        let mut rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc", "namespace": "default"},
            "spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
        }))
        .unwrap_or_default();
        rc.set_defaults();
        let v = serde_json::to_value(&rc).unwrap_or_default();
        assert_eq!(v["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["metadata"]["labels"], json!({"app": "a"}));
        assert!(rc.validate().is_empty());
        if let Some(s) = rc.spec.as_mut() {
            s.selector = Some([("app".to_string(), "b".to_string())].into());
        }
        let e: Vec<String> = rc.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"a\"}: `selector` does not match template `labels`"
            ]
        );
    }
}
