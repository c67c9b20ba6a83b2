//! scheduling.k8s.io/v1: PriorityClasses.

use k8s_openapi::api::scheduling::v1::PriorityClass;

use crate::core::pod::enum_field;
use crate::field::{FieldError, Path, forbidden};
use crate::meta::immutable;
use crate::{ApiType, check_meta, check_meta_update};

const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The built-in system classes: name, value, globalDefault.
const SYSTEM_CLASSES: &[(&str, i32)] = &[
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

impl ApiType for PriorityClass {
    fn set_defaults(&mut self) {
        if self.preemption_policy.is_none() {
            self.preemption_policy = Some("PreemptLowerPriority".into());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let name = self.metadata.name.as_deref().unwrap_or("");
        if name.starts_with("system-") {
            if let Some(why) =
                system_class_error(name, self.value, self.global_default.unwrap_or(false))
            {
                errs.push(forbidden(
                    &Path::new("metadata").child("name"),
                    &format!("priority class names with 'system-' prefix are reserved for system use only. error: {why}"),
                ));
            }
        } else if self.value > HIGHEST_USER_DEFINABLE_PRIORITY {
            errs.push(forbidden(
                &Path::new("value"),
                &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
            ));
        }
        if let Some(p) = &self.preemption_policy {
            errs.extend(enum_field(
                Some(p),
                &["PreemptLowerPriority", "Never"],
                &Path::new("preemptionPolicy"),
            ));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        if self.value != old.value {
            errs.push(forbidden(
                &Path::new("value"),
                "may not be changed in an update.",
            ));
        }
        if self.preemption_policy != old.preemption_policy {
            errs.push(immutable(
                &Path::new("preemptionPolicy"),
                self.preemption_policy.as_deref(),
            ));
        }
        errs
    }
}

/// Upstream's `IsKnownSystemPriorityClass`, as the error it returns.
fn system_class_error(name: &str, value: i32, global_default: bool) -> Option<String> {
    let Some((_, want)) = SYSTEM_CLASSES.iter().find(|(n, _)| *n == name) else {
        return Some(format!("{name} is not a known system priority class"));
    };
    if value != *want {
        return Some(format!("value of {name} PriorityClass must be {want}"));
    }
    if global_default {
        return Some(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn priority_class_rules() {
        let mut pc: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": "high"}, "value": 2_000_000_000}))
                .unwrap_or_default();
        pc.set_defaults();
        assert_eq!(
            pc.preemption_policy.as_deref(),
            Some("PreemptLowerPriority")
        );
        let e: Vec<String> = pc.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
            ]
        );
        let sys: PriorityClass = serde_json::from_value(
            json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000}),
        )
        .unwrap_or_default();
        assert!(sys.validate().is_empty());
    }
}
