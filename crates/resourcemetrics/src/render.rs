//! Rendering the format: one pass over the nodes collecting each family's samples, then the
//! families written in name order, each with its `# HELP` and `# TYPE` lines.

use std::fmt::Write as _;

use crate::{Point, Usage, families};

/// A node's series, with its pods'. Series whose point is `None` are left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeMetrics {
    /// The `node` label of the node series: `None` (upstream's form) when the endpoint serves
    /// one node, the node's name when it serves many (the hollow nodes).
    pub node: Option<String>,
    pub usage: Usage,
    pub pods: Vec<PodMetrics>,
}

/// A pod's series, with its containers'.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodMetrics {
    pub namespace: String,
    pub name: String,
    pub usage: Usage,
    pub containers: Vec<ContainerMetrics>,
}

/// A container's series.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerMetrics {
    pub name: String,
    pub usage: Usage,
    /// The container's start time in seconds since the epoch, taken at `ts_ms`.
    pub start_time: Point,
}

/// One metric family: help, type and sample lines.
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

    fn push(&mut self, labels: &[(&str, &str)], point: Option<Point>) {
        let Some(point) = point else {
            return;
        };
        let mut line = self.name.to_string();
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(line, "{{{}}}", parts.join(","));
        }
        let _ = write!(line, " {} {}", point.value, point.ts_ms);
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

/// The families of the format in name order (the order they are written in).
struct Families {
    c_cpu: Family,
    c_mem: Family,
    c_start: Family,
    n_cpu: Family,
    n_mem: Family,
    p_cpu: Family,
    p_mem: Family,
}

impl Families {
    fn new() -> Families {
        Families {
            c_cpu: Family::new(
                families::CONTAINER_CPU,
                "counter",
                "Cumulative cpu time consumed by the container in core-seconds",
            ),
            c_mem: Family::new(
                families::CONTAINER_MEMORY,
                "gauge",
                "Current working set of the container in bytes",
            ),
            c_start: Family::new(
                families::CONTAINER_START,
                "gauge",
                "Start time of the container since unix epoch in seconds",
            ),
            n_cpu: Family::new(
                families::NODE_CPU,
                "counter",
                "Cumulative cpu time consumed by the node in core-seconds",
            ),
            n_mem: Family::new(
                families::NODE_MEMORY,
                "gauge",
                "Current working set of the node in bytes",
            ),
            p_cpu: Family::new(
                families::POD_CPU,
                "counter",
                "Cumulative cpu time consumed by the pod in core-seconds",
            ),
            p_mem: Family::new(
                families::POD_MEMORY,
                "gauge",
                "Current working set of the pod in bytes",
            ),
        }
    }

    fn add_node(&mut self, n: &NodeMetrics) {
        let labels: &[(&str, &str)] = match &n.node {
            Some(name) => &[("node", name.as_str())],
            None => &[],
        };
        self.n_cpu.push(labels, n.usage.cpu);
        self.n_mem.push(labels, n.usage.memory);
        for p in &n.pods {
            self.add_pod(p);
        }
    }

    fn add_pod(&mut self, p: &PodMetrics) {
        let pod = [
            ("namespace", p.namespace.as_str()),
            ("pod", p.name.as_str()),
        ];
        self.p_cpu.push(&pod, p.usage.cpu);
        self.p_mem.push(&pod, p.usage.memory);
        for c in &p.containers {
            let labels = [
                ("container", c.name.as_str()),
                ("namespace", p.namespace.as_str()),
                ("pod", p.name.as_str()),
            ];
            self.c_cpu.push(&labels, c.usage.cpu);
            self.c_mem.push(&labels, c.usage.memory);
            self.c_start.push(&labels, Some(c.start_time));
        }
    }

    fn write(self, out: &mut String) {
        for f in [
            self.c_cpu,
            self.c_mem,
            self.c_start,
            self.n_cpu,
            self.n_mem,
            self.p_cpu,
            self.p_mem,
        ] {
            f.write(out);
        }
    }
}

/// The Prometheus text of `/metrics/resource` for `nodes` (their series in this order within
/// each family), ending with `resource_scrape_error 0`.
pub fn render(nodes: &[NodeMetrics]) -> String {
    let mut all = Families::new();
    for n in nodes {
        all.add_node(n);
    }
    let mut out = String::new();
    all.write(&mut out);
    let error = families::SCRAPE_ERROR;
    let _ = writeln!(
        out,
        "# HELP {error} [STABLE] 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(out, "# TYPE {error} gauge\n{error} 0");
    out
}
