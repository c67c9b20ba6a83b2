//! One HPA sync as a pure function, as upstream's `reconcileAutoscaler`: the HPA, its target's
//! scale, the selected pods and their metrics in; the replica count to set, the new status and
//! the events out. The shell fetches the snapshot and performs the [`Decision`].

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::behavior::{Behavior, Cond, Counts, Memory};
use super::calculator::{self, Input, PodMetric, Target};

/// The target's scale, as the scale subresource reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleView {
    pub replicas: i32,
    /// `status.selector`, a label selector string (empty: none).
    pub selector: String,
}

/// One pod's metrics: usage per container and resource, milli-units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    pub timestamp_ms: i64,
    pub window_ms: i64,
    pub containers: BTreeMap<String, BTreeMap<String, i64>>,
}

/// What one sync sees.
#[derive(Debug)]
pub struct Snapshot<'a> {
    pub hpa: &'a HorizontalPodAutoscaler,
    /// The scale, or why it could not be read.
    pub scale: Result<ScaleView, String>,
    pub pods: &'a [&'a Pod],
    /// Metrics by pod name, or why they could not be listed.
    pub metrics: Result<BTreeMap<String, PodUsage>, String>,
    pub now_ms: i64,
}

/// An event to record on the HPA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// What the sync decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Set the target's replicas to this, and why.
    pub rescale: Option<(i32, String)>,
    pub status: HorizontalPodAutoscalerStatus,
    pub events: Vec<Event>,
    /// The sync failed (retry with backoff) after writing the status.
    pub error: Option<String>,
}

/// Settings of the decision.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Scale-down stabilization when the HPA does not say (`--horizontal-pod-autoscaler-downscale-stabilization`).
    pub downscale_window_s: i32,
}

