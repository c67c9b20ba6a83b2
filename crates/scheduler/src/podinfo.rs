//! A pod with what the scheduler computes from it once: priority, requests, host ports and
//! parsed inter-pod affinity terms (upstream's `framework.PodInfo`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use crate::resources::{self, Resource};

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The labels of a pod (empty when it has none).
pub fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// The `namespace/name` of a pod, as upstream's `klog.KObj`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The identity the scheduler tracks a pod by: its uid, or `namespace/name` without one.
pub fn pod_uid(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => pod_key(pod),
    }
}

/// `spec.priority`, 0 when unset (upstream's `corev1helpers.PodPriority`).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `spec.nodeName` when set.
pub fn pod_node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// A pod affinity term with its selectors parsed (upstream's `framework.AffinityTerm`).
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces the term names (or the pod's own when it names none and has no selector).
    pub namespaces: Vec<String>,
    /// Which pods the term selects.
    pub selector: Selector,
    /// The node label that defines the topology domain.
    pub topology_key: String,
    /// Which namespaces the term selects by label (nothing when unset).
    pub namespace_selector: Selector,
}

impl AffinityTerm {
    fn parse(pod: &Pod, term: &PodAffinityTerm) -> Result<Self, String> {
        let selector = Selector::from_optional_label_selector(term.label_selector.as_ref())
            .map_err(|e| e.to_string())?;
        let namespace_selector =
            Selector::from_optional_label_selector(term.namespace_selector.as_ref())
                .map_err(|e| e.to_string())?;
        let listed = term.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            vec![pod.metadata.namespace.clone().unwrap_or_default()]
        } else {
            listed
        };
        Ok(Self {
            namespaces,
            selector,
            topology_key: term.topology_key.clone(),
            namespace_selector,
        })
    }

    /// Whether `pod` (whose namespace carries `ns_labels`) is selected by this term.
    pub fn matches(&self, pod: &Pod, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_namespace = self.namespaces.iter().any(|n| n == ns)
            || self
                .namespace_selector
                .matches(ns_labels.unwrap_or(&NO_LABELS));
        in_namespace && self.selector.matches(pod_labels(pod))
    }
}

/// An affinity term with its weight (preferred terms).
#[derive(Debug, Clone)]
pub struct WeightedAffinityTerm {
    /// The term.
    pub term: AffinityTerm,
    /// Its weight, 1–100.
    pub weight: i32,
}

/// A host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host IP (`0.0.0.0` when unset).
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port.
    pub port: i32,
}

/// A pod and what the scheduler derives from it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod as last seen.
    pub pod: Arc<Pod>,
    /// Its identity (see [`pod_uid`]).
    pub uid: String,
    /// `spec.priority`.
    pub priority: i32,
    /// What it requests (upstream's `PodRequests`).
    pub requests: Resource,
    /// CPU counted for scoring (default for containers without a request).
    pub non_zero_cpu: i64,
    /// Memory counted for scoring (default for containers without a request).
    pub non_zero_memory: i64,
    /// Required pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms.
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    /// Preferred pod anti-affinity terms.
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    /// The host ports its containers and sidecars ask for.
    pub host_ports: Vec<HostPort>,
    /// Why a term could not be parsed; scheduling such a pod fails with this error.
    pub parse_error: Option<String>,
}

impl PodInfo {
    /// Computes everything for `pod`.
    pub fn new(pod: Arc<Pod>) -> Self {
        let requests = resources::pod_requests(&pod, false);
        let non_zero = resources::pod_requests(&pod, true);
        let mut info = Self {
            uid: pod_uid(&pod),
            priority: pod_priority(&pod),
            requests,
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            required_affinity: Vec::new(),
            required_anti_affinity: Vec::new(),
            preferred_affinity: Vec::new(),
            preferred_anti_affinity: Vec::new(),
            host_ports: host_ports(&pod),
            parse_error: None,
            pod,
        };
        if let Err(e) = info.parse_affinity() {
            info.parse_error = Some(e);
        }
        info
    }

    fn parse_affinity(&mut self) -> Result<(), String> {
        let pod = Arc::clone(&self.pod);
        let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
            return Ok(());
        };
        if let Some(a) = affinity.pod_affinity.as_ref() {
            self.required_affinity = parse_terms(
                &pod,
                a.required_during_scheduling_ignored_during_execution
                    .as_deref(),
            )?;
            self.preferred_affinity = parse_weighted(
                &pod,
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref(),
            )?;
        }
        if let Some(a) = affinity.pod_anti_affinity.as_ref() {
            self.required_anti_affinity = parse_terms(
                &pod,
                a.required_during_scheduling_ignored_during_execution
                    .as_deref(),
            )?;
            self.preferred_anti_affinity = parse_weighted(
                &pod,
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref(),
            )?;
        }
        Ok(())
    }

    /// The pod's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        pod_labels(&self.pod)
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// Whether the pod has any pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// Whether deletion of the pod was requested.
    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// A copy of this pod bound to `node` (what the cache assumes before the binding is seen).
    pub fn assumed_on(&self, node: &str) -> Self {
        let mut pod = (*self.pod).clone();
        pod.spec.get_or_insert_with(Default::default).node_name = Some(node.to_owned());
        Self {
            pod: Arc::new(pod),
            ..self.clone()
        }
    }
}

fn parse_terms(pod: &Pod, terms: Option<&[PodAffinityTerm]>) -> Result<Vec<AffinityTerm>, String> {
    terms
        .unwrap_or_default()
        .iter()
        .map(|t| AffinityTerm::parse(pod, t))
        .collect()
}

fn parse_weighted(
    pod: &Pod,
    terms: Option<&[WeightedPodAffinityTerm]>,
) -> Result<Vec<WeightedAffinityTerm>, String> {
    terms
        .unwrap_or_default()
        .iter()
        .map(|t| {
            Ok(WeightedAffinityTerm {
                term: AffinityTerm::parse(pod, &t.pod_affinity_term)?,
                weight: t.weight,
            })
        })
        .collect()
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p
                    .protocol
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                port,
            })
        })
        .collect()
}
