//! Printers for `autoscaling`: horizontalpodautoscalers, whose TARGETS column shows each metric
//! as `current/target` (`cpu: 10%/50%`, `cpu: <unknown>/50%`, `500m/1 (avg)`), at most two.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::descriptions::{
    HPA_SPEC_MAX_REPLICAS, HPA_SPEC_METRICS, HPA_SPEC_MIN_REPLICAS, HPA_SPEC_SCALE_TARGET_REF,
    HPA_STATUS_CURRENT_REPLICAS,
};
use crate::format::{age, age_column, arr_at, col, int_at, name, name_column, opt_int, str_at};
use crate::{Printer, TablePrinter, quantity};

/// The printer for an `autoscaling` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    (resource == "horizontalpodautoscalers").then_some(&HPA as &dyn Printer)
}

static HPA: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Reference", "string", HPA_SPEC_SCALE_TARGET_REF),
        col("Targets", "string", HPA_SPEC_METRICS),
        col("MinPods", "string", HPA_SPEC_MIN_REPLICAS),
        col("MaxPods", "string", HPA_SPEC_MAX_REPLICAS),
        col("Replicas", "string", HPA_STATUS_CURRENT_REPLICAS),
        age_column(),
    ],
    row: hpa_row,
};

/// The most metrics the TARGETS cell lists before ` + N more...`.
const MAX_METRICS: usize = 2;

fn hpa_row(hpa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(hpa, "/spec/scaleTargetRef/kind"),
        str_at(hpa, "/spec/scaleTargetRef/name")
    );
    let (specs, statuses) = metrics(hpa);
    let min_pods =
        opt_int(hpa, "/spec/minReplicas").map_or_else(|| "<unset>".to_string(), |n| n.to_string());
    vec![
        name(hpa),
        Value::from(reference),
        Value::from(format_metrics(&specs, &statuses)),
        Value::from(min_pods),
        Value::from(int_at(hpa, "/spec/maxReplicas")),
        Value::from(int_at(hpa, "/status/currentReplicas")),
        age(hpa, now),
    ]
}

/// The metric specs and statuses in the `autoscaling/v2` shape; an `autoscaling/v1` object's
/// CPU target becomes a CPU utilization metric, as upstream's conversion does.
fn metrics(hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    if let Some(specs) = hpa.pointer("/spec/metrics").and_then(Value::as_array) {
        let statuses = arr_at(hpa, "/status/currentMetrics").to_vec();
        return (specs.clone(), statuses);
    }
    let Some(target) = opt_int(hpa, "/spec/targetCPUUtilizationPercentage") else {
        return (Vec::new(), Vec::new());
    };
    let spec = json!({"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}});
    let statuses = opt_int(hpa, "/status/currentCPUUtilizationPercentage")
        .map(|current| {
            vec![json!({"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": current}}})]
        })
        .unwrap_or_default();
    (vec![spec], statuses)
}

/// Upstream's `formatHPAMetrics`.
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| format_metric(spec, statuses.get(i)))
        .collect();
    let shown = list[..list.len().min(MAX_METRICS)].join(", ");
    if list.len() > MAX_METRICS {
        format!("{shown} + {} more...", list.len() - MAX_METRICS)
    } else {
        shown
    }
}

/// One metric as `current/target`.
fn format_metric(spec: &Value, status: Option<&Value>) -> String {
    match str_at(spec, "/type") {
        "External" => value_metric(spec, status, "external"),
        "Object" => value_metric(spec, status, "object"),
        "Pods" => {
            let current = status_part(status, "pods")
                .map_or_else(unknown, |s| quantity_at(s, "/current/averageValue"));
            let target = quantity_at(spec, "/pods/target/averageValue");
            format!("{current}/{target}")
        }
        "Resource" => resource_metric(spec, status, "resource"),
        "ContainerResource" => resource_metric(spec, status, "containerResource"),
        _ => "<unknown type>".to_string(),
    }
}

/// An external or object metric: by average value (`(avg)`) or by value.
fn value_metric(spec: &Value, status: Option<&Value>, key: &str) -> String {
    let part = status_part(status, key);
    let avg_target = spec.pointer(&format!("/{key}/target/averageValue"));
    if let Some(target) = avg_target.filter(|v| !v.is_null()) {
        let current = part
            .and_then(|s| s.pointer("/current/averageValue"))
            .filter(|v| !v.is_null())
            .map_or_else(unknown, |v| quantity::cell(Some(v)));
        return format!("{current}/{} (avg)", quantity::cell(Some(target)));
    }
    let current = part.map_or_else(unknown, |s| quantity_at(s, "/current/value"));
    let target = quantity_at(spec, &format!("/{key}/target/value"));
    format!("{current}/{target}")
}

