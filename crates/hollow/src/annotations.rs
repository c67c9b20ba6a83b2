//! What a pod's annotations ask of its hollow node: how long its containers run and with which
//! exit code (for Jobs), and the resource usage it reports (for metrics).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

/// How long the containers run before they exit, as a Go duration (`5s`, `1m30s`, `250ms`).
pub const RUN_DURATION: &str = "hollow.k8rs.io/run-duration";
/// The exit code the containers end with (default 0).
pub const EXIT_CODE: &str = "hollow.k8rs.io/exit-code";
/// The CPU the pod reports using, as a quantity (`250m`).
pub const CPU_USAGE: &str = "hollow.k8rs.io/cpu-usage";
/// The memory the pod reports using, as a quantity (`64Mi`).
pub const MEMORY_USAGE: &str = "hollow.k8rs.io/memory-usage";

/// A pod's reported resource usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// CPU in billionths of a core.
    pub cpu_nanocores: u64,
    /// Memory working set in bytes.
    pub memory_bytes: u64,
}

/// The usage `pod`'s annotations report, or `None` when it sets neither (or only bad values).
pub fn usage(pod: &Pod) -> Option<PodUsage> {
    let cpu = annotation(pod, CPU_USAGE).and_then(quantity_nanos);
    let memory = annotation(pod, MEMORY_USAGE)
        .and_then(quantity_nanos)
        .map(|n| n / 1_000_000_000);
    if cpu.is_none() && memory.is_none() {
        return None;
    }
    Some(PodUsage {
        cpu_nanocores: cpu.unwrap_or(0),
        memory_bytes: memory.unwrap_or(0),
    })
}

/// How a pod's containers end: after `after`, with `exit_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub after: Duration,
    pub exit_code: i32,
}

/// The exit the pod's annotations ask for; `None` when its containers run until deleted.
pub fn exit(pod: &Pod) -> Option<Exit> {
    let raw = annotation(pod, RUN_DURATION)?;
    let Some(after) = parse_go_duration(raw) else {
        tracing::warn!(pod = ?pod.metadata.name, value = raw, "bad {RUN_DURATION}; runs until deleted");
        return None;
    };
    let exit_code = match annotation(pod, EXIT_CODE) {
        None => 0,
        Some(raw) => raw.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(pod = ?pod.metadata.name, value = raw, "bad {EXIT_CODE}; exits with 1");
            1
        }),
    };
    Some(Exit { after, exit_code })
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn quantity_nanos(q: &str) -> Option<u64> {
    let nanos = k8rs_api::quantity::nano_value(q)?;
    u64::try_from(nanos.max(0)).ok()
}

/// Parses a Go duration: a sequence of decimal numbers with units `ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h` (`1h2m3.5s`). Negative durations are refused.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        pod
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("5s", 5_000),
            ("0", 0),
            ("250ms", 250),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("1.5s", 1_500),
            ("2000us", 2),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_go_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "5", "s", "-5s", "5x", "1..2s", "+"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn exit_from_annotations() {
        assert_eq!(exit(&pod(&[])), None);
        assert_eq!(
            exit(&pod(&[(RUN_DURATION, "5s")])),
            Some(Exit {
                after: Duration::from_secs(5),
                exit_code: 0
            })
        );
        assert_eq!(
            exit(&pod(&[(RUN_DURATION, "1s"), (EXIT_CODE, "3")])),
            Some(Exit {
                after: Duration::from_secs(1),
                exit_code: 3
            })
        );
        assert_eq!(exit(&pod(&[(RUN_DURATION, "soon")])), None);
        assert_eq!(
            exit(&pod(&[(RUN_DURATION, "1s"), (EXIT_CODE, "x")])).map(|e| e.exit_code),
            Some(1)
        );
    }

    #[test]
    fn usage_from_annotations() {
        assert_eq!(usage(&pod(&[])), None);
        assert_eq!(
            usage(&pod(&[(CPU_USAGE, "250m"), (MEMORY_USAGE, "64Mi")])),
            Some(PodUsage {
                cpu_nanocores: 250_000_000,
                memory_bytes: 64 << 20
            })
        );
        assert_eq!(
            usage(&pod(&[(CPU_USAGE, "2")])),
            Some(PodUsage {
                cpu_nanocores: 2_000_000_000,
                memory_bytes: 0
            })
        );
        assert_eq!(usage(&pod(&[(CPU_USAGE, "lots")])), None);
    }
}
