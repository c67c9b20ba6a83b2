//! storage.k8s.io/v1: StorageClasses.

use k8s_openapi::api::storage::v1::StorageClass;

use crate::core::container::qualified_name;
use crate::field::{FieldError, Path, forbidden, invalid, not_supported, required, too_long};
use crate::meta::immutable;
use crate::{ApiType, check_meta, check_meta_update};

const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

impl ApiType for StorageClass {
    fn set_defaults(&mut self) {
        if self.reclaim_policy.is_none() {
            self.reclaim_policy = Some("Delete".into());
        }
        if self.volume_binding_mode.is_none() {
            self.volume_binding_mode = Some("Immediate".into());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let pp = Path::new("provisioner");
        if self.provisioner.is_empty() {
            errs.push(required(&pp, ""));
        } else {
            errs.extend(qualified_name(&self.provisioner.to_lowercase(), &pp));
        }
        let params = self.parameters.clone().unwrap_or_default();
        let parp = Path::new("parameters");
        if params.len() > MAX_PARAMETERS {
            errs.push(too_long(&parp, MAX_PARAMETERS));
        } else {
            if params.keys().any(String::is_empty) {
                errs.push(invalid(&parp, "", "field can not be empty."));
            }
            if params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_PARAMETERS_SIZE {
                errs.push(too_long(&parp, MAX_PARAMETERS_SIZE));
            }
        }
        if let Some(p) = self
            .reclaim_policy
            .as_deref()
            .filter(|p| !p.is_empty() && *p != "Delete" && *p != "Retain")
        {
            errs.push(not_supported(
                &Path::new("reclaimPolicy"),
                p,
                &["Delete", "Retain"],
            ));
        }
        let modes = ["Immediate", "WaitForFirstConsumer"];
        match self.volume_binding_mode.as_deref() {
            None => errs.push(required(&Path::new("volumeBindingMode"), "")),
            Some(m) if !modes.contains(&m) => {
                errs.push(not_supported(&Path::new("volumeBindingMode"), m, &modes))
            }
            Some(_) => {}
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        if self.parameters.clone().unwrap_or_default() != old.parameters.clone().unwrap_or_default()
        {
            errs.push(forbidden(
                &Path::new("parameters"),
                "updates to parameters are forbidden.",
            ));
        }
        if self.provisioner != old.provisioner {
            errs.push(forbidden(
                &Path::new("provisioner"),
                "updates to provisioner are forbidden.",
            ));
        }
        if self.reclaim_policy != old.reclaim_policy {
            errs.push(forbidden(
                &Path::new("reclaimPolicy"),
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        if self.volume_binding_mode != old.volume_binding_mode {
            errs.push(immutable(
                &Path::new("volumeBindingMode"),
                self.volume_binding_mode.as_deref(),
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_class_defaults_and_updates() {
        let mut sc: StorageClass = serde_json::from_value(json!({"metadata": {"name": "local", "resourceVersion": "1"}, "provisioner": "rancher.io/local-path"})).unwrap_or_default();
        sc.set_defaults();
        assert!(sc.validate().is_empty());
        let mut changed = sc.clone();
        changed.reclaim_policy = Some("Retain".into());
        let e: Vec<String> = changed
            .validate_update(&sc)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e,
            vec!["reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."]
        );
    }
}
