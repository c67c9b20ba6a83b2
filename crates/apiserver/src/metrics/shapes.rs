//! The JSON of `metrics.k8s.io/v1beta1` objects exactly as metrics-server writes them:
//! `NodeMetrics` and `PodMetrics`, usage in canonical quantities (`"123456n"`, `"12345Ki"`),
//! `window` as a Go duration, times as RFC 3339 seconds.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::store::{PodResource, Resource};

pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// A CPU quantity in the canonical decimal form of `nanocores` billionths: `0`, `250m`,
/// `1500u`, `123456789n`.
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    let mut value = nanocores;
    for suffix in ["n", "u", "m"] {
        if !value.is_multiple_of(1000) {
            return format!("{value}{suffix}");
        }
        value /= 1000;
    }
    value.to_string()
}

/// A memory quantity in the canonical binary form: `12345Ki`, `64Mi`, `1000` (not a
/// multiple of 1024).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut value = bytes;
    let mut suffix = "";
    for next in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = next;
    }
    format!("{value}{suffix}")
}

/// A duration as Go's `time.Duration.String()` writes it: `15s`, `1.5s`, `500ms`, `1m0.5s`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut seconds = s.to_string();
    if frac != 0 {
        let f = format!("{frac:03}");
        seconds = format!("{s}.{}", f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// Milliseconds since the epoch as `metav1.Time`.
pub fn time(ts_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn usage(r: &Resource) -> Value {
    json!({"cpu": cpu_quantity(r.cpu_nanocores), "memory": memory_quantity(r.memory_bytes)})
}

/// A `NodeMetrics` object.
pub fn node_metrics(
    name: &str,
    labels: &BTreeMap<String, String>,
    r: &Resource,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "creationTimestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "labels": labels,
        },
        "timestamp": time(r.ts_ms),
        "window": go_duration(r.window_ms),
        "usage": usage(r),
    })
}

/// A `PodMetrics` object.
pub fn pod_metrics(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    r: &PodResource,
    now: DateTime<Utc>,
) -> Value {
    let containers: Vec<Value> = r
        .containers
        .iter()
        .map(|(c, u)| json!({"name": c, "usage": usage(u)}))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "labels": labels,
        },
        "timestamp": time(r.ts_ms),
        "window": go_duration(r.window_ms),
        "containers": containers,
    })
}

/// A list of `kind` items.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn quantities_are_canonical() {
        let cpu = [
            (0, "0"),
            (123_456, "123456n"),
            (250_000_000, "250m"),
            (1_500_000, "1500u"),
            (2_000_000_000, "2"),
            (1_000_000_001, "1000000001n"),
        ];
        for (n, s) in cpu {
            assert_eq!(cpu_quantity(n), s);
        }
        let mem = [
            (0, "0"),
            (1000, "1000"),
            (12_641_280, "12345Ki"),
            (64 << 20, "64Mi"),
            (3 << 30, "3Gi"),
        ];
        for (n, s) in mem {
            assert_eq!(memory_quantity(n), s);
        }
    }

    #[test]
    fn windows_are_go_durations() {
        let cases = [
            (15_000, "15s"),
            (15_012, "15.012s"),
            (1_500, "1.5s"),
            (500, "500ms"),
            (60_500, "1m0.5s"),
            (3_600_000, "1h0m0s"),
        ];
        for (ms, s) in cases {
            assert_eq!(go_duration(ms), s);
        }
    }

    #[test]
    fn shapes_match_metrics_server() {
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap_or_default();
        let r = Resource {
            cpu_nanocores: 123_456,
            memory_bytes: 12_641_280,
            ts_ms: 1_700_000_000_000,
            window_ms: 15_000,
        };
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let node = node_metrics("n1", &labels, &r, now);
        assert_eq!(node["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(node["window"], "15s");
        assert_eq!(node["usage"]["cpu"], "123456n");
        assert_eq!(node["usage"]["memory"], "12345Ki");
        assert_eq!(node["metadata"]["labels"]["app"], "web");
        let pod = PodResource {
            ts_ms: r.ts_ms,
            window_ms: r.window_ms,
            containers: vec![("app".into(), r)],
        };
        let pod = pod_metrics("default", "web-1", &labels, &pod, now);
        assert_eq!(pod["kind"], "PodMetrics");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["containers"][0]["name"], "app");
        assert_eq!(pod["containers"][0]["usage"]["cpu"], "123456n");
        // kubectl and the HPA parse these quantities.
        let q: Quantity = serde_json::from_value(pod["containers"][0]["usage"]["memory"].clone())
            .expect("a quantity");
        assert_eq!(q.0, "12345Ki");
    }
}
