//! Conversion between the served versions of one stored resource: events.k8s.io/v1 Events are
//! stored as core/v1 Events, autoscaling/v1 HorizontalPodAutoscalers as autoscaling/v2 (the
//! v2-only fields kept in v1 through upstream's annotations); custom resources change only their
//! `apiVersion` (the `None` strategy).

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceDef;

/// core/v1 Event field <-> events.k8s.io/v1 Event field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("related", "related"),
    ("eventTime", "eventTime"),
    ("series", "series"),
];

const HPA_METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const HPA_CURRENT: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const HPA_CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const HPA_BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The served object `v` (in `def`'s version) in its storage version.
pub fn to_storage(def: &ResourceDef, v: Value) -> ApiResult<Value> {
    if def.custom.is_some() {
        return Ok(with_api_version(v, def.storage_version));
    }
    match (def.group, def.kind) {
        ("events.k8s.io", "Event") => Ok(event_to_core(v)),
        ("autoscaling", "HorizontalPodAutoscaler") if def.version == "v1" => Ok(hpa_v1_to_v2(v)),
        _ => Err(ApiError::internal(format!(
            "no conversion for {}",
            def.kind
        ))),
    }
}

/// The stored object `v` in `def`'s version.
pub fn from_storage(def: &ResourceDef, v: Value) -> Value {
    if def.custom.is_some() {
        return with_api_version(v, def.served_api_version);
    }
    match (def.group, def.kind) {
        ("events.k8s.io", "Event") => event_from_core(v),
        ("autoscaling", "HorizontalPodAutoscaler") if def.version == "v1" => hpa_v2_to_v1(v),
        _ => v,
    }
}

/// A custom resource in another version of its definition (the `None` conversion strategy).
fn with_api_version(mut v: Value, api_version: &str) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), api_version.into());
    }
    v
}

fn take(m: &mut Map<String, Value>, k: &str) -> Option<Value> {
    m.remove(k).filter(|v| !v.is_null())
}

fn event_to_core(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    let mut out = Map::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Event".into());
    out.insert(
        "metadata".into(),
        take(&mut m, "metadata").unwrap_or(json!({})),
    );
    for (core, ev) in EVENT_FIELDS {
        if let Some(x) = take(&mut m, ev) {
            out.insert((*core).into(), x);
        }
    }
    Value::Object(out)
}

fn event_from_core(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    let mut out = Map::new();
    out.insert("apiVersion".into(), "events.k8s.io/v1".into());
    out.insert("kind".into(), "Event".into());
    out.insert(
        "metadata".into(),
        take(&mut m, "metadata").unwrap_or(json!({})),
    );
    for (core, ev) in EVENT_FIELDS {
        if let Some(x) = take(&mut m, core) {
            out.insert((*ev).into(), x);
        }
    }
    if let Some(host) = out.get("deprecatedSource").and_then(|s| s["host"].as_str())
        && !out.contains_key("reportingInstance")
    {
        let host = host.to_string();
        out.insert("reportingInstance".into(), host.into());
    }
    Value::Object(out)
}

fn annotations(v: &mut Value) -> &mut Map<String, Value> {
    if !v["metadata"]["annotations"].is_object() {
        v["metadata"]["annotations"] = json!({});
    }
    v["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations is an object")
}

