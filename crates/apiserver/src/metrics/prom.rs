//! Reading the kubelet's `/metrics/resource` (Prometheus text format 0.0.4) into points: the
//! node series and the container series, each with its millisecond timestamp. Other families
//! (pod totals, start times, scrape errors) are not needed: pod usage is the sum of its
//! containers, as metrics-server computes it.

use std::collections::BTreeMap;

/// A counter or gauge value with the time it was taken (milliseconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub value: f64,
    pub ts_ms: i64,
}

/// The usage of a node or a container at one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Cumulative CPU in core-seconds.
    pub cpu: Option<Point>,
    /// Working set in bytes.
    pub memory: Option<Point>,
}

/// What one scrape of an endpoint says. Node series are keyed by their `node` label (`None`
/// when the endpoint serves one node and leaves it out); containers by namespace, pod and
/// container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub nodes: BTreeMap<Option<String>, Usage>,
    pub containers: BTreeMap<(String, String, String), Usage>,
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Parses the text; samples without a timestamp are taken at `now_ms`.
pub fn parse(text: &str, now_ms: i64) -> Result<Scrape, ParseError> {
    let mut scrape = Scrape::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).map_err(|reason| ParseError {
            line: i + 1,
            reason,
        })?;
        let point = Point {
            value: sample.value,
            ts_ms: sample.ts_ms.unwrap_or(now_ms),
        };
        if !point.value.is_finite() {
            continue;
        }
        record(&mut scrape, &sample, point);
    }
    Ok(scrape)
}

fn record(scrape: &mut Scrape, s: &Sample<'_>, point: Point) {
    let label = |k: &str| {
        s.labels
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    let slot = match s.name {
        "node_cpu_usage_seconds_total" | "node_memory_working_set_bytes" => {
            scrape.nodes.entry(label("node")).or_default()
        }
        "container_cpu_usage_seconds_total" | "container_memory_working_set_bytes" => {
            let (Some(ns), Some(pod), Some(c)) =
                (label("namespace"), label("pod"), label("container"))
            else {
                return;
            };
            scrape.containers.entry((ns, pod, c)).or_default()
        }
        _ => return,
    };
    if s.name.ends_with("_cpu_usage_seconds_total") {
        slot.cpu = Some(point);
    } else {
        slot.memory = Some(point);
    }
}

type Labels<'a> = Vec<(&'a str, String)>;

struct Sample<'a> {
    name: &'a str,
    labels: Labels<'a>,
    value: f64,
    ts_ms: Option<i64>,
}

fn parse_line(line: &str) -> Result<Sample<'_>, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    let ts_ms = match fields.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("bad timestamp {t:?}"))?,
        ),
        None => None,
    };
    Ok(Sample {
        name,
        labels,
        value,
        ts_ms,
    })
}

/// Parses `k="v",...}` and returns the labels and what follows the brace.
fn parse_labels(mut s: &str) -> Result<(Labels<'_>, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without a value")?;
        let key = s[..eq].trim();
        let after = s[eq + 1..].trim_start();
        let body = after.strip_prefix('"').ok_or("label value not quoted")?;
        let (value, used) = unquote(body)?;
        labels.push((key, value));
        s = body[used..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// Reads an escaped label value up to its closing quote: the value and the bytes used
/// (the quote included).
fn unquote(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value".into())
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 12.5 1700000000000
container_cpu_usage_seconds_total{container="side \"car\"",namespace="default",pod="web-1"} 0.25 1700000000000
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web-1"} 6.7108864e+07 1700000000001
container_start_time_seconds{container="app",namespace="default",pod="web-1"} 1.7e+09 1700000000000
node_cpu_usage_seconds_total 100.5 1700000000002
node_memory_working_set_bytes 1.073741824e+09 1700000000002
pod_cpu_usage_seconds_total{namespace="default",pod="web-1"} 12.75 1700000000000
resource_scrape_error 0
"#;

    #[test]
    fn parses_the_kubelet_resource_metrics() {
        let s = parse(KUBELET, 5).expect("parses");
        let node = s.nodes[&None];
        assert_eq!(
            node.cpu,
            Some(Point {
                value: 100.5,
                ts_ms: 1_700_000_000_002
            })
        );
        assert_eq!(node.memory.map(|p| p.value), Some(1_073_741_824.0));
        let app = s.containers[&("default".into(), "web-1".into(), "app".into())];
        assert_eq!(app.cpu.map(|p| p.value), Some(12.5));
        assert_eq!(app.memory.map(|p| p.ts_ms), Some(1_700_000_000_001));
        let side = s.containers[&("default".into(), "web-1".into(), "side \"car\"".into())];
        assert_eq!(side.cpu.map(|p| p.value), Some(0.25));
        assert_eq!(side.memory, None);
        assert_eq!(s.containers.len(), 2);
    }

    #[test]
    fn node_labels_and_missing_timestamps() {
        let text = "node_cpu_usage_seconds_total{node=\"a\"} 1\nnode_cpu_usage_seconds_total{node=\"b\"} 2 7\n";
        let s = parse(text, 42).expect("parses");
        assert_eq!(s.nodes[&Some("a".into())].cpu.map(|p| p.ts_ms), Some(42));
        assert_eq!(s.nodes[&Some("b".into())].cpu.map(|p| p.ts_ms), Some(7));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "node_cpu_usage_seconds_total",
            "x{a=\"b} 1",
            "x{a=b} 1",
            "x one",
            "x 1 t",
        ] {
            assert!(parse(bad, 0).is_err(), "{bad}");
        }
        assert!(
            parse("x NaN\n\n# comment\n", 0)
                .expect("parses")
                .nodes
                .is_empty()
        );
    }
}
