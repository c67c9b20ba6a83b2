//! Test builders for pods and nodes, in the shape of upstream's `st.MakePod()`/`st.MakeNode()`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus,
    PersistentVolumeClaimVolumeSource, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity,
    PodCondition, PodSchedulingGate, PodSpec, PodStatus, PreferredSchedulingTerm,
    ResourceRequirements, Taint, Toleration, TopologySpreadConstraint, Volume,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        match_expressions: None,
    }
}

/// Builds a pod.
#[derive(Debug, Clone)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    /// A pod named `name` in `default`, uid `<name>-uid`, scheduler `default-scheduler`.
    pub fn new(name: &str) -> Self {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                scheduler_name: Some("default-scheduler".into()),
                ..Default::default()
            }),
            status: Some(PodStatus::default()),
        };
        Self { pod }
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    fn status(&mut self) -> &mut PodStatus {
        self.pod.status.get_or_insert_with(Default::default)
    }

    fn first_container(&mut self) -> &mut Container {
        let spec = self.spec();
        if spec.containers.is_empty() {
            spec.containers.push(Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ..Default::default()
            });
        }
        &mut spec.containers[0]
    }

    /// Adds a request to the first container.
    pub fn req(mut self, resource: &str, quantity: &str) -> Self {
        let c = self.first_container();
        c.resources
            .get_or_insert_with(Default::default)
            .requests
            .get_or_insert_with(Default::default)
            .insert(resource.to_owned(), Quantity(quantity.to_owned()));
        self
    }

    /// Adds a container with these requests.
    pub fn container(mut self, name: &str, requests: &[(&str, &str)]) -> Self {
        self.spec().containers.push(Container {
            name: name.to_owned(),
            image: Some("busybox".into()),
            resources: Some(ResourceRequirements {
                requests: Some(list(requests)),
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }

    /// Adds an init container (a sidecar when `sidecar`).
    pub fn init_container(mut self, name: &str, requests: &[(&str, &str)], sidecar: bool) -> Self {
        self.spec()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(Container {
                name: name.to_owned(),
                resources: Some(ResourceRequirements {
                    requests: Some(list(requests)),
                    ..Default::default()
                }),
                restart_policy: sidecar.then(|| "Always".to_owned()),
                ..Default::default()
            });
        self
    }

    /// Sets the pod overhead.
    pub fn overhead(mut self, overhead: &[(&str, &str)]) -> Self {
        self.spec().overhead = Some(list(overhead));
        self
    }

    /// Sets the image of the first container.
    pub fn image(mut self, image: &str) -> Self {
        self.first_container().image = Some(image.to_owned());
        self
    }

    /// Asks for a host port on the first container.
    pub fn host_port(mut self, port: i32) -> Self {
        self.first_container()
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                ..Default::default()
            });
        self
    }

    /// Binds the pod to `node`.
    pub fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_owned());
        self
    }

    /// Sets the namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.pod.metadata.namespace = Some(ns.to_owned());
        self
    }

    /// Adds a label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.to_owned(), v.to_owned());
        self
    }

    /// Sets `spec.priority`.
    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    /// Sets `spec.preemptionPolicy: Never`.
    pub fn preempt_never(mut self) -> Self {
        self.spec().preemption_policy = Some("Never".into());
        self
    }

    /// Sets `spec.schedulerName`.
    pub fn scheduler(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.to_owned());
        self
    }

    /// Adds a scheduling gate.
    pub fn gate(mut self, name: &str) -> Self {
        self.spec()
            .scheduling_gates
            .get_or_insert_with(Vec::new)
            .push(PodSchedulingGate {
                name: name.to_owned(),
            });
        self
    }

    /// Adds a toleration.
    pub fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: Some(key.to_owned()).filter(|k| !k.is_empty()),
                operator: Some(op.to_owned()),
                value: Some(value.to_owned()).filter(|v| !v.is_empty()),
                effect: Some(effect.to_owned()).filter(|e| !e.is_empty()),
                toleration_seconds: None,
            });
        self
    }

    /// Adds a `nodeSelector` entry.
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(Default::default)
            .insert(k.to_owned(), v.to_owned());
        self
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(Default::default)
    }

    /// Adds a required node affinity term with one `key op values` expression.
    pub fn node_affinity_in(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![requirement(key, op, values)]),
            match_fields: None,
        };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            })
            .node_selector_terms
            .push(term);
        self
    }

    /// Adds a required node affinity term `metadata.name In names`.
    pub fn node_affinity_names(mut self, names: &[&str]) -> Self {
        let term = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![requirement("metadata.name", "In", names)]),
        };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            })
            .node_selector_terms
            .push(term);
        self
    }

    /// Adds a preferred node affinity term.
    pub fn node_affinity_preferred(
        mut self,
        weight: i32,
        key: &str,
        op: &str,
        values: &[&str],
    ) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm {
                weight,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![requirement(key, op, values)]),
                    match_fields: None,
                },
            });
        self
    }

    fn pod_affinity(&mut self) -> &mut PodAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .pod_affinity
            .get_or_insert_with(Default::default)
    }

    fn pod_anti_affinity(&mut self) -> &mut PodAntiAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .pod_anti_affinity
            .get_or_insert_with(Default::default)
    }

    /// Adds a required pod affinity term selecting `labels` across `topology_key`.
    pub fn pod_affinity_required(mut self, topology_key: &str, labels: &[(&str, &str)]) -> Self {
        let term = affinity_term(topology_key, labels);
        self.pod_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    /// Adds a required pod anti-affinity term.
    pub fn pod_anti_affinity_required(
        mut self,
        topology_key: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        let term = affinity_term(topology_key, labels);
        self.pod_anti_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    /// Adds a preferred pod affinity term.
    pub fn pod_affinity_preferred(
        mut self,
        weight: i32,
        topology_key: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        let term = WeightedPodAffinityTerm {
            weight,
            pod_affinity_term: affinity_term(topology_key, labels),
        };
        self.pod_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    /// Adds a preferred pod anti-affinity term.
    pub fn pod_anti_affinity_preferred(
        mut self,
        weight: i32,
        topology_key: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        let term = WeightedPodAffinityTerm {
            weight,
            pod_affinity_term: affinity_term(topology_key, labels),
        };
        self.pod_anti_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    /// Adds a topology spread constraint.
    pub fn spread(mut self, max_skew: i32, key: &str, when: &str, labels: &[(&str, &str)]) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: key.to_owned(),
                when_unsatisfiable: when.to_owned(),
                label_selector: Some(selector(labels)),
                ..Default::default()
            });
        self
    }

    /// Mounts the claim `claim`.
    pub fn pvc(mut self, claim: &str) -> Self {
        self.spec()
            .volumes
            .get_or_insert_with(Vec::new)
            .push(Volume {
                name: claim.to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.to_owned(),
                    read_only: None,
                }),
                ..Default::default()
            });
        self
    }

    /// Sets `status.startTime` to `secs` after the epoch.
    pub fn start_time(mut self, secs: i64) -> Self {
        let t = Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH);
        self.status().start_time = Some(Time(t));
        self
    }

    /// Marks the pod as being deleted.
    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        self
    }

    /// Sets `status.nominatedNodeName`.
    pub fn nominated(mut self, node: &str) -> Self {
        self.status().nominated_node_name = Some(node.to_owned());
        self
    }

    /// Adds a status condition.
    pub fn condition(mut self, type_: &str, status: &str, reason: &str) -> Self {
        self.status()
            .conditions
            .get_or_insert_with(Vec::new)
            .push(PodCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: Some(reason.to_owned()),
                ..Default::default()
            });
        self
    }

    /// The pod.
    pub fn build(self) -> Pod {
        self.pod
    }

    /// The pod info.
    pub fn info(self) -> PodInfo {
        PodInfo::new(Arc::new(self.pod))
    }

    /// The shared pod info.
    pub fn arc(self) -> Arc<PodInfo> {
        Arc::new(self.info())
    }
}

