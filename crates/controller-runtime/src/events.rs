//! Events on the objects a controller manages, through kube's [`Recorder`], published in the
//! background so a sync never waits on them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes events as one controller (`reportingController` = its upstream name).
#[derive(Clone)]
pub struct EventSink {
    recorder: Option<Recorder>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}

impl EventSink {
    /// Events reported by `controller` through `client`.
    pub fn new(client: kube::Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.into(),
            instance: None,
        };
        EventSink {
            recorder: Some(Recorder::new(client, reporter)),
        }
    }

    /// A sink that drops every event (for unit tests).
    pub fn disabled() -> Self {
        EventSink { recorder: None }
    }

    /// A Normal event.
    pub fn normal(&self, on: &ObjectReference, reason: &str, note: String) {
        self.publish(on, None, EventType::Normal, reason, note);
    }

    /// A Warning event.
    pub fn warning(&self, on: &ObjectReference, reason: &str, note: String) {
        self.publish(on, None, EventType::Warning, reason, note);
    }

    /// A Warning event if `warning`, else a Normal one.
    pub fn record(&self, on: &ObjectReference, warning: bool, reason: &str, note: String) {
        self.publish(on, None, event_type(warning), reason, note);
    }

    /// An event about `on` concerning `related` (e.g. the pod a set created). Events with the
    /// same reason about different related objects are kept apart instead of being counted
    /// as one series.
    pub fn about(
        &self,
        on: &ObjectReference,
        related: ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        self.publish(on, Some(related), event_type(warning), reason, note);
    }

    fn publish(
        &self,
        on: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: related,
        };
        let on = on.clone();
        tokio::spawn(async move {
            if let Err(err) = recorder.publish(&event, &on).await {
                tracing::debug!(%err, "recording an event failed");
            }
        });
    }
}

fn event_type(warning: bool) -> EventType {
    if warning {
        EventType::Warning
    } else {
        EventType::Normal
    }
}
