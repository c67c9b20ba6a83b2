//! Resource arithmetic as upstream's `framework.Resource` and `resourcehelper.PodRequests`: what a
//! pod requests (containers summed, init containers as a running maximum, sidecars added, overhead
//! on top) and what a node offers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The CPU request (millicores) a container without one counts as when scoring.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory request (bytes) a container without one counts as when scoring.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// `cpu`
pub const CPU: &str = "cpu";
/// `memory`
pub const MEMORY: &str = "memory";
/// `ephemeral-storage`
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// `pods`
pub const PODS: &str = "pods";

/// Amounts of every resource the scheduler accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// How many pods fit (only meaningful for a node's allocatable).
    pub allowed_pod_number: i64,
    /// Extended, hugepages and other scalar resources, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// The amounts in a resource list (`cpu` in millicores, others rounded up to whole units).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Self::default();
        for (name, q) in list {
            r.add_named(name, q);
        }
        r
    }

    fn add_named(&mut self, name: &str, q: &Quantity) {
        match name {
            CPU => self.milli_cpu += milli_value(q),
            MEMORY => self.memory += value(q),
            EPHEMERAL_STORAGE => self.ephemeral_storage += value(q),
            PODS => self.allowed_pod_number += value(q),
            other if is_scalar_resource_name(other) => {
                *self.scalar.entry(other.to_owned()).or_default() += value(q);
            }
            _ => {}
        }
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Raises every amount of `self` to at least the one in `other`.
    pub fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(other.allowed_pod_number);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The amount of a named resource (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    /// Whether nothing is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Upstream's `IsScalarResourceName`: extended resources (`example.com/gpu`), hugepages,
/// attachable volumes and prefixed native resources.
pub fn is_scalar_resource_name(name: &str) -> bool {
    if matches!(name, CPU | MEMORY | EPHEMERAL_STORAGE | PODS | "storage") {
        return false;
    }
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

/// The value of a quantity in milli-units, rounded up (upstream's `MilliValue`).
pub fn milli_value(q: &Quantity) -> i64 {
    let nano = k8rs_api::quantity::value(q).unwrap_or(0);
    saturate(ceil_div(nano, 1_000_000))
}

/// The value of a quantity in whole units, rounded up (upstream's `Value`).
pub fn value(q: &Quantity) -> i64 {
    let nano = k8rs_api::quantity::value(q).unwrap_or(0);
    saturate(ceil_div(nano, 1_000_000_000))
}

fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 { q + 1 } else { q }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// What a node offers pods: `status.allocatable`.
pub fn node_allocatable(node: &Node) -> Resource {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .map(Resource::from_list)
        .unwrap_or_default()
}

/// Container requests with cpu and memory filled in with the scoring defaults when missing.
fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = requests.map(Resource::from_list).unwrap_or_default();
    if non_zero {
        if !requests.is_some_and(|m| m.contains_key(CPU)) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requests.is_some_and(|m| m.contains_key(MEMORY)) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Upstream's `PodRequests`: containers summed; init containers one after another (so their
/// maximum counts), each also holding the sidecars (`restartPolicy: Always`) started before it;
/// sidecars keep running beside the containers; overhead on top.
///
/// With `non_zero`, containers without a cpu or memory request count the scoring defaults
/// (upstream's `NonMissingContainerRequests`).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, non_zero);
        let running = if is_sidecar(c) {
            reqs.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut r = own;
            r.add(&sidecars);
            r
        };
        init_max.max_with(&running);
    }
    reqs.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(overhead));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    #[test]
    fn quantities_round_up() {
        assert_eq!(milli_value(&Quantity("500m".into())), 500);
        assert_eq!(milli_value(&Quantity("1.5".into())), 1500);
        assert_eq!(milli_value(&Quantity("0.0001".into())), 1);
        assert_eq!(value(&Quantity("1Gi".into())), 1 << 30);
        assert_eq!(value(&Quantity("1500m".into())), 2);
        assert_eq!(value(&Quantity("garbage".into())), 0);
    }

    #[test]
    fn requests_follow_upstream_rules() {
        struct Case {
            name: &'static str,
            pod: Pod,
            cpu: i64,
            memory: i64,
        }
        let cases = [
            Case {
                name: "containers are summed",
                pod: PodBuilder::new("p")
                    .container("a", &[("cpu", "1"), ("memory", "1Gi")])
                    .container("b", &[("cpu", "500m")])
                    .build(),
                cpu: 1500,
                memory: 1 << 30,
            },
            Case {
                name: "init containers count as their maximum",
                pod: PodBuilder::new("p")
                    .init_container("i1", &[("cpu", "2"), ("memory", "1G")], false)
                    .init_container("i2", &[("cpu", "2"), ("memory", "3G")], false)
                    .container("c1", &[("cpu", "2"), ("memory", "1G")])
                    .container("c2", &[("cpu", "1"), ("memory", "1G")])
                    .build(),
                cpu: 3000,
                memory: 3_000_000_000,
            },
            Case {
                name: "sidecars add to containers and to later init containers",
                pod: PodBuilder::new("p")
                    .init_container("sidecar", &[("cpu", "1")], true)
                    .init_container("init", &[("cpu", "3")], false)
                    .container("c", &[("cpu", "1")])
                    .build(),
                cpu: 4000,
                memory: 0,
            },
            Case {
                name: "overhead is added",
                pod: PodBuilder::new("p")
                    .container("c", &[("cpu", "1")])
                    .overhead(&[("cpu", "250m"), ("memory", "120Mi")])
                    .build(),
                cpu: 1250,
                memory: 120 << 20,
            },
        ];
        for c in cases {
            let r = pod_requests(&c.pod, false);
            assert_eq!((r.milli_cpu, r.memory), (c.cpu, c.memory), "{}", c.name);
        }
    }

    #[test]
    fn non_zero_requests_fill_defaults() {
        let pod = PodBuilder::new("p")
            .container("a", &[])
            .container("b", &[("cpu", "0")])
            .build();
        let r = pod_requests(&pod, true);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn extended_resources_are_scalar() {
        let pod = PodBuilder::new("p")
            .container("a", &[("example.com/gpu", "2"), ("hugepages-2Mi", "4Mi")])
            .build();
        let r = pod_requests(&pod, false);
        assert_eq!(r.get("example.com/gpu"), 2);
        assert_eq!(r.get("hugepages-2Mi"), 4 << 20);
        assert!(!is_scalar_resource_name("cpu"));
    }
}
