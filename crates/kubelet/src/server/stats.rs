//! Resource usage for `/metrics/resource` and `/stats/summary`: containers and pods from the
//! CRI (`ListContainerStats`, `ListPodSandboxStats`; pod totals are the sum of their containers
//! when the runtime has no sandbox stats), the node from `/proc/stat` and `/proc/meminfo`.
//!
//! Collecting is [`collect`]; rendering ([`render_prometheus`], [`render_summary`]) is pure.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::cri::{ContainerState, ContainerStats, Cri, labels};

/// USER_HZ: the unit of `/proc/stat`.
const CLOCK_TICKS: u64 = 100;

/// CPU and memory of one container, pod or the node at `timestamp` (ns since the epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub timestamp: i64,
    pub cpu_core_nanos: Option<u64>,
    pub nano_cores: Option<u64>,
    pub working_set_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    /// Creation time (ns since the epoch).
    pub start_time: i64,
    pub usage: Usage,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub start_time: i64,
    pub usage: Usage,
    pub containers: Vec<ContainerUsage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub name: String,
    /// Boot time (ns since the epoch).
    pub start_time: i64,
    pub usage: Usage,
    pub pods: Vec<PodUsage>,
}

fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Busy CPU time (ns) from the aggregate `cpu` line of `/proc/stat`, and the boot time.
pub fn parse_proc_stat(text: &str) -> (Option<u64>, Option<i64>) {
    let mut cpu = None;
    let mut btime = None;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal: busy is all but idle+iowait.
                let busy: u64 = v
                    .iter()
                    .take(8)
                    .enumerate()
                    .filter(|(i, _)| *i != 3 && *i != 4)
                    .map(|(_, x)| *x)
                    .sum();
                cpu = Some(busy.saturating_mul(1_000_000_000 / CLOCK_TICKS));
            }
            Some("btime") => btime = f.next().and_then(|s| s.parse::<i64>().ok()),
            _ => {}
        }
    }
    (cpu, btime.map(|b| b.saturating_mul(1_000_000_000)))
}

/// `(working set, usage, available)` bytes from `/proc/meminfo`: the working set is what is
/// not available (MemTotal - MemAvailable).
pub fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kb * 1024)
        })
    };
    let (total, free, avail) = (field("MemTotal"), field("MemFree"), field("MemAvailable"));
    let ws = total.zip(avail).map(|(t, a)| t.saturating_sub(a));
    let usage = total.zip(free).map(|(t, f)| t.saturating_sub(f));
    (ws, usage, avail)
}

/// The node's own usage now.
pub fn node_usage(name: &str) -> NodeUsage {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (cpu, boot) = parse_proc_stat(&stat);
    let (ws, usage, avail) = parse_meminfo(&meminfo);
    NodeUsage {
        name: name.to_string(),
        start_time: boot.unwrap_or(0),
        usage: Usage {
            timestamp: now_nanos(),
            cpu_core_nanos: cpu,
            nano_cores: None,
            working_set_bytes: ws,
            usage_bytes: usage,
            available_bytes: avail,
        },
        pods: Vec::new(),
    }
}

fn container_usage(s: &ContainerStats) -> Usage {
    let cpu = s.cpu.as_ref();
    let mem = s.memory.as_ref();
    Usage {
        timestamp: cpu.map(|c| c.timestamp).unwrap_or_else(now_nanos),
        cpu_core_nanos: cpu.and_then(|c| c.usage_core_nano_seconds.as_ref().map(|v| v.value)),
        nano_cores: cpu.and_then(|c| c.usage_nano_cores.as_ref().map(|v| v.value)),
        working_set_bytes: mem.and_then(|m| m.working_set_bytes.as_ref().map(|v| v.value)),
        usage_bytes: mem.and_then(|m| m.usage_bytes.as_ref().map(|v| v.value)),
        available_bytes: mem.and_then(|m| m.available_bytes.as_ref().map(|v| v.value)),
    }
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn sum(containers: &[ContainerUsage]) -> Usage {
    containers.iter().fold(Usage::default(), |acc, c| Usage {
        timestamp: acc.timestamp.max(c.usage.timestamp),
        cpu_core_nanos: add(acc.cpu_core_nanos, c.usage.cpu_core_nanos),
        nano_cores: add(acc.nano_cores, c.usage.nano_cores),
        working_set_bytes: add(acc.working_set_bytes, c.usage.working_set_bytes),
        usage_bytes: add(acc.usage_bytes, c.usage.usage_bytes),
        available_bytes: None,
    })
}

/// The pods' usage from the runtime: running containers only, grouped by ready sandbox.
pub async fn pod_usage(cri: &dyn Cri) -> Result<Vec<PodUsage>, crate::cri::CriError> {
    let sandboxes = cri.list_pod_sandboxes(HashMap::new()).await?;
    let containers = cri.list_containers(HashMap::new()).await?;
    let stats = cri.list_container_stats().await?;
    let sandbox_stats = cri.list_pod_sandbox_stats().await.unwrap_or_default();
    let by_id: HashMap<&str, &ContainerStats> = stats
        .iter()
        .filter_map(|s| Some((s.attributes.as_ref()?.id.as_str(), s)))
        .collect();
    let mut pods = Vec::new();
    for sb in sandboxes
        .iter()
        .filter(|s| s.state == crate::cri::PodSandboxState::SandboxReady as i32)
    {
        let label = |k: &str| sb.labels.get(k).cloned().unwrap_or_default();
        let mut pod = PodUsage {
            namespace: label(labels::POD_NAMESPACE),
            name: label(labels::POD_NAME),
            uid: label(labels::POD_UID),
            start_time: sb.created_at,
            ..Default::default()
        };
        for c in containers.iter().filter(|c| {
            c.pod_sandbox_id == sb.id && c.state == ContainerState::ContainerRunning as i32
        }) {
            pod.containers.push(ContainerUsage {
                name: c
                    .labels
                    .get(labels::CONTAINER_NAME)
                    .cloned()
                    .unwrap_or_default(),
                start_time: c.created_at,
                usage: by_id
                    .get(c.id.as_str())
                    .map(|s| container_usage(s))
                    .unwrap_or_default(),
            });
        }
        pod.containers.sort_by(|a, b| a.name.cmp(&b.name));
        let from_sandbox = sandbox_stats
            .iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == sb.id))
            .and_then(|s| s.linux.as_ref())
            .map(|l| {
                container_usage(&ContainerStats {
                    cpu: l.cpu,
                    memory: l.memory,
                    ..Default::default()
                })
            })
            .filter(|u| u.cpu_core_nanos.is_some());
        pod.usage = from_sandbox.unwrap_or_else(|| sum(&pod.containers));
        pods.push(pod);
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(pods)
}