/// v2 -> v1: the cpu utilization target maps to targetCPUUtilizationPercentage; other metrics,
/// current metrics, conditions and behavior travel in annotations.
fn hpa_v2_to_v1(mut v: Value) -> Value {
    let spec = v["spec"].clone();
    let status = v["status"].clone();
    let mut metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let cpu = metrics.iter().position(is_cpu_utilization);
    let target_cpu =
        cpu.map(|i| metrics.remove(i)["resource"]["target"]["averageUtilization"].clone());
    let mut out_spec = json!({
        "scaleTargetRef": spec["scaleTargetRef"],
        "maxReplicas": spec["maxReplicas"],
    });
    if !spec["minReplicas"].is_null() {
        out_spec["minReplicas"] = spec["minReplicas"].clone();
    }
    if let Some(t) = target_cpu.filter(|t| !t.is_null()) {
        out_spec["targetCPUUtilizationPercentage"] = t;
    }
    let mut out_status = json!({
        "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
        "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
    });
    for f in ["observedGeneration", "lastScaleTime"] {
        if !status[f].is_null() {
            out_status[f] = status[f].clone();
        }
    }
    let mut current = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(i) = current
        .iter()
        .position(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
    {
        let c = current.remove(i);
        if let Some(u) = c["resource"]["current"]["averageUtilization"].as_i64() {
            out_status["currentCPUUtilizationPercentage"] = u.into();
        }
    }
    let conditions = status["conditions"].clone();
    let behavior = spec["behavior"].clone();
    v["apiVersion"] = "autoscaling/v1".into();
    v["spec"] = out_spec;
    v["status"] = out_status;
    let a = annotations(&mut v);
    let mut put = |k: &str, x: Value| {
        if x.as_array().is_some_and(|a| !a.is_empty()) || x.is_object() {
            a.insert(k.into(), x.to_string().into());
        }
    };
    put(HPA_METRICS, Value::Array(metrics));
    put(HPA_CURRENT, Value::Array(current));
    put(HPA_CONDITIONS, conditions);
    put(HPA_BEHAVIOR, behavior);
    if a.is_empty()
        && let Some(m) = v["metadata"].as_object_mut()
    {
        m.remove("annotations");
    }
    v
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m["resource"]["name"] == "cpu"
        && m["resource"]["target"]["type"] == "Utilization"
}

fn hpa_v1_to_v2(mut v: Value) -> Value {
    let spec = v["spec"].clone();
    let a = annotations(&mut v);
    let parse = |a: &mut Map<String, Value>, k: &str| {
        a.remove(k).and_then(|s| {
            s.as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
        })
    };
    let mut metrics = parse(a, HPA_METRICS)
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let current = parse(a, HPA_CURRENT);
    let conditions = parse(a, HPA_CONDITIONS);
    let behavior = parse(a, HPA_BEHAVIOR);
    if a.is_empty()
        && let Some(m) = v["metadata"].as_object_mut()
    {
        m.remove("annotations");
    }
    if let Some(t) = spec["targetCPUUtilizationPercentage"].as_i64() {
        metrics.insert(0, json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}));
    }
    let mut out_spec =
        json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if !spec["minReplicas"].is_null() {
        out_spec["minReplicas"] = spec["minReplicas"].clone();
    }
    if !metrics.is_empty() {
        out_spec["metrics"] = Value::Array(metrics);
    }
    if let Some(b) = behavior {
        out_spec["behavior"] = b;
    }
    let status = v["status"].clone();
    let mut out_status =
        json!({"desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0)});
    for f in ["observedGeneration", "lastScaleTime", "currentReplicas"] {
        if !status[f].is_null() {
            out_status[f] = status[f].clone();
        }
    }
    let mut cur = current
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default();
    if let Some(u) = status["currentCPUUtilizationPercentage"].as_i64() {
        cur.insert(0, json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}));
    }
    if !cur.is_empty() {
        out_status["currentMetrics"] = Value::Array(cur);
    }
    if let Some(c) = conditions {
        out_status["conditions"] = c;
    }
    v["apiVersion"] = "autoscaling/v2".into();
    v["spec"] = out_spec;
    v["status"] = out_status;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trips_through_v1() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]},
            "status": {"currentReplicas": 1, "desiredReplicas": 1}
        });
        let v1 = hpa_v2_to_v1(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(
            v1["metadata"]["annotations"][HPA_METRICS]
                .as_str()
                .unwrap()
                .contains("memory")
        );
        let back = hpa_v1_to_v2(v1);
        assert_eq!(back["spec"], v2["spec"]);
    }

    #[test]
    fn events_map_fields() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started", "count": 2});
        let ev = event_from_core(core.clone());
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["note"], "hi");
        assert_eq!(ev["deprecatedCount"], 2);
        assert_eq!(event_to_core(ev), core);
    }
}
