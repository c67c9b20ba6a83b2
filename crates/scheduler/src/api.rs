//! Every write the scheduler makes to the API server, behind [`ClusterApi`]: binding, pod status
//! patches, deleting preemption victims, volume binding patches and events. [`KubeApi`] talks to
//! the API server; tests use a recording fake.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::podinfo::PodInfo;

/// How many events may wait to be published before new ones are dropped (upstream's event
/// broadcaster drops too rather than block scheduling).
const EVENT_QUEUE: usize = 10_000;
/// How many events are published at once.
const EVENT_CONCURRENCY: usize = 8;
/// After this many events the deduplicating recorder is replaced, bounding its cache.
const RECORDER_ROTATION: usize = 1_000;

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status, when the server answered.
    pub code: Option<u16>,
    /// The server's message, or the transport error.
    pub message: String,
}

impl ApiError {
    /// Whether the object is gone (404).
    pub fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => Self {
                code: Some(s.code),
                message: s.message,
            },
            other => Self {
                code: None,
                message: other.to_string(),
            },
        }
    }
}

/// Which pod a call is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (empty when unknown).
    pub uid: String,
}

impl PodRef {
    /// The reference of `pod`.
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    /// The reference of a pod info.
    pub fn of_info(pod: &PodInfo) -> Self {
        Self::of(&pod.pod)
    }

    fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        }
    }
}

/// An event about a pod (events.k8s.io/v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerEvent {
    /// The pod the event is about.
    pub regarding: PodRef,
    /// A second pod involved (the preemptor of a victim).
    pub related: Option<PodRef>,
    /// `Warning` when true, else `Normal`.
    pub warning: bool,
    /// `Scheduled`, `FailedScheduling`, `Preempted`.
    pub reason: &'static str,
    /// `Binding`, `Scheduling`, `Preempting`.
    pub action: &'static str,
    /// The message.
    pub note: String,
}

/// Result of an API call.
pub type ApiResult = Result<(), ApiError>;

/// The scheduler's writes.
pub trait ClusterApi: Send + Sync + 'static {
    /// POSTs a Binding of the pod to `node` (`pods/binding`).
    fn bind(&self, pod: &PodRef, node: &str) -> BoxFuture<'static, ApiResult>;
    /// Strategic-merge-patches `pods/status` with `patch` (`{"status": {...}}`).
    fn patch_pod_status(&self, pod: &PodRef, patch: Value) -> BoxFuture<'static, ApiResult>;
    /// Deletes the pod gracefully (uid precondition).
    fn delete_pod(&self, pod: &PodRef) -> BoxFuture<'static, ApiResult>;
    /// Merge-patches a PersistentVolumeClaim.
    fn patch_pvc(&self, namespace: &str, name: &str, patch: Value)
    -> BoxFuture<'static, ApiResult>;
    /// Merge-patches a PersistentVolume.
    fn patch_pv(&self, name: &str, patch: Value) -> BoxFuture<'static, ApiResult>;
    /// Queues an event (best effort, never blocks).
    fn record(&self, event: SchedulerEvent);
}

/// [`ClusterApi`] against the API server.
#[derive(Clone)]
pub struct KubeApi {
    client: kube::Client,
    events: mpsc::Sender<SchedulerEvent>,
}

impl KubeApi {
    /// A client publishing events as `reporter` (reporting controller `default-scheduler`).
    /// Spawns the event publisher; it stops when every `KubeApi` clone is dropped.
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(publish_events(client.clone(), reporter, rx));
        Self { client, events: tx }
    }

    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }
}

async fn publish_events(
    client: kube::Client,
    reporter: Reporter,
    rx: mpsc::Receiver<SchedulerEvent>,
) {
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let shared = std::sync::Mutex::new((Recorder::new(client.clone(), reporter.clone()), 0usize));
    stream
        .for_each_concurrent(EVENT_CONCURRENCY, |e| {
            // Successes are unique per pod: a fresh recorder avoids growing a dedup cache.
            let recorder = if e.reason == "Scheduled" {
                Recorder::new(client.clone(), reporter.clone())
            } else {
                let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
                guard.1 += 1;
                if guard.1 >= RECORDER_ROTATION {
                    *guard = (Recorder::new(client.clone(), reporter.clone()), 0);
                }
                guard.0.clone()
            };
            async move {
                let event = Event {
                    type_: if e.warning { EventType::Warning } else { EventType::Normal },
                    reason: e.reason.to_owned(),
                    note: Some(e.note.clone()),
                    action: e.action.to_owned(),
                    secondary: e.related.as_ref().map(PodRef::object_reference),
                };
                if let Err(err) = recorder.publish(&event, &e.regarding.object_reference()).await {
                    tracing::debug!(pod = %e.regarding.name, reason = e.reason, error = %err, "publishing event failed");
                }
            }
        })
        .await;
}

