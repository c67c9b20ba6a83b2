//! ReplicaSets and ReplicationControllers seen through one [`View`], so one controller serves
//! both kinds as upstream's does.

use std::fmt::Debug;

use k8rs_machinery::labels::Selector;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ObjectReference, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::pods;

/// A condition of a replica set's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<Timestamp>,
}

/// The status both kinds share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<Condition>,
}

impl Status {
    /// The `{"status": ...}` merge patch writing this status whole.
    pub fn to_patch(&self) -> serde_json::Value {
        let conditions: Vec<_> = self
            .conditions
            .iter()
            .map(|c| {
                json!({
                    "type": c.type_, "status": c.status, "reason": c.reason,
                    "message": c.message,
                    "lastTransitionTime": c.last_transition_time.map(Time),
                })
            })
            .collect();
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": self.fully_labeled_replicas,
            "readyReplicas": self.ready_replicas,
            "availableReplicas": self.available_replicas,
            "observedGeneration": self.observed_generation,
            "conditions": if conditions.is_empty() { serde_json::Value::Null } else { conditions.into() },
        }})
    }
}

/// What the controller needs of one replica set.
#[derive(Debug, Clone)]
pub struct View {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub selector: Selector,
    pub template: Option<PodTemplateSpec>,
    pub deleting: bool,
    pub status: Status,
    /// The controller reference its pods carry.
    pub owner: OwnerReference,
    /// The reference events are recorded on.
    pub reference: ObjectReference,
}

/// A kind this controller serves.
pub trait ReplicaKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The controller name events are reported under (upstream's).
    const CONTROLLER: &'static str;
    /// The view of this object; an error when its selector cannot be parsed.
    fn view(&self) -> Result<View, String>;
}

fn base_view<K: ReplicaKind>(obj: &K) -> View {
    let meta = obj.meta();
    View {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or(0),
        replicas: 1,
        min_ready_seconds: 0,
        selector: Selector::nothing(),
        template: None,
        deleting: meta.deletion_timestamp.is_some(),
        status: Status::default(),
        owner: pods::owner_ref(obj),
        reference: pods::object_ref(obj),
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: Option<&String>,
    message: Option<&String>,
    time: Option<&Time>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.cloned(),
        message: message.cloned(),
        last_transition_time: time.map(|t| t.0),
    }
}

impl ReplicaKind for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset-controller";

    fn view(&self) -> Result<View, String> {
        let mut v = base_view(self);
        let spec = self.spec.clone().unwrap_or_default();
        v.replicas = spec.replicas.unwrap_or(1);
        v.min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
        v.selector = Selector::from_label_selector(&spec.selector).map_err(|e| e.to_string())?;
        v.template = spec.template;
        if let Some(s) = &self.status {
            v.status = Status {
                replicas: s.replicas,
                fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: s.ready_replicas.unwrap_or(0),
                available_replicas: s.available_replicas.unwrap_or(0),
                observed_generation: s.observed_generation.unwrap_or(0),
                conditions: s
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| {
                        let t = c.last_transition_time.as_ref();
                        condition(
                            &c.type_,
                            &c.status,
                            c.reason.as_ref(),
                            c.message.as_ref(),
                            t,
                        )
                    })
                    .collect(),
            };
        }
        Ok(v)
    }
}

impl ReplicaKind for ReplicationController {
    const CONTROLLER: &'static str = "replication-controller";

    fn view(&self) -> Result<View, String> {
        let mut v = base_view(self);
        let spec = self.spec.clone().unwrap_or_default();
        v.replicas = spec.replicas.unwrap_or(1);
        v.min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
        let selector = spec
            .selector
            .clone()
            .or_else(|| spec.template.as_ref()?.metadata.as_ref()?.labels.clone())
            .unwrap_or_default();
        v.selector = Selector::from_map(&selector);
        v.template = spec.template;
        if let Some(s) = &self.status {
            v.status = Status {
                replicas: s.replicas,
                fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: s.ready_replicas.unwrap_or(0),
                available_replicas: s.available_replicas.unwrap_or(0),
                observed_generation: s.observed_generation.unwrap_or(0),
                conditions: s
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| {
                        let t = c.last_transition_time.as_ref();
                        condition(
                            &c.type_,
                            &c.status,
                            c.reason.as_ref(),
                            c.message.as_ref(),
                            t,
                        )
                    })
                    .collect(),
            };
        }
        Ok(v)
    }
}
