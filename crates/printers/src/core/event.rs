//! The event printer, for `v1` events and `events.k8s.io/v1` events alike (upstream serves both
//! from one storage and prints both with this table).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Column;
use crate::TablePrinter;
use crate::descriptions::{
    EVENT_COUNT, EVENT_FIRST_TIMESTAMP, EVENT_INVOLVED_OBJECT, EVENT_LAST_TIMESTAMP, EVENT_MESSAGE,
    EVENT_REASON, EVENT_SOURCE, EVENT_TYPE, META_NAME, OBJECT_REFERENCE_FIELD_PATH,
};
use crate::format::{col, int_at, name, obj_at, since, str_at, time_at, wide};

pub(crate) static EVENT: TablePrinter = TablePrinter {
    columns: &[
        col("Last Seen", "string", EVENT_LAST_TIMESTAMP),
        col("Type", "string", EVENT_TYPE),
        col("Reason", "string", EVENT_REASON),
        col("Object", "string", EVENT_INVOLVED_OBJECT),
        wide("Subobject", "string", OBJECT_REFERENCE_FIELD_PATH),
        wide("Source", "string", EVENT_SOURCE),
        col("Message", "string", EVENT_MESSAGE),
        wide("First Seen", "string", EVENT_FIRST_TIMESTAMP),
        wide("Count", "string", EVENT_COUNT),
        Column {
            name: "Name",
            type_: "string",
            format: "name",
            description: META_NAME,
            priority: 1,
        },
    ],
    row: event_row,
};

/// The JSON field names of one event shape.
struct Fields {
    involved: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    source: &'static str,
    message: &'static str,
    reporting_controller: &'static str,
}

/// `v1` Event field names.
const CORE: Fields = Fields {
    involved: "/involvedObject",
    first: "/firstTimestamp",
    last: "/lastTimestamp",
    count: "/count",
    source: "/source",
    message: "/message",
    reporting_controller: "/reportingComponent",
};

/// `events.k8s.io/v1` Event field names.
const EVENTS_API: Fields = Fields {
    involved: "/regarding",
    first: "/deprecatedFirstTimestamp",
    last: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    source: "/deprecatedSource",
    message: "/note",
    reporting_controller: "/reportingController",
};

fn event_row(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let f = if is_events_api(ev) {
        &EVENTS_API
    } else {
        &CORE
    };
    let first = match time_at(ev, f.first) {
        Some(t) => since(Some(t), now),
        None => since(time_at(ev, "/eventTime"), now),
    };
    let mut last = match time_at(ev, f.last) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(ev, f.count);
    if obj_at(ev, "/series").is_some() {
        last = since(time_at(ev, "/series/lastObservedTime"), now);
        count = int_at(ev, "/series/count");
    } else if count == 0 {
        // Singleton events have no count in the events.k8s.io API.
        count = 1;
    }
    vec![
        Value::from(last),
        Value::from(str_at(ev, "/type")),
        Value::from(str_at(ev, "/reason")),
        Value::from(target(ev, f.involved)),
        Value::from(str_at(ev, &format!("{}/fieldPath", f.involved))),
        Value::from(source(ev, f)),
        Value::from(str_at(ev, f.message).trim()),
        Value::from(first),
        Value::from(count),
        name(ev),
    ]
}

/// Whether the event is in the `events.k8s.io` shape.
fn is_events_api(ev: &Value) -> bool {
    str_at(ev, "/apiVersion").starts_with("events.k8s.io/")
        || (obj_at(ev, "/involvedObject").is_none() && obj_at(ev, "/regarding").is_some())
}

/// `kind/name` of the involved object, the kind lower-cased.
fn target(ev: &Value, involved: &str) -> String {
    let kind = str_at(ev, &format!("{involved}/kind")).to_lowercase();
    match str_at(ev, &format!("{involved}/name")) {
        "" => kind,
        name => format!("{kind}/{name}"),
    }
}

/// `component, host`, falling back to the reporting controller and instance.
fn source(ev: &Value, f: &Fields) -> String {
    let component = first_non_empty(
        str_at(ev, &format!("{}/component", f.source)),
        str_at(ev, f.reporting_controller),
    );
    let host = first_non_empty(
        str_at(ev, &format!("{}/host", f.source)),
        str_at(ev, "/reportingInstance"),
    );
    if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}
