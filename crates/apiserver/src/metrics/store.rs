//! The metrics the scraper keeps, as metrics-server's storage: the last two points of every node
//! and container series; CPU is the rate between them, memory the last value. A series seen
//! once has no rate yet; a counter that went back (a restart) starts again. Each scrape cycle
//! replaces the whole set, so nodes that failed to answer drop out.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::prom::{Point, Scrape, Usage};

/// Two consecutive points of one series.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Series {
    prev: Option<Point>,
    last: Point,
    memory: f64,
}

impl Series {
    /// The series after `cpu` was read, from what it was.
    fn advance(old: Option<&Series>, cpu: Point, memory: f64) -> Series {
        let prev = match old {
            Some(o) if cpu.ts_ms == o.last.ts_ms => o.prev,
            Some(o) if cpu.ts_ms > o.last.ts_ms && cpu.value >= o.last.value => Some(o.last),
            _ => None,
        };
        let last = match old {
            Some(o) if cpu.ts_ms == o.last.ts_ms => o.last,
            _ => cpu,
        };
        Series { prev, last, memory }
    }

    fn rate(&self) -> Option<Resource> {
        let prev = self.prev?;
        let window_ms = self.last.ts_ms - prev.ts_ms;
        if window_ms <= 0 {
            return None;
        }
        let per_second = (self.last.value - prev.value) / (window_ms as f64 / 1000.0);
        Some(Resource {
            cpu_nanocores: (per_second * 1e9).round().max(0.0) as u64,
            memory_bytes: self.memory.max(0.0) as u64,
            ts_ms: self.last.ts_ms,
            window_ms,
        })
    }
}

/// A computed usage: CPU rate and memory, at a time, over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
    /// The time of the last point, milliseconds since the epoch.
    pub ts_ms: i64,
    /// The time between the two points the rate came from.
    pub window_ms: i64,
}

/// A pod's usage: its containers, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodResource {
    pub ts_ms: i64,
    pub window_ms: i64,
    pub containers: Vec<(String, Resource)>,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: BTreeMap<String, Series>,
    containers: BTreeMap<(String, String, String), Series>,
}

/// The scraped metrics, shared between the scraper (one writer) and the handlers.
#[derive(Clone, Debug, Default)]
pub struct MetricsStore {
    inner: Arc<RwLock<Inner>>,
}

/// One scrape cycle's results: per node name its usage, per container its usage.
#[derive(Debug, Default)]
pub struct Batch {
    pub nodes: BTreeMap<String, Usage>,
    pub containers: BTreeMap<(String, String, String), Usage>,
}

impl Batch {
    /// Adds what an endpoint serving `nodes` answered; node series without a `node` label
    /// belong to its only node.
    pub fn add(&mut self, nodes: &[String], scrape: Scrape) {
        for (label, usage) in scrape.nodes {
            let name = match label {
                Some(n) if nodes.contains(&n) => n,
                None if nodes.len() == 1 => nodes[0].clone(),
                _ => continue,
            };
            self.nodes.insert(name, usage);
        }
        self.containers.extend(scrape.containers);
    }
}

impl MetricsStore {
    /// Replaces the metrics with a cycle's batch, keeping each series' previous point.
    pub fn store(&self, batch: Batch) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.nodes = advance_all(&inner.nodes, batch.nodes);
        inner.containers = advance_all(&inner.containers, batch.containers);
    }

    /// The usage of `node`, once two points were seen.
    pub fn node(&self, node: &str) -> Option<Resource> {
        self.read(|i| i.nodes.get(node).and_then(Series::rate))
    }

    /// The usage of the pod, once every container has a rate.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodResource> {
        self.read(|i| pod_of(i, namespace, name))
    }

    fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }
}

fn advance_all<K: Ord + Clone>(
    old: &BTreeMap<K, Series>,
    new: BTreeMap<K, Usage>,
) -> BTreeMap<K, Series> {
    new.into_iter()
        .filter_map(|(k, u)| {
            let cpu = u.cpu?;
            let memory = u.memory.map_or(0.0, |m| m.value);
            let series = Series::advance(old.get(&k), cpu, memory);
            Some((k, series))
        })
        .collect()
}

fn pod_of(inner: &Inner, namespace: &str, name: &str) -> Option<PodResource> {
    let from = (namespace.to_string(), name.to_string(), String::new());
    let mut containers = Vec::new();
    for ((ns, pod, c), series) in inner.containers.range(from..) {
        if ns != namespace || pod != name {
            break;
        }
        containers.push((c.clone(), series.rate()?));
    }
    let first = containers.first()?.1;
    let ts_ms = containers
        .iter()
        .map(|(_, r)| r.ts_ms)
        .max()
        .unwrap_or(first.ts_ms);
    let window_ms = containers
        .iter()
        .map(|(_, r)| r.window_ms)
        .max()
        .unwrap_or(first.window_ms);
    Some(PodResource {
        ts_ms,
        window_ms,
        containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(cpu: f64, ts_ms: i64, memory: f64) -> Usage {
        Usage {
            cpu: Some(Point { value: cpu, ts_ms }),
            memory: Some(Point {
                value: memory,
                ts_ms,
            }),
        }
    }

    fn batch(node_cpu: f64, c_cpu: f64, ts_ms: i64) -> Batch {
        let mut b = Batch::default();
        let mut s = Scrape::default();
        s.nodes.insert(None, usage(node_cpu, ts_ms, 2048.0));
        let key = ("default".to_string(), "web".to_string(), "app".to_string());
        s.containers.insert(key, usage(c_cpu, ts_ms, 1024.0));
        b.add(&["n1".to_string()], s);
        b
    }

    #[test]
    fn cpu_is_the_rate_between_the_last_two_points() {
        let store = MetricsStore::default();
        store.store(batch(10.0, 1.0, 1_000));
        assert_eq!(store.node("n1"), None, "one point has no rate");
        assert_eq!(store.pod("default", "web"), None);
        store.store(batch(12.0, 1.5, 3_000));
        let node = store.node("n1").expect("a rate");
        assert_eq!(
            node,
            Resource {
                cpu_nanocores: 1_000_000_000,
                memory_bytes: 2048,
                ts_ms: 3_000,
                window_ms: 2_000
            }
        );
        let pod = store.pod("default", "web").expect("pod");
        assert_eq!(pod.containers[0].0, "app");
        assert_eq!(pod.containers[0].1.cpu_nanocores, 250_000_000);
        // The same sample again keeps the rate.
        store.store(batch(12.0, 1.5, 3_000));
        assert_eq!(
            store.node("n1").map(|r| r.cpu_nanocores),
            Some(1_000_000_000)
        );
        // A counter that went back starts again.
        store.store(batch(1.0, 0.1, 4_000));
        assert_eq!(store.node("n1"), None);
        // A node missing from a cycle drops out.
        store.store(Batch::default());
        assert_eq!(store.pod("default", "web"), None);
    }

    #[test]
    fn node_labels_pick_the_node() {
        let mut s = Scrape::default();
        s.nodes.insert(Some("a".into()), usage(1.0, 1, 1.0));
        s.nodes.insert(Some("x".into()), usage(1.0, 1, 1.0));
        s.nodes.insert(None, usage(1.0, 1, 1.0));
        let mut b = Batch::default();
        b.add(&["a".to_string(), "b".to_string()], s);
        assert_eq!(b.nodes.keys().collect::<Vec<_>>(), vec!["a"]);
    }
}
