//! Reading the format back into points: the node series and the container series, each with
//! its millisecond timestamp. Other families (pod totals, start times, scrape errors) are not
//! kept: pod usage is the sum of its containers, as metrics-server computes it.

use std::collections::BTreeMap;

use crate::{Point, Usage, families};

/// What one scrape of an endpoint says. Node series are keyed by their `node` label (`None`
/// when the endpoint serves one node and leaves it out); containers by namespace, pod and
/// container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub nodes: BTreeMap<Option<String>, Usage>,
    pub containers: BTreeMap<(String, String, String), Usage>,
}

/// Why a line could not be read: the endpoint does not speak the format (skip it).
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
        families::NODE_CPU | families::NODE_MEMORY => {
            scrape.nodes.entry(label("node")).or_default()
        }
        families::CONTAINER_CPU | families::CONTAINER_MEMORY => {
            let (Some(ns), Some(pod), Some(c)) =
                (label("namespace"), label("pod"), label("container"))
            else {
                return;
            };
            scrape.containers.entry((ns, pod, c)).or_default()
        }
        _ => return,
    };
    if s.name == families::NODE_CPU || s.name == families::CONTAINER_CPU {
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
