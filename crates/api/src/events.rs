//! events.k8s.io/v1 Events (the strict rules of upstream's `ValidateEventCreate/Update`).

use k8s_openapi::api::events::v1::Event;

use crate::core::container::qualified_name;
use crate::field::{Bad, FieldError, Path, invalid, required};
use crate::meta::{immutable, semantic_eq};
use crate::names::is_dns1123_subdomain;
use crate::{ApiType, check_meta, check_meta_update};

impl ApiType for Event {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = legacy_checks(self);
        errs.extend(check_meta(self));
        if self.event_time.is_none() {
            errs.push(required(&Path::new("eventTime"), ""));
        }
        let t = self.type_.as_deref().unwrap_or("");
        if t != "Normal" && t != "Warning" {
            errs.push(invalid(
                &Path::new("type"),
                "",
                &format!("has invalid value: {t}"),
            ));
        }
        let unset = [
            ("firstTimestamp", self.deprecated_first_timestamp.is_some()),
            ("lastTimestamp", self.deprecated_last_timestamp.is_some()),
            ("count", self.deprecated_count.unwrap_or(0) != 0),
            (
                "source",
                self.deprecated_source
                    .as_ref()
                    .is_some_and(|s| s.component.is_some() || s.host.is_some()),
            ),
        ];
        for (field, set) in unset {
            if set {
                errs.push(invalid(&Path::new(field), "", "needs to be unset"));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = legacy_checks(self);
        errs.extend(check_meta_update(self, old));
        let changed = |field: &str, same: bool, bad: Bad, errs: &mut Vec<FieldError>| {
            if !same {
                errs.push(immutable(&Path::new(field), bad));
            }
        };
        changed(
            "involvedObject",
            semantic_eq(&self.regarding, &old.regarding),
            crate::field::bad_json(&self.regarding),
            &mut errs,
        );
        changed(
            "reason",
            self.reason == old.reason,
            self.reason.as_deref().into(),
            &mut errs,
        );
        changed(
            "message",
            self.note == old.note,
            self.note.as_deref().into(),
            &mut errs,
        );
        changed(
            "type",
            self.type_ == old.type_,
            self.type_.as_deref().into(),
            &mut errs,
        );
        changed(
            "eventTime",
            self.event_time == old.event_time,
            crate::field::bad_json(&self.event_time),
            &mut errs,
        );
        changed(
            "action",
            self.action == old.action,
            self.action.as_deref().into(),
            &mut errs,
        );
        changed(
            "related",
            semantic_eq(&self.related, &old.related),
            crate::field::bad_json(&self.related),
            &mut errs,
        );
        changed(
            "reportingController",
            self.reporting_controller == old.reporting_controller,
            self.reporting_controller.as_deref().into(),
            &mut errs,
        );
        changed(
            "reportingInstance",
            self.reporting_instance == old.reporting_instance,
            self.reporting_instance.as_deref().into(),
            &mut errs,
        );
        errs
    }
}

/// `legacyValidateEvent` for events that have an `eventTime`, as events.k8s.io/v1 ones must.
fn legacy_checks(e: &Event) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    let io_ns = e
        .regarding
        .as_ref()
        .and_then(|r| r.namespace.as_deref())
        .unwrap_or("");
    if e.event_time.is_some() {
        if io_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(invalid(
                &Path::new("involvedObject").child("namespace"),
                io_ns,
                "does not match event.namespace",
            ));
        }
        let rc = e.reporting_controller.as_deref().unwrap_or("");
        let rcp = Path::new("reportingController");
        if rc.is_empty() {
            errs.push(required(&rcp, ""));
        }
        errs.extend(qualified_name(rc, &rcp));
        errs.extend(crate::core::config::limited(
            "reportingInstance",
            e.reporting_instance.as_deref(),
            128,
            true,
        ));
        errs.extend(crate::core::config::limited(
            "action",
            e.action.as_deref(),
            128,
            true,
        ));
        errs.extend(crate::core::config::limited(
            "reason",
            e.reason.as_deref(),
            128,
            true,
        ));
        errs.extend(crate::core::config::limited(
            "message",
            e.note.as_deref(),
            1024,
            false,
        ));
    }
    errs.extend(
        is_dns1123_subdomain(ns)
            .iter()
            .map(|m| invalid(&Path::new("namespace"), ns, m)),
    );
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_v1_need_event_time_and_reporter() {
        let e: Event = serde_json::from_value(
            json!({"metadata": {"name": "e1", "namespace": "default"}, "type": "Normal"}),
        )
        .unwrap_or_default();
        let got: Vec<String> = e.validate().iter().map(ToString::to_string).collect();
        assert_eq!(got, vec!["eventTime: Required value"]);
        let e: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1", "namespace": "default"}, "type": "Normal",
            "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "kubelet",
            "reportingInstance": "node-1", "action": "Pulling", "reason": "Pulling"
        }))
        .unwrap_or_default();
        assert!(e.validate().is_empty(), "{:?}", e.validate());
    }
}