/// A resource or container-resource metric: `name: current/target`, by average value or by
/// utilization percentage.
fn resource_metric(spec: &Value, status: Option<&Value>, key: &str) -> String {
    let resource = str_at(spec, &format!("/{key}/name"));
    let part = status_part(status, key);
    let avg_target = spec.pointer(&format!("/{key}/target/averageValue"));
    if let Some(target) = avg_target.filter(|v| !v.is_null()) {
        let current = part.map_or_else(unknown, |s| quantity_at(s, "/current/averageValue"));
        return format!("{resource}: {current}/{}", quantity::cell(Some(target)));
    }
    let current = part
        .and_then(|s| opt_int(s, "/current/averageUtilization"))
        .map_or_else(unknown, |u| format!("{u}%"));
    let target = opt_int(spec, &format!("/{key}/target/averageUtilization"))
        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
    format!("{resource}: {current}/{target}")
}

/// The status's source-specific part (`status.resource`, ...), if present.
fn status_part<'a>(status: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    status?.get(key).filter(|v| v.is_object())
}

fn quantity_at(v: &Value, ptr: &str) -> String {
    quantity::cell(v.pointer(ptr).filter(|q| !q.is_null()))
}

fn unknown() -> String {
    "<unknown>".to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::tests::{ago, print};

    fn hpa(metrics: Value, current: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": ago(3600)},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web",
                                        "apiVersion": "apps/v1"},
                     "minReplicas": 1, "maxReplicas": 10, "metrics": metrics},
            "status": {"currentReplicas": 2, "currentMetrics": current}})
    }

    fn cpu_utilization(target: i64) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}})
    }

    #[test]
    fn cpu_utilization_target() {
        let current = json!([{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 10, "averageValue": "50m"}}}]);
        assert_eq!(
            print(
                "autoscaling",
                "horizontalpodautoscalers",
                &hpa(json!([cpu_utilization(50)]), current)
            ),
            json!(["web", "Deployment/web", "cpu: 10%/50%", "1", 10, 2, "60m"])
        );
        let row = print(
            "autoscaling",
            "horizontalpodautoscalers",
            &hpa(json!([cpu_utilization(50)]), json!(null)),
        );
        assert_eq!(row[2], "cpu: <unknown>/50%");
    }

    #[test]
    fn every_metric_kind_and_the_more_suffix() {
        let metrics = json!([
            {"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "AverageValue", "averageValue": "512Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"},
                "target": {"type": "AverageValue", "averageValue": "1k"}}},
        ]);
        let current = json!([
            {"type": "Resource", "resource": {"name": "memory",
                "current": {"averageValue": "262144Ki"}}},
            {"type": "Pods", "pods": {"current": {"averageValue": "500"}}},
        ]);
        let row = print(
            "autoscaling",
            "horizontalpodautoscalers",
            &hpa(metrics, current),
        );
        assert_eq!(row[2], "memory: 256Mi/512Mi, 500/1k");

        let metrics = json!([
            {"type": "Object", "object": {"target": {"type": "Value", "value": "10"}}},
            {"type": "External", "external": {"target": {"type": "AverageValue",
                                                         "averageValue": "30"}}},
            {"type": "ContainerResource", "containerResource": {"name": "cpu",
                "container": "app", "target": {"type": "Utilization"}}},
            {"type": "Bogus"},
        ]);
        let current = json!([{"type": "Object", "object": {"current": {"value": "7"}}}]);
        let row = print(
            "autoscaling",
            "horizontalpodautoscalers",
            &hpa(metrics.clone(), current),
        );
        assert_eq!(row[2], "7/10, <unknown>/30 (avg) + 2 more...");

        let only_tail = json!([metrics[2], metrics[3]]);
        let row = print(
            "autoscaling",
            "horizontalpodautoscalers",
            &hpa(only_tail, json!([])),
        );
        assert_eq!(row[2], "cpu: <unknown>/<auto>, <unknown type>");
    }

    #[test]
    fn no_metrics_and_v1_objects() {
        let mut none = hpa(json!([]), json!([]));
        none["spec"]
            .as_object_mut()
            .map(|s| s.remove("minReplicas"));
        assert_eq!(
            print("autoscaling", "horizontalpodautoscalers", &none),
            json!(["web", "Deployment/web", "<none>", "<unset>", 10, 2, "60m"])
        );
        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                     "maxReplicas": 4, "targetCPUUtilizationPercentage": 80},
            "status": {"currentReplicas": 1, "currentCPUUtilizationPercentage": 35}});
        let row = print("autoscaling", "horizontalpodautoscalers", &v1);
        assert_eq!(row[2], "cpu: 35%/80%");
    }
}
