//! Crate-level tests (registry, default printer, human durations) and helpers shared by the
//! printers' tests.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::{default_printer, human_duration, printer_for};

/// The fixed "now" of every test: 2024-05-01T12:00:00Z.
pub(crate) fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The RFC 3339 time `secs` seconds before [`now`].
pub(crate) fn ago(secs: i64) -> String {
    (now() - TimeDelta::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The row the printer registered for `group`/`resource` gives `obj`, as a JSON array; checks
/// that there is one cell per column.
pub(crate) fn print(group: &str, resource: &str, obj: &Value) -> Value {
    let printer = printer_for(group, resource).expect("a printer is registered");
    let cells = printer.row(obj, now());
    assert_eq!(cells.len(), printer.columns().len(), "{group}/{resource}");
    Value::Array(cells)
}

/// `(name, priority)` of each column of the printer for `group`/`resource`.
pub(crate) fn columns(group: &str, resource: &str) -> Vec<(&'static str, i32)> {
    let printer = printer_for(group, resource).expect("a printer is registered");
    printer
        .columns()
        .iter()
        .map(|c| (c.name, c.priority))
        .collect()
}

/// Every resource the brief requires, by group.
const REQUIRED: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "podtemplates"),
    ("", "replicationcontrollers"),
    ("", "services"),
    ("", "endpoints"),
    ("", "nodes"),
    ("", "namespaces"),
    ("", "events"),
    ("", "secrets"),
    ("", "serviceaccounts"),
    ("", "configmaps"),
    ("", "persistentvolumes"),
    ("", "persistentvolumeclaims"),
    ("", "resourcequotas"),
    ("", "limitranges"),
    ("", "componentstatuses"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "controllerrevisions"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("coordination.k8s.io", "leases"),
    ("discovery.k8s.io", "endpointslices"),
    ("events.k8s.io", "events"),
    ("policy", "poddisruptionbudgets"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("networking.k8s.io", "networkpolicies"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"),
    ("storage.k8s.io", "storageclasses"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
];

#[test]
fn every_required_resource_has_a_printer() {
    for (group, resource) in REQUIRED {
        let printer = printer_for(group, resource);
        assert!(printer.is_some(), "{group}/{resource}");
    }
    assert!(printer_for("", "widgets").is_none());
    assert!(printer_for("example.com", "pods").is_none());
}

/// Every printer returns one cell per column, without panicking, for empty and odd objects.
#[test]
fn odd_objects_print_without_panicking() {
    let odd = [
        json!({}),
        json!(null),
        json!("pod"),
        json!({"metadata": {"name": 5, "creationTimestamp": "yesterday", "labels": []},
               "spec": {"containers": "x", "selector": {"matchExpressions": [{"operator": 1}]},
                        "ports": [{"port": "80"}], "metrics": [{"type": "Resource"}]},
               "status": {"containerStatuses": [1, "a", {"state": []}],
                          "conditions": {"type": "Ready"}, "hard": {"cpu": 3}}}),
    ];
    for (group, resource) in REQUIRED {
        for obj in &odd {
            print(group, resource, obj);
        }
    }
}

#[test]
fn roles_and_limitranges_use_the_default_table() {
    let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-01-02T03:04:05Z"}});
    for (group, resource) in [
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("", "limitranges"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    ] {
        assert_eq!(columns(group, resource), [("Name", 0), ("Created At", 0)]);
        assert_eq!(
            print(group, resource, &role),
            json!(["reader", "2024-01-02T03:04:05Z"])
        );
    }
    let defaults = default_printer().columns();
    assert_eq!(defaults[0].format, "name");
    assert_eq!(defaults[1].type_, "date");
}

#[test]
fn default_table_prints_a_missing_creation_time_as_go_zero_time() {
    let cells = default_printer().row(&json!({"metadata": {"name": "x"}}), now());
    assert_eq!(cells, [json!("x"), json!("0001-01-01T00:00:00Z")]);
}

#[test]
fn column_definition_json() {
    let printer = printer_for("", "pods").expect("pods");
    let ip = printer.columns()[5].definition();
    assert_eq!(ip["name"], "IP");
    assert_eq!(ip["type"], "string");
    assert_eq!(ip["format"], "");
    assert_eq!(ip["priority"], 1);
    assert!(
        ip["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("podIP address"))
    );
}

#[test]
fn human_duration_at_its_boundaries() {
    let ms = TimeDelta::milliseconds;
    let s = TimeDelta::seconds;
    let m = TimeDelta::minutes;
    let h = TimeDelta::hours;
    let d = TimeDelta::days;
    let cases = [
        (s(-2), "<invalid>"),
        (ms(-1999), "0s"),
        (s(-1), "0s"),
        (ms(-500), "0s"),
        (s(0), "0s"),
        (s(5), "5s"),
        (ms(119_999), "119s"),
        (s(120), "2m"),
        (s(121), "2m1s"),
        (s(182), "3m2s"),
        (s(599), "9m59s"),
        (m(10), "10m"),
        (m(179) + s(59), "179m"),
        (m(180), "3h"),
        (h(3) + m(1), "3h1m"),
        (h(7) + m(59), "7h59m"),
        (h(8), "8h"),
        (h(47) + m(59), "47h"),
        (h(48), "2d"),
        (d(2) + h(3), "2d3h"),
        (d(7) + h(23), "7d23h"),
        (d(8), "8d"),
        (d(729), "729d"),
        (d(730), "2y"),
        (d(731), "2y1d"),
        (d(8 * 365) - h(1), "7y364d"),
        (d(8 * 365), "8y"),
        (d(100 * 365), "100y"),
    ];
    for (delta, want) in cases {
        assert_eq!(human_duration(delta), want, "{delta:?}");
    }
}
