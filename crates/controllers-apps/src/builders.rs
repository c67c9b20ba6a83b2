//! Test builders for the objects the controllers read (only compiled for tests).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

/// A fixed "now" for tests: 2024-01-01T00:00:00Z.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_704_067_200).expect("valid")
}

/// `now()` moved by `secs`.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(now().as_second() + secs).expect("valid")
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn template(pairs: &[(&str, &str)]) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(pairs)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("nginx".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

pub struct PodBuilder(Pod);

impl PodBuilder {
    pub fn new(name: &str) -> Self {
        PodBuilder(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                creation_timestamp: Some(Time(at(-3600))),
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        })
    }
    pub fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.0.metadata.labels = Some(labels(pairs));
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(k.into(), v.into());
        self
    }
    pub fn node(mut self, node: &str) -> Self {
        self.0.spec.get_or_insert_default().node_name = Some(node.into());
        self
    }
    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_default().phase = Some(phase.into());
        self
    }
    pub fn created(mut self, secs_from_now: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(at(secs_from_now)));
        self
    }
    /// Running and Ready since `secs_from_now`.
    pub fn ready_since(mut self, secs_from_now: i64) -> Self {
        let status = self.0.status.get_or_insert_default();
        status.phase = Some("Running".into());
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(secs_from_now))),
            ..Default::default()
        }]);
        self
    }
    pub fn restarts(mut self, n: i32) -> Self {
        self.0.status.get_or_insert_default().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            restart_count: n,
            ..Default::default()
        }]);
        self
    }
    pub fn owner(mut self, kind: &str, name: &str, uid: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(now()));
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
}

pub struct RsBuilder(ReplicaSet);

impl RsBuilder {
    pub fn new(name: &str) -> Self {
        RsBuilder(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                generation: Some(1),
                resource_version: Some("1".into()),
                creation_timestamp: Some(Time(at(-7200))),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(1),
                min_ready_seconds: Some(0),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(template(&[("app", "web")])),
            }),
            status: None,
        })
    }
    pub fn replicas(mut self, n: i32) -> Self {
        self.spec().replicas = Some(n);
        self
    }
    pub fn min_ready(mut self, secs: i32) -> Self {
        self.spec().min_ready_seconds = Some(secs);
        self
    }
    pub fn template_labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.spec().template = Some(template(pairs));
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(k.into(), v.into());
        self
    }
    pub fn owner(mut self, kind: &str, name: &str, uid: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        self
    }
    pub fn status(mut self, replicas: i32, ready: i32, available: i32) -> Self {
        self.0.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            fully_labeled_replicas: Some(replicas),
            observed_generation: self.0.metadata.generation,
            ..Default::default()
        });
        self
    }
    pub fn created(mut self, secs_from_now: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(at(secs_from_now)));
        self
    }
    fn spec(&mut self) -> &mut ReplicaSetSpec {
        self.0.spec.get_or_insert_default()
    }
    pub fn build(self) -> ReplicaSet {
        self.0
    }
}

pub struct DeploymentBuilder(k8s_openapi::api::apps::v1::Deployment);

impl DeploymentBuilder {
    pub fn new(name: &str) -> Self {
        let d = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 1},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(&[("app", "web")]),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            }
        }))
        .expect("deployment");
        DeploymentBuilder(d)
    }
    fn spec(&mut self) -> &mut k8s_openapi::api::apps::v1::DeploymentSpec {
        self.0.spec.get_or_insert_default()
    }
    pub fn replicas(mut self, n: i32) -> Self {
        self.spec().replicas = Some(n);
        self
    }
    pub fn image(mut self, image: &str) -> Self {
        if let Some(c) = self
            .spec()
            .template
            .spec
            .as_mut()
            .and_then(|s| s.containers.first_mut())
        {
            c.image = Some(image.into());
        }
        self
    }
    pub fn surge(mut self, surge: &str, unavailable: &str) -> Self {
        let v = |s: &str| match s.parse::<i32>() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        };
        let strategy = self.spec().strategy.get_or_insert_default();
        let ru = strategy.rolling_update.get_or_insert_default();
        ru.max_surge = Some(v(surge));
        ru.max_unavailable = Some(v(unavailable));
        self
    }
    pub fn recreate(mut self) -> Self {
        self.spec().strategy = Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        self
    }
    pub fn paused(mut self) -> Self {
        self.spec().paused = Some(true);
        self
    }
    pub fn history(mut self, n: i32) -> Self {
        self.spec().revision_history_limit = Some(n);
        self
    }
    pub fn status(mut self, status: serde_json::Value) -> Self {
        self.0.status = Some(serde_json::from_value(status).expect("status"));
        self
    }
    pub fn build(self) -> k8s_openapi::api::apps::v1::Deployment {
        self.0
    }
}

