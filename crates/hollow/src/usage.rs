//! The resource usage hollow pods report (from their annotations), shared with whoever serves
//! metrics: one writer (the pod loop), cheap readers.
//!
//! CPU is reported as a rate but served, as a kubelet does, as cumulative core-seconds: the
//! table integrates each pod's rate over time, so that the rate between two scrapes is the rate
//! that was set. A node uses the sum of its pods plus a small base; its counter never goes back
//! when a pod goes away.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use crate::annotations::PodUsage;
use crate::kubelet::PodKey;

/// The CPU a hollow node uses besides its pods (its "system" usage), in nanocores.
pub const NODE_BASE_CPU_NANOCORES: u64 = 50_000_000;
/// The memory a hollow node uses besides its pods, in bytes.
pub const NODE_BASE_MEMORY_BYTES: u64 = 128 << 20;

/// One container's sample.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSample {
    pub name: String,
    /// Cumulative CPU in core-seconds.
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
}

/// One pod's sample: its containers share the pod's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSample {
    pub namespace: String,
    pub name: String,
    /// When the pod's containers started (first seen by this process).
    pub start_time: SystemTime,
    /// Cumulative CPU in core-seconds.
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub containers: Vec<ContainerSample>,
}

/// One node's sample, with its reporting pods sorted by namespace and name.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSample {
    /// Cumulative CPU in core-seconds.
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub pods: Vec<PodSample>,
}

#[derive(Debug)]
struct PodEntry {
    node: String,
    usage: PodUsage,
    containers: Vec<String>,
    start_time: SystemTime,
    /// Core-seconds used up to `since`.
    cpu_seconds: f64,
    since: Instant,
}

impl PodEntry {
    fn cpu_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        self.cpu_seconds + elapsed * self.usage.cpu_nanocores as f64 / 1e9
    }
}

#[derive(Debug)]
struct NodeEntry {
    /// Core-seconds of pods that went away.
    retired_cpu: f64,
    since: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<PodKey, PodEntry>,
    nodes: HashMap<String, NodeEntry>,
}

/// Usage per pod, and the node each pod runs on.
#[derive(Clone, Debug, Default)]
pub struct UsageTable {
    inner: Arc<RwLock<Inner>>,
}

impl UsageTable {
    /// The usage `namespace/name` reports, if it reports any.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodUsage> {
        let key = (namespace.to_string(), name.to_string());
        self.read(|m| m.pods.get(&key).map(|e| e.usage))
    }

    /// Every reporting pod on `node`: namespace, name and usage, sorted.
    pub fn node(&self, node: &str) -> Vec<(String, String, PodUsage)> {
        let mut pods: Vec<_> = self.read(|m| {
            m.pods
                .iter()
                .filter(|(_, e)| e.node == node)
                .map(|((ns, name), e)| (ns.clone(), name.clone(), e.usage))
                .collect()
        });
        pods.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        pods
    }

    /// The cumulative sample of `node` and its pods now.
    pub fn sample(&self, node: &str) -> NodeSample {
        self.sample_at(node, Instant::now())
    }

    pub(crate) fn sample_at(&self, node: &str, now: Instant) -> NodeSample {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let entry = inner.nodes.entry(node.to_string()).or_insert(NodeEntry {
            retired_cpu: 0.0,
            since: now,
        });
        let base_elapsed = now.saturating_duration_since(entry.since).as_secs_f64();
        let mut cpu_seconds =
            entry.retired_cpu + base_elapsed * NODE_BASE_CPU_NANOCORES as f64 / 1e9;
        let mut memory_bytes = NODE_BASE_MEMORY_BYTES;
        let mut pods: Vec<PodSample> = inner
            .pods
            .iter()
            .filter(|(_, e)| e.node == node)
            .map(|((ns, name), e)| pod_sample(ns, name, e, now))
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for p in &pods {
            cpu_seconds += p.cpu_seconds;
            memory_bytes += p.memory_bytes;
        }
        NodeSample {
            cpu_seconds,
            memory_bytes,
            pods,
        }
    }

    pub(crate) fn set(
        &self,
        key: &PodKey,
        node: &str,
        usage: Option<PodUsage>,
        containers: &[String],
    ) {
        self.set_at(key, node, usage, containers, Instant::now());
    }

    pub(crate) fn set_at(
        &self,
        key: &PodKey,
        node: &str,
        usage: Option<PodUsage>,
        containers: &[String],
        now: Instant,
    ) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let Some(usage) = usage else {
            retire(&mut inner, key, now);
            return;
        };
        if let Some(e) = inner.pods.get_mut(key).filter(|e| e.node == node) {
            e.cpu_seconds = e.cpu_at(now);
            e.since = now;
            e.usage = usage;
            e.containers = containers.to_vec();
            return;
        }
        retire(&mut inner, key, now);
        inner.nodes.entry(node.to_string()).or_insert(NodeEntry {
            retired_cpu: 0.0,
            since: now,
        });
        inner.pods.insert(
            key.clone(),
            PodEntry {
                node: node.to_string(),
                usage,
                containers: containers.to_vec(),
                start_time: SystemTime::now(),
                cpu_seconds: 0.0,
                since: now,
            },
        );
    }

    pub(crate) fn remove(&self, key: &PodKey) {
        self.set(key, "", None, &[]);
    }

    fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Forgets a pod, adding what it used to its node's counter.
