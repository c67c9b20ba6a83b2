//! Events about pods, with upstream kubelet's reasons and messages, published in the
//! background so that a slow API never holds up a pod's sync.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The kubelet's event recorder.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// A reference to `pod`, or to its container `container` (as a `fieldPath`).
pub fn reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
    let field_path = container.map(|name| {
        let spec = pod.spec.as_ref();
        let init = spec
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.name == name));
        if init {
            format!("spec.initContainers{{{name}}}")
        } else {
            format!("spec.containers{{{name}}}")
        }
    });
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        field_path,
        ..Default::default()
    }
}

impl Events {
    /// A recorder reporting as `kubelet` on `node`.
    pub fn new(client: kube::Client, node: &str) -> Events {
        let reporter = Reporter {
            controller: "kubelet".into(),
            instance: Some(node.to_string()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    fn publish(&self, r: ObjectReference, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&ev, &r).await {
                tracing::debug!(error = %e, "publishing an event failed");
            }
        });
    }

    /// A normal event about `pod` (or one of its containers).
    pub fn normal(&self, pod: &Pod, container: Option<&str>, reason: &str, note: String) {
        self.publish(reference(pod, container), false, reason, note);
    }

    /// A warning about `pod` (or one of its containers).
    pub fn warning(&self, pod: &Pod, container: Option<&str>, reason: &str, note: String) {
        self.publish(reference(pod, container), true, reason, note);
    }
}
