//! Upstream's replica calculator for resource metrics, as a pure function: pods, their
//! metrics and requests in, a replica count out. Pods being deleted, failed or pending are
//! ignored; for CPU, pods not yet ready (or whose sample predates readiness) are held out and
//! counted as using nothing when that would scale up; pods without metrics count as using their
//! whole request (or the target) on a scale-down and nothing on a scale-up; a change within the
//! tolerance is no change.
//!
//! All values are in milli-units (millicores, millibytes), as upstream computes them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

/// Changes of at most this ratio are not acted on (`--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;
/// How long after a pod starts its CPU samples may be unreliable.
pub const CPU_INITIALIZATION_PERIOD_MS: i64 = 5 * 60 * 1000;
/// How long after start a pod that has never been ready counts as unready.
pub const INITIAL_READINESS_DELAY_MS: i64 = 30 * 1000;

/// One pod's usage of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodMetric {
    /// Milli-units.
    pub value: i64,
    /// When the sample was taken, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The window it was averaged over.
    pub window_ms: i64,
}

/// What the target is compared to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Average utilization, percent of the pods' requests.
    Utilization(i32),
    /// Average value per pod, milli-units.
    AverageValue(i64),
}

/// A recommendation and the current values it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    /// Percent of request (utilization targets only).
    pub utilization: Option<i32>,
    /// Average usage per pod, milli-units.
    pub average_value: i64,
    /// The oldest sample's time.
    pub timestamp_ms: i64,
}

/// The inputs of one calculation.
#[derive(Debug)]
pub struct Input<'a> {
    pub resource: &'a str,
    pub target: Target,
    pub current_replicas: i32,
    /// The pods the target's selector matches.
    pub pods: &'a [&'a Pod],
    /// Usage by pod name.
    pub metrics: &'a BTreeMap<String, PodMetric>,
    pub now_ms: i64,
}

/// Why no recommendation could be made (upstream's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CalcError(pub String);

/// How the selected pods split.
#[derive(Debug, Default)]
struct Groups {
    ready: i32,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

/// The replica count for `input`, as upstream's `GetResourceReplicas` /
/// `GetRawResourceReplicas`.
pub fn replicas(input: &Input<'_>) -> Result<Recommendation, CalcError> {
    if input.pods.is_empty() {
        return Err(CalcError(
            "no pods returned by selector while calculating replica count".into(),
        ));
    }
    let groups = group_pods(input);
    let mut metrics: BTreeMap<String, i64> = input
        .metrics
        .iter()
        .filter(|(p, _)| !groups.ignored.contains(*p) && !groups.unready.contains(*p))
        .filter(|(p, _)| input.pods.iter().any(|pod| pod_name(pod) == p.as_str()))
        .map(|(p, m)| (p.clone(), m.value))
        .collect();
    if metrics.is_empty() {
        return Err(CalcError(
            "did not receive metrics for targeted pods (pods might be unready)".into(),
        ));
    }
    let requests = match input.target {
        Target::Utilization(_) => pod_requests(input.pods, input.resource)?,
        Target::AverageValue(_) => BTreeMap::new(),
    };
    let timestamp_ms = input
        .metrics
        .values()
        .map(|m| m.timestamp_ms)
        .min()
        .unwrap_or(input.now_ms);
    let (ratio, utilization, average) = usage_ratio(&metrics, &requests, input.target)?;
    let current = input.current_replicas;
    let done = |replicas: i32| Recommendation {
        replicas,
        utilization,
        average_value: average,
        timestamp_ms,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(done(current));
        }
        return Ok(done((ratio * f64::from(groups.ready)).ceil() as i32));
    }
    fill_missing(
        &mut metrics,
        &groups.missing,
        &requests,
        input.target,
        ratio,
    );
    if scale_up_with_unready {
        for pod in &groups.unready {
            metrics.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = usage_ratio(&metrics, &requests, input.target)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(done(current));
    }
    let proposed = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current) {
        return Ok(done(current));
    }
    Ok(done(proposed))
}

/// Missing pods use their whole request (or the target, if higher) on a scale-down, nothing on
/// a scale-up.
fn fill_missing(
    metrics: &mut BTreeMap<String, i64>,
    missing: &BTreeSet<String>,
    requests: &BTreeMap<String, i64>,
    target: Target,
    ratio: f64,
) {
    for pod in missing {
        let value = if ratio < 1.0 {
            match target {
                Target::Utilization(t) => {
                    requests.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(v) => v,
            }
        } else if ratio > 1.0 {
            0
        } else {
            continue;
        };
        metrics.insert(pod.clone(), value);
    }
}

/// The usage ratio to the target, the utilization (percent) and the average per pod.
fn usage_ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: Target,
) -> Result<(f64, Option<i32>, i64), CalcError> {
    match target {
        Target::Utilization(t) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (pod, value) in metrics {
                if let Some(r) = requests.get(pod) {
                    used += value;
                    requested += r;
                    n += 1;
                }
            }
            if requested == 0 || n == 0 {
                return Err(CalcError("no metrics returned matched known pods".into()));
            }
            let utilization = (used * 100 / requested) as i32;
            let ratio = f64::from(utilization) / f64::from(t.max(1));
            Ok((ratio, Some(utilization), used / n))
        }
        Target::AverageValue(v) => {
            let n = metrics.len().max(1) as i64;
            let average = metrics.values().sum::<i64>() / n;
            Ok((average as f64 / v.max(1) as f64, None, average))
        }
    }
}

fn group_pods(input: &Input<'_>) -> Groups {
    let mut g = Groups::default();
    for pod in input.pods {
        let name = pod_name(pod).to_string();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" || phase == "Pending" {
            g.ignored.insert(name);
            continue;
        }
        let Some(metric) = input.metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if input.resource == "cpu" && cpu_unready(pod, metric, input.now_ms) {
            g.unready.insert(name);
            continue;
        }
        g.ready += 1;
    }
    g
}

/// Whether a pod's CPU sample is held out: no Ready condition or start time; within the
/// initialization period, not ready or sampled before a full window since it became ready;
/// after it, not ready and never ready since it started.
fn cpu_unready(pod: &Pod, metric: &PodMetric, now_ms: i64) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let start = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_millisecond());
    let (Some(ready), Some(start)) = (ready, start) else {
        return true;
    };
    let transition = ready
        .last_transition_time
        .as_ref()
        .map_or(0, |t| t.0.as_millisecond());
    let not_ready = ready.status == "False";
    if start + CPU_INITIALIZATION_PERIOD_MS > now_ms {
        not_ready || metric.timestamp_ms < transition + metric.window_ms
    } else {
        not_ready && start + INITIAL_READINESS_DELAY_MS > transition
    }
}

/// Each pod's summed container request of `resource`, milli-units.
fn pod_requests(pods: &[&Pod], resource: &str) -> Result<BTreeMap<String, i64>, CalcError> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let mut total = 0i64;
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(k8rs_api::quantity::value);
            let Some(nanos) = request else {
                return Err(CalcError(format!(
                    "missing request for {resource} in container {} of Pod {}",
                    c.name,
                    pod_name(pod)
                )));
            };
            total += milli(nanos);
        }
        out.insert(pod_name(pod).to_string(), total);
    }
    Ok(out)
}

/// Nano-units to milli-units, rounded up as `Quantity.MilliValue`.
pub fn milli(nanos: i128) -> i64 {
    let m = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
    i64::try_from(m).unwrap_or(i64::MAX)
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

#[cfg(test)]
#[path = "calculator_tests.rs"]
mod tests;