/// A replica set of deployment `d` for `image`, as the controller would have made it.
pub fn rs_for(
    d: &k8s_openapi::api::apps::v1::Deployment,
    image: &str,
    revision: i64,
    replicas: i32,
    available: i32,
) -> ReplicaSet {
    let mut t = d.spec.clone().unwrap_or_default().template;
    if let Some(c) = t.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.image = Some(image.into());
    }
    let hash = crate::deployment::util::compute_hash(&t, None);
    t.metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert("pod-template-hash".into(), hash.clone());
    let name = format!("{}-{hash}", d.metadata.name.clone().unwrap_or_default());
    let mut rs = RsBuilder::new(&name)
        .replicas(replicas)
        .owner("Deployment", "d", "uid-d")
        .annotation("deployment.kubernetes.io/revision", &revision.to_string())
        .annotation(
            "deployment.kubernetes.io/desired-replicas",
            &crate::deployment::util::replicas(d).to_string(),
        )
        .annotation(
            "deployment.kubernetes.io/max-replicas",
            &(crate::deployment::util::replicas(d) + crate::deployment::util::max_surge(d))
                .to_string(),
        )
        .status(replicas, available, available)
        .created(-10_000 + revision * 100)
        .build();
    rs.spec.get_or_insert_default().template = Some(t);
    rs
}

/// A StatefulSet `web` in `ns` selecting `app: web`, three replicas, OrderedReady,
/// RollingUpdate, serviceName `web`.
pub struct StsBuilder(k8s_openapi::api::apps::v1::StatefulSet);

impl StsBuilder {
    pub fn new(name: &str) -> Self {
        let s = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 1},
            "spec": {
                "replicas": 3,
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(&[("app", "web")]),
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "revisionHistoryLimit": 10,
            }
        }))
        .expect("statefulset");
        StsBuilder(s)
    }
    fn spec(&mut self) -> &mut k8s_openapi::api::apps::v1::StatefulSetSpec {
        self.0.spec.get_or_insert_default()
    }
    pub fn replicas(mut self, n: i32) -> Self {
        self.spec().replicas = Some(n);
        self
    }
    pub fn start(mut self, n: i32) -> Self {
        self.spec().ordinals =
            Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(n) });
        self
    }
    pub fn parallel(mut self) -> Self {
        self.spec().pod_management_policy = Some("Parallel".into());
        self
    }
    pub fn on_delete(mut self) -> Self {
        self.spec().update_strategy = Some(k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        self
    }
    pub fn partition(mut self, n: i32) -> Self {
        if let Some(ru) = self
            .spec()
            .update_strategy
            .as_mut()
            .and_then(|u| u.rolling_update.as_mut())
        {
            ru.partition = Some(n);
        }
        self
    }
    /// `rollingUpdate.maxUnavailable`: a count, or a percentage such as `"50%"`.
    pub fn max_unavailable(mut self, v: &str) -> Self {
        let v = match v.parse() {
            Ok(n) => IntOrString::Int(n),
            Err(_) => IntOrString::String(v.into()),
        };
        if let Some(ru) = self
            .spec()
            .update_strategy
            .as_mut()
            .and_then(|u| u.rolling_update.as_mut())
        {
            ru.max_unavailable = Some(v);
        }
        self
    }
    pub fn image(mut self, image: &str) -> Self {
        if let Some(c) = self
            .spec()
            .template
            .spec
            .as_mut()
            .and_then(|s| s.containers.first_mut())
        {
            c.image = Some(image.into());
        }
        self
    }
    /// A volumeClaimTemplate named `name`.
    pub fn claim_template(mut self, name: &str) -> Self {
        let claim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .expect("claim");
        self.spec()
            .volume_claim_templates
            .get_or_insert_default()
            .push(claim);
        self
    }
    pub fn retention(mut self, when_deleted: &str, when_scaled: &str) -> Self {
        self.spec().persistent_volume_claim_retention_policy = Some(
            k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(when_deleted.into()),
                when_scaled: Some(when_scaled.into()),
            },
        );
        self
    }
    pub fn min_ready(mut self, secs: i32) -> Self {
        self.spec().min_ready_seconds = Some(secs);
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(now()));
        self
    }
    pub fn build(self) -> k8s_openapi::api::apps::v1::StatefulSet {
        self.0
    }
}
