//! Recording events through kube-runtime's `Recorder` (events.k8s.io/v1, with series).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

/// Records a Normal (or Warning) event about `reference`; a failure is only logged.
pub async fn record(
    recorder: &Recorder,
    reference: &ObjectReference,
    warning: bool,
    reason: &str,
    message: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(message),
        action: reason.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, reference).await {
        tracing::debug!(%err, "recording an event failed");
    }
}