/// The node's and its pods' usage now.
pub async fn collect(cri: &dyn Cri, node: &str) -> Result<NodeUsage, crate::cri::CriError> {
    let mut n = node_usage(node);
    n.pods = pod_usage(cri).await?;
    Ok(n)
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    lines: Vec<String>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            lines: Vec::new(),
        }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: f64, ts_nanos: i64) {
        let mut line = self.name.to_string();
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(line, "{{{}}}", parts.join(","));
        }
        let _ = write!(line, " {value} {}", ts_nanos / 1_000_000);
        self.lines.push(line);
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} [STABLE] {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// `/metrics/resource` in the Prometheus text format (0.0.4), families sorted by name, node
/// series without labels, as upstream's kubelet (and the hollow nodes) write it.
pub fn render_prometheus(n: &NodeUsage) -> String {
    let mut c_cpu = Family::new(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    let mut c_mem = Family::new(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
    );
    let mut c_start = Family::new(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    let mut n_cpu = Family::new(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    let mut n_mem = Family::new(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
    );
    let mut p_cpu = Family::new(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    let mut p_mem = Family::new(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
    );
    let ts = n.usage.timestamp;
    if let Some(cpu) = n.usage.cpu_core_nanos {
        n_cpu.push(&[], seconds(cpu), ts);
    }
    if let Some(mem) = n.usage.working_set_bytes {
        n_mem.push(&[], mem as f64, ts);
    }
    for p in &n.pods {
        let pod = [
            ("namespace", p.namespace.as_str()),
            ("pod", p.name.as_str()),
        ];
        if let Some(cpu) = p.usage.cpu_core_nanos {
            p_cpu.push(&pod, seconds(cpu), p.usage.timestamp);
        }
        if let Some(mem) = p.usage.working_set_bytes {
            p_mem.push(&pod, mem as f64, p.usage.timestamp);
        }
        for c in &p.containers {
            let labels = [
                ("container", c.name.as_str()),
                ("namespace", p.namespace.as_str()),
                ("pod", p.name.as_str()),
            ];
            if let Some(cpu) = c.usage.cpu_core_nanos {
                c_cpu.push(&labels, seconds(cpu), c.usage.timestamp);
            }
            if let Some(mem) = c.usage.working_set_bytes {
                c_mem.push(&labels, mem as f64, c.usage.timestamp);
            }
            let start = c.start_time as f64 / 1e9;
            c_start.push(&labels, start, c.usage.timestamp);
        }
    }
    let mut out = String::new();
    for f in [c_cpu, c_mem, c_start, n_cpu, n_mem, p_cpu, p_mem] {
        f.write(&mut out);
    }
    out.push_str("# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n");
    out.push_str("# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n");
    out
}

fn time(nanos: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn cpu_json(u: &Usage) -> Value {
    let mut v = json!({"time": time(u.timestamp)});
    if let Some(x) = u.nano_cores {
        v["usageNanoCores"] = json!(x);
    }
    if let Some(x) = u.cpu_core_nanos {
        v["usageCoreNanoSeconds"] = json!(x);
    }
    v
}

fn memory_json(u: &Usage) -> Value {
    let mut v = json!({"time": time(u.timestamp)});
    for (k, x) in [
        ("availableBytes", u.available_bytes),
        ("usageBytes", u.usage_bytes),
        ("workingSetBytes", u.working_set_bytes),
    ] {
        if let Some(x) = x {
            v[k] = json!(x);
        }
    }
    v
}

/// `/stats/summary` in upstream's Summary API shape (node and pods, CPU and memory).
pub fn render_summary(n: &NodeUsage) -> Value {
    let pods: Vec<Value> = n
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "startTime": time(c.start_time),
                        "cpu": cpu_json(&c.usage),
                        "memory": memory_json(&c.usage),
                    })
                })
                .collect();
            json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": time(p.start_time),
                "containers": containers,
                "cpu": cpu_json(&p.usage),
                "memory": memory_json(&p.usage),
            })
        })
        .collect();
    json!({
        "node": {
            "nodeName": n.name,
            "startTime": time(n.start_time),
            "cpu": cpu_json(&n.usage),
            "memory": memory_json(&n.usage),
        },
        "pods": pods,
    })
}