impl ClusterApi for KubeApi {
    fn bind(&self, pod: &PodRef, node: &str) -> BoxFuture<'static, ApiResult> {
        let api = self.pods(&pod.namespace);
        let name = pod.name.clone();
        let body = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        Box::pin(async move {
            api.create_subresource::<_, Value>("binding", &name, &PostParams::default(), &body)
                .await?;
            Ok(())
        })
    }

    fn patch_pod_status(&self, pod: &PodRef, patch: Value) -> BoxFuture<'static, ApiResult> {
        let api = self.pods(&pod.namespace);
        let name = pod.name.clone();
        Box::pin(async move {
            api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await?;
            Ok(())
        })
    }

    fn delete_pod(&self, pod: &PodRef) -> BoxFuture<'static, ApiResult> {
        let api = self.pods(&pod.namespace);
        let name = pod.name.clone();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                resource_version: None,
            }),
            ..Default::default()
        };
        Box::pin(async move {
            api.delete(&name, &params).await?;
            Ok(())
        })
    }

    fn patch_pvc(
        &self,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> BoxFuture<'static, ApiResult> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        Box::pin(async move {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            Ok(())
        })
    }

    fn patch_pv(&self, name: &str, patch: Value) -> BoxFuture<'static, ApiResult> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = name.to_owned();
        Box::pin(async move {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            Ok(())
        })
    }

    fn record(&self, event: SchedulerEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!("event queue full, dropping a scheduler event");
        }
    }
}

/// A shared handle to the API.
pub type SharedApi = Arc<dyn ClusterApi>;

/// A recording fake of [`ClusterApi`] for tests.
#[cfg(test)]
pub mod fake {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::*;

    /// One call the scheduler made.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Action {
        /// `bind(pod, node)`.
        Bind(String, String),
        /// `patch_pod_status(pod, patch)`.
        PatchStatus(String, Value),
        /// `delete_pod(pod)`.
        Delete(String),
        /// `patch_pvc(ns/name, patch)`.
        PatchPvc(String, Value),
        /// `patch_pv(name, patch)`.
        PatchPv(String, Value),
        /// `record(event)`: reason and note.
        Event(String, &'static str, String),
    }

    /// Records calls; binds of pods named in `fail_bind` fail with a 409.
    #[derive(Default)]
    pub struct FakeApi {
        /// Calls in order.
        pub actions: Mutex<Vec<Action>>,
        /// Pod names whose binding fails.
        pub fail_bind: Mutex<HashSet<String>>,
    }

    impl FakeApi {
        fn push(&self, a: Action) {
            self.actions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(a);
        }

        /// The calls so far.
        pub fn actions(&self) -> Vec<Action> {
            self.actions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }

        /// The recorded events as (pod, reason, note).
        pub fn events(&self) -> Vec<(String, &'static str, String)> {
            self.actions()
                .into_iter()
                .filter_map(|a| match a {
                    Action::Event(p, r, n) => Some((p, r, n)),
                    _ => None,
                })
                .collect()
        }
    }

    impl ClusterApi for FakeApi {
        fn bind(&self, pod: &PodRef, node: &str) -> BoxFuture<'static, ApiResult> {
            self.push(Action::Bind(pod.name.clone(), node.to_owned()));
            let fail = self
                .fail_bind
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&pod.name);
            Box::pin(async move {
                if fail {
                    return Err(ApiError {
                        code: Some(409),
                        message: "conflict".into(),
                    });
                }
                Ok(())
            })
        }
        fn patch_pod_status(&self, pod: &PodRef, patch: Value) -> BoxFuture<'static, ApiResult> {
            self.push(Action::PatchStatus(pod.name.clone(), patch));
            Box::pin(async { Ok(()) })
        }
        fn delete_pod(&self, pod: &PodRef) -> BoxFuture<'static, ApiResult> {
            self.push(Action::Delete(pod.name.clone()));
            Box::pin(async { Ok(()) })
        }
        fn patch_pvc(
            &self,
            namespace: &str,
            name: &str,
            patch: Value,
        ) -> BoxFuture<'static, ApiResult> {
            self.push(Action::PatchPvc(format!("{namespace}/{name}"), patch));
            Box::pin(async { Ok(()) })
        }
        fn patch_pv(&self, name: &str, patch: Value) -> BoxFuture<'static, ApiResult> {
            self.push(Action::PatchPv(name.to_owned(), patch));
            Box::pin(async { Ok(()) })
        }
        fn record(&self, event: SchedulerEvent) {
            self.push(Action::Event(
                event.regarding.name,
                event.reason,
                event.note,
            ));
        }
    }
}
