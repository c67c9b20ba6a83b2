//! autoscaling/v2 and autoscaling/v1 HorizontalPodAutoscalers.

use k8s_openapi::api::autoscaling::{v1, v2};

use crate::field::{FieldError, Path, invalid, not_supported, required};
use crate::meta::validate_label_selector;
use crate::names::validate_path_segment_name;
use crate::quantity;
use crate::{ApiType, check_meta, check_meta_update};

const METRIC_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];
const TARGET_TYPES: &[&str] = &["AverageValue", "Utilization", "Value"];
const MAX_PERIOD_SECONDS: i32 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;

fn default_scale_up() -> v2::HPAScalingRules {
    v2::HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![
            v2::HPAScalingPolicy {
                type_: "Pods".into(),
                value: 4,
                period_seconds: 15,
            },
            v2::HPAScalingPolicy {
                type_: "Percent".into(),
                value: 100,
                period_seconds: 15,
            },
        ]),
        tolerance: None,
    }
}

fn default_scale_down() -> v2::HPAScalingRules {
    v2::HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some("Max".into()),
        policies: Some(vec![v2::HPAScalingPolicy {
            type_: "Percent".into(),
            value: 100,
            period_seconds: 15,
        }]),
        tolerance: None,
    }
}

/// Upstream's `GenerateHPAScale{Up,Down}Rules`: unset parts come from the defaults.
fn fill_rules(rules: &mut Option<v2::HPAScalingRules>, defaults: v2::HPAScalingRules) {
    let Some(r) = rules.as_mut() else {
        *rules = Some(defaults);
        return;
    };
    if r.select_policy.is_none() {
        r.select_policy = defaults.select_policy;
    }
    if r.policies.as_ref().is_none_or(Vec::is_empty) {
        r.policies = defaults.policies;
    }
    if r.stabilization_window_seconds.is_none() {
        r.stabilization_window_seconds = defaults.stabilization_window_seconds;
    }
}