fn retire(inner: &mut Inner, key: &PodKey, now: Instant) {
    if let Some(e) = inner.pods.remove(key)
        && let Some(node) = inner.nodes.get_mut(&e.node)
    {
        node.retired_cpu += e.cpu_at(now);
    }
}

fn pod_sample(ns: &str, name: &str, e: &PodEntry, now: Instant) -> PodSample {
    let cpu_seconds = e.cpu_at(now);
    let names: Vec<&str> = if e.containers.is_empty() {
        vec![name]
    } else {
        e.containers.iter().map(String::as_str).collect()
    };
    let n = names.len() as u64;
    let containers = names
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // Even shares; the first container takes the memory remainder.
            let extra = if i == 0 { e.usage.memory_bytes % n } else { 0 };
            ContainerSample {
                name: (*c).to_string(),
                cpu_seconds: cpu_seconds / n as f64,
                memory_bytes: e.usage.memory_bytes / n + extra,
            }
        })
        .collect();
    PodSample {
        namespace: ns.to_string(),
        name: name.to_string(),
        start_time: e.start_time,
        cpu_seconds,
        memory_bytes: e.usage.memory_bytes,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(name: &str) -> PodKey {
        ("default".into(), name.into())
    }

    fn cpu(millis: u64) -> Option<PodUsage> {
        Some(PodUsage {
            cpu_nanocores: millis * 1_000_000,
            memory_bytes: 3 << 20,
        })
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn cpu_is_integrated_over_time() {
        let t = UsageTable::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let containers = ["a".to_string(), "b".to_string()];
        t.set_at(&key("p"), "n", cpu(500), &containers, t0);
        // Re-applying the same usage changes nothing.
        t.set_at(&key("p"), "n", cpu(500), &containers, at(4));
        let s = t.sample_at("n", at(10));
        assert!(close(s.pods[0].cpu_seconds, 5.0), "{s:?}");
        assert!(close(s.pods[0].containers[1].cpu_seconds, 2.5));
        assert_eq!(s.pods[0].containers[0].memory_bytes, 3 << 19);
        t.set_at(&key("p"), "n", cpu(1000), &containers, at(10));
        let s = t.sample_at("n", at(20));
        assert!(close(s.pods[0].cpu_seconds, 15.0));
        assert_eq!(s.memory_bytes, NODE_BASE_MEMORY_BYTES + (3 << 20));
    }

    #[test]
    fn node_counter_never_goes_back() {
        let t = UsageTable::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        t.set_at(&key("p"), "n", cpu(1000), &[], t0);
        let before = t.sample_at("n", at(10)).cpu_seconds;
        t.set_at(&key("p"), "n", None, &[], at(10));
        let after = t.sample_at("n", at(10));
        assert!(after.pods.is_empty());
        assert!(close(before, after.cpu_seconds));
        assert!(close(
            before,
            10.0 + 10.0 * NODE_BASE_CPU_NANOCORES as f64 / 1e9
        ));
        assert_eq!(after.memory_bytes, NODE_BASE_MEMORY_BYTES);
    }
}