/// Decides one sync; `memory` is this HPA's recent recommendations and scale events.
pub fn decide(s: &Snapshot<'_>, memory: &mut Memory, settings: Settings) -> Decision {
    let hpa = s.hpa;
    let spec = hpa.spec.clone().unwrap_or_default();
    let mut d = Decision {
        rescale: None,
        status: hpa.status.clone().unwrap_or_default(),
        events: Vec::new(),
        error: None,
    };
    let now = s.now_ms;
    let scale = match &s.scale {
        Ok(scale) => scale.clone(),
        Err(err) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {err}");
            d.warn("FailedGetScale", err.clone());
            d.condition("AbleToScale", false, "FailedGetScale", &message, now);
            d.error = Some(message);
            return d;
        }
    };
    d.condition(
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let current = scale.replicas;
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut metric_statuses = d.status.current_metrics.clone();
    let mut desired;
    let reason;
    if current == 0 && min != 0 {
        desired = 0;
        reason = String::new();
        d.condition(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
    } else if current > max {
        desired = max;
        reason = "Current number of replicas above Spec.MaxReplicas".to_string();
    } else if current < min {
        desired = min;
        reason = "Current number of replicas below Spec.MinReplicas".to_string();
    } else {
        let computed = match compute_metrics(s, &scale, &mut d) {
            Ok(c) => c,
            Err(err) => {
                d.warn("FailedComputeMetricsReplicas", err.clone());
                d.set_replicas(current, current, None, now);
                d.error = Some(err);
                return d;
            }
        };
        metric_statuses = Some(computed.statuses);
        desired = computed.replicas;
        reason = if desired > current {
            format!("{} above target", computed.name)
        } else if desired < current {
            "All metrics below target".to_string()
        } else {
            String::new()
        };
        let behavior = Behavior::resolve(spec.behavior.as_ref(), settings.downscale_window_s);
        let counts = Counts {
            current,
            desired,
            min,
            max,
        };
        let n = memory.normalize(behavior.as_ref(), counts, settings.downscale_window_s, now);
        d.cond(&n.able_to_scale, "AbleToScale", now);
        d.cond(&n.scaling_limited, "ScalingLimited", now);
        desired = n.replicas;
    }
    let rescale = desired != current;
    if rescale {
        d.rescale = Some((desired, reason));
    }
    d.set_replicas(current, desired, metric_statuses, now);
    d
}

/// The shell reports how the rescale went.
impl Decision {
    pub fn rescaled(
        &mut self,
        hpa: &HorizontalPodAutoscaler,
        memory: &mut Memory,
        prev: i32,
        settings: Settings,
        now_ms: i64,
    ) {
        let Some((new, reason)) = self.rescale.clone() else {
            return;
        };
        let message = format!("the HPA controller was able to update the target scale to {new}");
        self.condition("AbleToScale", true, "SucceededRescale", &message, now_ms);
        self.events.push(Event {
            warning: false,
            reason: "SuccessfulRescale".into(),
            message: format!("New size: {new}; reason: {reason}"),
        });
        self.status.last_scale_time = Some(time(now_ms));
        let behavior = Behavior::resolve(
            hpa.spec.as_ref().and_then(|s| s.behavior.as_ref()),
            settings.downscale_window_s,
        );
        memory.record_scale(behavior.as_ref(), prev, new, now_ms);
    }

    pub fn rescale_failed(&mut self, err: &str, now_ms: i64) {
        let Some((new, reason)) = self.rescale.clone() else {
            return;
        };
        self.warn(
            "FailedRescale",
            format!("New size: {new}; reason: {reason}; error: {err}"),
        );
        let message = format!("the HPA controller was unable to update the target scale: {err}");
        self.condition("AbleToScale", false, "FailedUpdateScale", &message, now_ms);
        self.status.desired_replicas = self.status.current_replicas.unwrap_or(0);
        self.error = Some(message);
    }

    fn warn(&mut self, reason: &str, message: String) {
        self.events.push(Event {
            warning: true,
            reason: reason.into(),
            message,
        });
    }

    fn set_replicas(
        &mut self,
        current: i32,
        desired: i32,
        metrics: Option<Vec<MetricStatus>>,
        _now: i64,
    ) {
        self.status.current_replicas = Some(current);
        self.status.desired_replicas = desired;
        self.status.current_metrics = metrics;
    }

    fn cond(&mut self, c: &Cond, kind: &str, now: i64) {
        self.condition(kind, c.status, c.reason, c.message, now);
    }

    /// Sets a condition as upstream: the transition time moves only when the status changes.
    fn condition(&mut self, kind: &str, status: bool, reason: &str, message: &str, now: i64) {
        let status = if status { "True" } else { "False" };
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        if let Some(c) = conditions.iter_mut().find(|c| c.type_ == kind) {
            if c.status != status {
                c.last_transition_time = Some(time(now));
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            return;
        }
        conditions.push(HorizontalPodAutoscalerCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(time(now)),
        });
    }
}

fn time(ms: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
}

struct Computed {
    replicas: i32,
    name: String,
    statuses: Vec<MetricStatus>,
}

/// Every metric's proposal; the largest wins. Fails when every metric is invalid, or when some
/// are and the valid ones would scale down.
fn compute_metrics(
    s: &Snapshot<'_>,
    scale: &ScaleView,
    d: &mut Decision,
) -> Result<Computed, String> {
    let now = s.now_ms;
    let specs = s
        .hpa
        .spec
        .as_ref()
        .and_then(|s| s.metrics.clone())
        .unwrap_or_default();
    if scale.selector.is_empty() {
        let message = "selector is required";
        d.warn("SelectorRequired", message.into());
        d.condition(
            "ScalingActive",
            false,
            "InvalidSelector",
            "the HPA target's scale is missing a selector",
            now,
        );
        return Err(message.into());
    }
    let mut best: Option<(i32, String)> = None;
    let mut statuses = Vec::new();
    let mut invalid: Vec<(String, String, String)> = Vec::new();
    for spec in &specs {
        match metric_proposal(s, scale.replicas, spec) {
            Ok((replicas, name, status)) => {
                statuses.push(status);
                if best.as_ref().is_none_or(|(r, _)| replicas > *r) {
                    best = Some((replicas, name));
                }
            }
            Err((reason, err, full)) => {
                d.warn(&reason, err.clone());
                invalid.push((reason, err, full));
                statuses.push(MetricStatus {
                    type_: spec.type_.clone(),
                    ..Default::default()
                });
            }
        }
    }
    let replicas = best.as_ref().map_or(-1, |(r, _)| *r);
    if let Some((reason, err, full)) = invalid.first()
        && (invalid.len() >= specs.len() || replicas < scale.replicas)
    {
        let message = format!("the HPA was unable to compute the replica count: {err}");
        d.condition("ScalingActive", false, reason, &message, now);
        return Err(format!(
            "invalid metrics ({} invalid out of {}), first error is: {full}",
            invalid.len(),
            specs.len()
        ));
    }
    let Some((replicas, name)) = best else {
        return Err("no metrics to compute a replica count from".into());
    };
    let message = format!("the HPA was able to successfully calculate a replica count from {name}");
    d.condition("ScalingActive", true, "ValidMetricFound", &message, now);
    Ok(Computed {
        replicas,
        name,
        statuses,
    })
}

/// A failed metric: the event and condition reason, the error, and the error as the summary
/// names it.
type MetricFailure = (String, String, String);

fn metric_proposal(
    s: &Snapshot<'_>,
    current: i32,
    spec: &MetricSpec,
) -> Result<(i32, String, MetricStatus), MetricFailure> {
    let (resource, container, target) = match (
        spec.type_.as_str(),
        &spec.resource,
        &spec.container_resource,
    ) {
        ("Resource", Some(r), _) => (r.name.clone(), None, &r.target),
        ("ContainerResource", _, Some(c)) => (c.name.clone(), Some(c.container.clone()), &c.target),
        (kind, _, _) => {
            let reason = format!("FailedGet{}Metric", kind.trim_end_matches("Resource"));
            let err = format!(
                "unable to get {kind} metric: the custom and external metrics APIs are not served"
            );
            return Err((reason, err.clone(), err));
        }
    };
    let reason = if container.is_some() {
        "FailedGetContainerResourceMetric"
    } else {
        "FailedGetResourceMetric"
    };
    let fail = |err: String| {
        let full = format!("failed to get {resource} resource metric value: {err}");
        (reason.to_string(), err, full)
    };
    let target_kind = match (target.average_utilization, &target.average_value) {
        (_, Some(v)) => Target::AverageValue(k8rs_api::quantity::value(v).map_or(0, calculator::milli)),
        (Some(u), None) => Target::Utilization(u),
        (None, None) => return Err(fail("invalid resource metric source: neither a utilization target nor a value target was set".into())),
    };
    let what = if matches!(target_kind, Target::Utilization(_)) {
        "utilization"
    } else {
        "usage"
    };
    let metrics = match &s.metrics {
        Ok(m) => pod_metrics(m, &resource, container.as_deref()),
        Err(e) => {
            return Err(fail(format!(
                "failed to get {resource} {what}: unable to get metrics for resource {resource}: {e}"
            )));
        }
    };
    if metrics.is_empty() {
        return Err(fail(format!(
            "failed to get {resource} {what}: unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )));
    }
    let input = Input {
        resource: &resource,
        target: target_kind,
        current_replicas: current,
        pods: s.pods,
        metrics: &metrics,
        now_ms: s.now_ms,
    };
    let rec = calculator::replicas(&input)
        .map_err(|e| fail(format!("failed to get {resource} {what}: {e}")))?;
    let name = match (target_kind, &container) {
        (Target::AverageValue(_), None) => format!("{resource} resource"),
        (Target::AverageValue(_), Some(c)) => format!("{resource} container resource {c}"),
        (Target::Utilization(_), None) => {
            format!("{resource} resource utilization (percentage of request)")
        }
        (Target::Utilization(_), Some(c)) => {
            format!("{resource} container resource utilization (percentage of request) {c}")
        }
    };
    let mut current_value = json!({"averageValue": milli_quantity(rec.average_value)});
    if let Some(u) = rec.utilization {
        current_value["averageUtilization"] = u.into();
    }
    let status = match container {
        None => {
            json!({"type": "Resource", "resource": {"name": resource, "current": current_value}})
        }
        Some(c) => {
            json!({"type": "ContainerResource", "containerResource": {"name": resource, "container": c, "current": current_value}})
        }
    };
    let status = serde_json::from_value(status).unwrap_or_default();
    Ok((rec.replicas, name, status))
}

/// Each pod's usage of `resource` (in one container, or summed over all), with its time.
fn pod_metrics(
    m: &BTreeMap<String, PodUsage>,
    resource: &str,
    container: Option<&str>,
) -> BTreeMap<String, PodMetric> {
    m.iter()
        .filter_map(|(pod, u)| {
            let value = match container {
                Some(c) => *u.containers.get(c)?.get(resource)?,
                None => u
                    .containers
                    .values()
                    .map(|c| c.get(resource).copied())
                    .sum::<Option<i64>>()?,
            };
            let metric = PodMetric {
                value,
                timestamp_ms: u.timestamp_ms,
                window_ms: u.window_ms,
            };
            Some((pod.clone(), metric))
        })
        .collect()
}

/// A milli-unit value as a canonical decimal quantity (`250m`, `64`, `2k`).
pub fn milli_quantity(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut v = milli / 1000;
    if v == 0 {
        return "0".into();
    }
    for suffix in ["", "k", "M", "G", "T", "P"] {
        if v % 1000 != 0 {
            return format!("{v}{suffix}");
        }
        v /= 1000;
    }
    format!("{v}E")
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
