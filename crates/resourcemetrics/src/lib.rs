//! The kubelet's `/metrics/resource` format: render and parse.
//!
//! This Prometheus text (format 0.0.4) is the contract between a node and the API server: the
//! kubelet (and the hollow nodes that simulate it) render it with [`render`], the API server's
//! metrics scraper reads it back with [`parse`]. Families, their help, types and label order are
//! upstream kubelet's (`pkg/kubelet/metrics/collectors/resource_metrics.go`).
//!
//! - [`render`]: [`NodeMetrics`] (a node, its pods and their containers) to text, families
//!   sorted by name as the kubelet's registry writes them.
//! - [`parse`]: text to a [`Scrape`] of the node and container series (what metrics-server
//!   keeps; pod totals are the sum of their containers).
//!
//! Pure functions over plain data: this crate depends on nothing of ours and on nothing that
//! does I/O (only `thiserror`).

mod parse;
mod render;

pub use parse::{ParseError, Scrape, parse};
pub use render::{ContainerMetrics, NodeMetrics, PodMetrics, render};

/// The path the kubelet serves the resource metrics on.
pub const PATH: &str = "/metrics/resource";
/// The content type of the resource metrics (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metric families of the format.
pub mod families {
    /// Cumulative CPU of a container, core-seconds (counter).
    pub const CONTAINER_CPU: &str = "container_cpu_usage_seconds_total";
    /// Working set of a container, bytes (gauge).
    pub const CONTAINER_MEMORY: &str = "container_memory_working_set_bytes";
    /// Start time of a container, seconds since the epoch (gauge).
    pub const CONTAINER_START: &str = "container_start_time_seconds";
    /// Cumulative CPU of the node, core-seconds (counter).
    pub const NODE_CPU: &str = "node_cpu_usage_seconds_total";
    /// Working set of the node, bytes (gauge).
    pub const NODE_MEMORY: &str = "node_memory_working_set_bytes";
    /// Cumulative CPU of a pod, core-seconds (counter).
    pub const POD_CPU: &str = "pod_cpu_usage_seconds_total";
    /// Working set of a pod, bytes (gauge).
    pub const POD_MEMORY: &str = "pod_memory_working_set_bytes";
    /// 1 if collecting failed, 0 otherwise (gauge).
    pub const SCRAPE_ERROR: &str = "resource_scrape_error";
}

/// A counter or gauge value with the time it was taken (milliseconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub value: f64,
    pub ts_ms: i64,
}

impl Point {
    /// `value` taken at `ts_ms`.
    pub fn new(value: f64, ts_ms: i64) -> Point {
        Point { value, ts_ms }
    }
}

/// The usage of a node, pod or container at one time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Cumulative CPU in core-seconds.
    pub cpu: Option<Point>,
    /// Working set in bytes.
    pub memory: Option<Point>,
}

#[cfg(test)]
mod tests;
