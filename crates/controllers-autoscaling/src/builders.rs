//! Test builders for pods and HorizontalPodAutoscalers.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A pod with one container.
pub struct PodBuilder(Value);

impl PodBuilder {
    /// A Running, Ready pod started long ago, requesting `cpu`.
    pub fn new(name: &str, cpu: &str) -> PodBuilder {
        PodBuilder(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}]},
            "status": {"phase": "Running", "startTime": rfc3339(0),
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(0)}]},
        }))
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0["status"]["phase"] = phase.into();
        self
    }

    /// Started at `start` ms, Ready=`ready` since `transition` ms.
    pub fn readiness(mut self, start: i64, ready: &str, transition: i64) -> Self {
        self.0["status"]["startTime"] = rfc3339(start).into();
        self.0["status"]["conditions"] =
            json!([{"type": "Ready", "status": ready, "lastTransitionTime": rfc3339(transition)}]);
        self
    }

    pub fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = rfc3339(0).into();
        self
    }

    pub fn no_request(mut self) -> Self {
        self.0["spec"]["containers"][0]["resources"] = json!({});
        self
    }

    pub fn build(self) -> Pod {
        serde_json::from_value(self.0).expect("a pod")
    }
}

/// An autoscaling/v2 HPA on Deployment `web` with a cpu utilization target.
pub fn hpa(min: i32, max: i32, cpu_percent: i32) -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}],
        },
    }))
    .expect("an hpa")
}
