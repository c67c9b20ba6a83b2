//! Builders of test fixtures: `node("n1").ready("True").build()`, `pod("p").on("n1").build()`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

pub struct NodeBuilder(Node);

pub fn node(name: &str) -> NodeBuilder {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.uid = Some(name.into());
    n.spec = Some(NodeSpec::default());
    n.status = Some(NodeStatus::default());
    NodeBuilder(n)
}

impl NodeBuilder {
    pub fn condition(mut self, kind: &str, status: &str, heartbeat: Timestamp) -> Self {
        let conds = self
            .0
            .status
            .get_or_insert_default()
            .conditions
            .get_or_insert_default();
        conds.push(NodeCondition {
            type_: kind.into(),
            status: status.into(),
            last_heartbeat_time: Some(Time(heartbeat)),
            last_transition_time: Some(Time(heartbeat)),
            reason: Some("KubeletReady".into()),
            message: None,
        });
        self
    }
    pub fn ready(self, status: &str, heartbeat: Timestamp) -> Self {
        self.condition("Ready", status, heartbeat)
    }
    pub fn taint(mut self, key: &str, effect: &str, added: Timestamp) -> Self {
        let taints = self
            .0
            .spec
            .get_or_insert_default()
            .taints
            .get_or_insert_default();
        taints.push(Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: Some(Time(added)),
        });
        self
    }
    pub fn zone(mut self, zone: &str) -> Self {
        let labels = self.0.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert("topology.kubernetes.io/zone".into(), zone.into());
        self
    }
    pub fn unschedulable(mut self) -> Self {
        self.0.spec.get_or_insert_default().unschedulable = Some(true);
        self
    }
    pub fn build(self) -> Node {
        self.0
    }
}

pub struct PodBuilder(Pod);

pub fn pod(name: &str) -> PodBuilder {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(name.into());
    p.spec = Some(PodSpec {
        containers: vec![Container {
            name: "c".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    PodBuilder(p)
}

impl PodBuilder {
    pub fn on(mut self, node: &str) -> Self {
        self.0.spec.get_or_insert_default().node_name = Some(node.into());
        self
    }
    pub fn tolerate(mut self, key: &str, seconds: Option<i64>) -> Self {
        let tols = self
            .0
            .spec
            .get_or_insert_default()
            .tolerations
            .get_or_insert_default();
        tols.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        });
        self
    }
    pub fn ready(mut self, status: &str) -> Self {
        let conds = self
            .0
            .status
            .get_or_insert_default()
            .conditions
            .get_or_insert_default();
        conds.push(PodCondition {
            type_: "Ready".into(),
            status: status.into(),
            ..Default::default()
        });
        self
    }
    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_default().phase = Some(phase.into());
        self
    }
    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        let l = self.0.metadata.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in labels {
            l.insert((*k).into(), (*v).into());
        }
        self
    }
    pub fn created(mut self, at: Timestamp) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(at));
        self
    }
    pub fn deleting(mut self, at: Timestamp) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(at));
        self
    }
    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        let api_version = if kind == "ReplicationController" {
            "v1"
        } else {
            "apps/v1"
        };
        self.0
            .metadata
            .owner_references
            .get_or_insert_default()
            .push(OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: name.into(),
                uid: name.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
}
