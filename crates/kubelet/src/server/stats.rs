//! Resource usage for `/metrics/resource` and `/stats/summary`: containers and pods from the
//! CRI (`ListContainerStats`, `ListPodSandboxStats`; pod totals are the sum of their containers
//! when the runtime has no sandbox stats), the node from `/proc/stat` and `/proc/meminfo`.
//!
//! Collecting is [`collect`]; rendering ([`render_prometheus`], [`render_summary`]) is pure.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use k8rs_resourcemetrics as resourcemetrics;
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

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// The resource metrics of a usage: CPU in core-seconds and the working set, each taken at
/// the usage's timestamp.
fn metrics_usage(u: &Usage) -> resourcemetrics::Usage {
    let at = |value: f64| resourcemetrics::Point::new(value, u.timestamp / 1_000_000);
    resourcemetrics::Usage {
        cpu: u.cpu_core_nanos.map(|cpu| at(seconds(cpu))),
        memory: u.working_set_bytes.map(|mem| at(mem as f64)),
    }
}

/// The node's series for `/metrics/resource`: node series without labels, as upstream's
/// kubelet writes them.
pub fn resource_metrics(n: &NodeUsage) -> resourcemetrics::NodeMetrics {
    let pods = n.pods.iter().map(|p| resourcemetrics::PodMetrics {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        usage: metrics_usage(&p.usage),
        containers: p
            .containers
            .iter()
            .map(|c| resourcemetrics::ContainerMetrics {
                name: c.name.clone(),
                usage: metrics_usage(&c.usage),
                start_time: resourcemetrics::Point::new(
                    c.start_time as f64 / 1e9,
                    c.usage.timestamp / 1_000_000,
                ),
            })
            .collect(),
    });
    resourcemetrics::NodeMetrics {
        node: None,
        usage: metrics_usage(&n.usage),
        pods: pods.collect(),
    }
}

/// `/metrics/resource` in the Prometheus text format (0.0.4).
pub fn render_prometheus(n: &NodeUsage) -> String {
    resourcemetrics::render(&[resource_metrics(n)])
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