impl ApiType for v2::HorizontalPodAutoscaler {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if spec.min_replicas.is_none() {
            spec.min_replicas = Some(1);
        }
        if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
            spec.metrics = Some(vec![v2::MetricSpec {
                type_: "Resource".into(),
                resource: Some(v2::ResourceMetricSource {
                    name: "cpu".into(),
                    target: v2::MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(80),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]);
        }
        if let Some(b) = spec.behavior.as_mut() {
            fill_rules(&mut b.scale_up, default_scale_up());
            fill_rules(&mut b.scale_down, default_scale_down());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_v2_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_v2_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }
}

fn validate_replicas(min: Option<i32>, max: i32, sp: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(m) = min.filter(|m| *m < 1) {
        errs.push(invalid(
            &sp.child("minReplicas"),
            m,
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        errs.push(invalid(
            &sp.child("maxReplicas"),
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(invalid(
            &sp.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    errs
}

/// `ValidateCrossVersionObjectReference`.
fn validate_target_ref(kind: &str, name: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, v) in [("kind", kind), ("name", name)] {
        if v.is_empty() {
            errs.push(required(&path.child(field), ""));
        } else {
            errs.extend(
                validate_path_segment_name(v, false)
                    .iter()
                    .map(|m| invalid(&path.child(field), v, m)),
            );
        }
    }
    errs
}

fn validate_v2_spec(spec: &v2::HorizontalPodAutoscalerSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = validate_replicas(spec.min_replicas, spec.max_replicas, &sp);
    errs.extend(validate_target_ref(
        &spec.scale_target_ref.kind,
        &spec.scale_target_ref.name,
        &sp.child("scaleTargetRef"),
    ));
    for (i, m) in spec.metrics.iter().flatten().enumerate() {
        errs.extend(validate_metric(m, &sp.child("metrics").index(i)));
    }
    if let Some(b) = &spec.behavior {
        let bp = sp.child("behavior");
        for (field, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
            if let Some(r) = rules {
                errs.extend(validate_rules(r, &bp.child(field)));
            }
        }
    }
    errs
}

fn validate_metric(m: &v2::MetricSpec, path: &Path) -> Vec<FieldError> {
    let sources = [
        ("Object", "object", m.object.is_some()),
        ("Pods", "pods", m.pods.is_some()),
        ("Resource", "resource", m.resource.is_some()),
        (
            "ContainerResource",
            "containerResource",
            m.container_resource.is_some(),
        ),
        ("External", "external", m.external.is_some()),
    ];
    let mut errs = Vec::new();
    if m.type_.is_empty() {
        errs.push(required(
            &path.child("type"),
            "must specify a metric source type",
        ));
    } else if !METRIC_TYPES.contains(&m.type_.as_str()) {
        errs.push(not_supported(&path.child("type"), &m.type_, METRIC_TYPES));
    }
    let set = sources.iter().filter(|(_, _, on)| *on).count();
    if set != 1 {
        errs.push(invalid(
            path,
            "<empty>",
            "must populate exactly one metric source",
        ));
    }
    for (ty, field, on) in sources {
        if ty == m.type_ && !on {
            errs.push(required(
                &path.child(field),
                "must populate information for the given metric source",
            ));
        }
        if ty != m.type_ && on {
            errs.push(invalid(
                &path.child(field),
                "<empty>",
                "must populate the given metric source only",
            ));
        }
    }
    let targets = [
        (
            "resource",
            m.resource
                .as_ref()
                .map(|r| (&r.target, Some(&r.name), None)),
        ),
        (
            "containerResource",
            m.container_resource
                .as_ref()
                .map(|r| (&r.target, Some(&r.name), Some(&r.container))),
        ),
        (
            "pods",
            m.pods
                .as_ref()
                .map(|p| (&p.target, Some(&p.metric.name), None)),
        ),
        (
            "object",
            m.object
                .as_ref()
                .map(|o| (&o.target, Some(&o.metric.name), None)),
        ),
        (
            "external",
            m.external
                .as_ref()
                .map(|e| (&e.target, Some(&e.metric.name), None)),
        ),
    ];
    for (field, t) in targets {
        let Some((target, name, container)) = t else {
            continue;
        };
        let fp = path.child(field);
        let name_path = if matches!(field, "resource" | "containerResource") {
            fp.child("name")
        } else {
            fp.child("metric").child("name")
        };
        if name.is_none_or(String::is_empty) {
            errs.push(required(&name_path, "must specify a resource name"));
        }
        if container.is_some_and(String::is_empty) {
            errs.push(required(&fp.child("container"), "must specify a container"));
        }
        errs.extend(validate_target(target, &fp.child("target")));
    }
    for (field, sel) in [
        (
            "pods",
            m.pods.as_ref().and_then(|p| p.metric.selector.as_ref()),
        ),
        (
            "external",
            m.external.as_ref().and_then(|e| e.metric.selector.as_ref()),
        ),
    ] {
        errs.extend(validate_label_selector(
            sel,
            &path.child(field).child("metric").child("selector"),
        ));
    }
    errs
}

fn validate_target(t: &v2::MetricTarget, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if t.type_.is_empty() {
        errs.push(required(
            &path.child("type"),
            "must specify a metric target type",
        ));
    } else if !TARGET_TYPES.contains(&t.type_.as_str()) {
        errs.push(not_supported(&path.child("type"), &t.type_, TARGET_TYPES));
    }
    let positive = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                    field: &str|
     -> Vec<FieldError> {
        match q.map(|q| (q, quantity::value(q))) {
            Some((q, v)) if v.is_none_or(|v| v <= 0) => {
                vec![invalid(&path.child(field), &q.0, "must be positive")]
            }
            _ => vec![],
        }
    };
    errs.extend(positive(t.value.as_ref(), "value"));
    errs.extend(positive(t.average_value.as_ref(), "averageValue"));
    if let Some(u) = t.average_utilization.filter(|u| *u < 1) {
        errs.push(invalid(
            &path.child("averageUtilization"),
            u,
            "must be greater than 0",
        ));
    }
    errs
}

fn validate_rules(r: &v2::HPAScalingRules, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(w) = r.stabilization_window_seconds
        && !(0..=MAX_STABILIZATION_WINDOW_SECONDS).contains(&w)
    {
        errs.push(invalid(
            &path.child("stabilizationWindowSeconds"),
            w,
            &format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
        ));
    }
    if let Some(p) = r
        .select_policy
        .as_deref()
        .filter(|p| !["Disabled", "Max", "Min"].contains(p))
    {
        errs.push(not_supported(
            &path.child("selectPolicy"),
            p,
            &["Disabled", "Max", "Min"],
        ));
    }
    let policies = r.policies.as_deref().unwrap_or_default();
    if policies.is_empty() {
        errs.push(required(
            &path.child("policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let pp = path.child("policies").index(i);
        if p.type_ != "Percent" && p.type_ != "Pods" {
            errs.push(not_supported(
                &pp.child("type"),
                &p.type_,
                &["Percent", "Pods"],
            ));
        }
        if p.value <= 0 {
            errs.push(invalid(
                &pp.child("value"),
                p.value,
                "must be greater than zero",
            ));
        }
        if p.period_seconds <= 0 {
            errs.push(invalid(
                &pp.child("periodSeconds"),
                p.period_seconds,
                "must be greater than zero",
            ));
        } else if p.period_seconds > MAX_PERIOD_SECONDS {
            errs.push(invalid(
                &pp.child("periodSeconds"),
                p.period_seconds,
                &format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
    errs
}

impl ApiType for v1::HorizontalPodAutoscaler {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if spec.min_replicas.is_none() {
            spec.min_replicas = Some(1);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_v1_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_v1_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }
}

fn validate_v1_spec(spec: &v1::HorizontalPodAutoscalerSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = validate_replicas(spec.min_replicas, spec.max_replicas, &sp);
    errs.extend(validate_target_ref(
        &spec.scale_target_ref.kind,
        &spec.scale_target_ref.name,
        &sp.child("scaleTargetRef"),
    ));
    if let Some(t) = spec.target_cpu_utilization_percentage.filter(|t| *t < 1) {
        errs.push(invalid(
            &sp.child("targetCPUUtilizationPercentage"),
            t,
            "must be greater than 0",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hpa_defaults_and_checks() {
        let mut h: v2::HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "h", "namespace": "default"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "maxReplicas": 5,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}
        }))
        .unwrap_or_default();
        h.set_defaults();
        let v = serde_json::to_value(&h).unwrap_or_default();
        assert_eq!(v["spec"]["minReplicas"], 1);
        assert_eq!(
            v["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert_eq!(
            v["spec"]["behavior"]["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(
            v["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert!(h.validate().is_empty());
        if let Some(s) = h.spec.as_mut() {
            s.max_replicas = 0;
            s.scale_target_ref.name = String::new();
        }
        let e: Vec<String> = h.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            vec![
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`",
                "spec.scaleTargetRef.name: Required value",
            ]
        );
    }
}