fn requirement(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_owned(),
        operator: op.to_owned(),
        values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
    }
}

fn affinity_term(topology_key: &str, labels: &[(&str, &str)]) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector(labels)),
        topology_key: topology_key.to_owned(),
        ..Default::default()
    }
}

/// Builds a node.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    node: Node,
}

impl NodeBuilder {
    /// A node named `name` with the hostname label and 4 cpu, 16Gi memory, 110 pods.
    pub fn new(name: &str) -> Self {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                uid: Some(format!("{name}-uid")),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/hostname".to_owned(),
                    name.to_owned(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(list(&[("cpu", "4"), ("memory", "16Gi"), ("pods", "110")])),
                ..Default::default()
            }),
        };
        Self { node }
    }

    /// Sets an allocatable amount.
    pub fn alloc(mut self, resource: &str, quantity: &str) -> Self {
        self.node
            .status
            .get_or_insert_with(Default::default)
            .allocatable
            .get_or_insert_with(Default::default)
            .insert(resource.to_owned(), Quantity(quantity.to_owned()));
        self
    }

    /// Adds a label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.to_owned(), v.to_owned());
        self
    }

    /// Sets the zone label.
    pub fn zone(self, zone: &str) -> Self {
        self.label("topology.kubernetes.io/zone", zone)
    }

    /// Adds a taint.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.node
            .spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.to_owned(),
                value: Some(value.to_owned()).filter(|v| !v.is_empty()),
                effect: effect.to_owned(),
                time_added: None,
            });
        self
    }

    /// Sets `spec.unschedulable`.
    pub fn unschedulable(mut self) -> Self {
        self.node
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = Some(true);
        self
    }

    /// Adds an image with these names and size.
    pub fn image(mut self, names: &[&str], size: i64) -> Self {
        self.node
            .status
            .get_or_insert_with(Default::default)
            .images
            .get_or_insert_with(Vec::new)
            .push(ContainerImage {
                names: Some(names.iter().map(|n| (*n).to_owned()).collect()),
                size_bytes: Some(size),
            });
        self
    }

    /// The node.
    pub fn build(self) -> Node {
        self.node
    }

    /// A node info with these pods on it.
    pub fn info_with(self, pods: &[Arc<PodInfo>]) -> NodeInfo {
        let mut info = NodeInfo::with_node(Arc::new(self.node));
        for p in pods {
            info.add_pod(Arc::clone(p));
        }
        info
    }

    /// A node info without pods.
    pub fn info(self) -> NodeInfo {
        self.info_with(&[])
    }
}
