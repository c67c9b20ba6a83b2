//! Printers for `apps/v1`: deployments, replicasets, statefulsets, daemonsets,
//! controllerrevisions.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{
    CONTROLLER_REVISION_REVISION, DEPLOYMENT_SPEC_SELECTOR, DEPLOYMENT_STATUS_AVAILABLE,
    DEPLOYMENT_STATUS_UPDATED, DS_SPEC_SELECTOR, DS_STATUS_AVAILABLE, DS_STATUS_CURRENT,
    DS_STATUS_DESIRED, DS_STATUS_READY, DS_STATUS_UPDATED, POD_SPEC_NODE_SELECTOR,
    RS_SPEC_REPLICAS, RS_SPEC_SELECTOR, RS_STATUS_READY_REPLICAS, RS_STATUS_REPLICAS,
};
use crate::format::{
    CONTAINERS_DESC, IMAGES_DESC, age, age_column, arr_at, bool_at, col, format_label_selector,
    format_labels, int_at, name, name_column, obj_at, selector_string, str_at, template_cells,
    wide,
};
use crate::{Printer, TablePrinter};

/// The printer for an `apps` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    let p: &'static dyn Printer = match resource {
        "deployments" => &DEPLOYMENT,
        "replicasets" => &REPLICA_SET,
        "statefulsets" => &STATEFUL_SET,
        "daemonsets" => &DAEMON_SET,
        "controllerrevisions" => &CONTROLLER_REVISION,
        _ => return None,
    };
    Some(p)
}

/// `ready/desired`.
fn ready_of_desired(obj: &Value) -> Value {
    Value::from(format!(
        "{}/{}",
        int_at(obj, "/status/readyReplicas"),
        int_at(obj, "/spec/replicas")
    ))
}

static DEPLOYMENT: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Ready", "string", "Number of the pod with ready state"),
        col("Up-to-date", "string", DEPLOYMENT_STATUS_UPDATED),
        col("Available", "string", DEPLOYMENT_STATUS_AVAILABLE),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
        wide("Selector", "string", DEPLOYMENT_SPEC_SELECTOR),
    ],
    row: deployment_row,
};

fn deployment_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let selector =
        selector_string(obj.pointer("/spec/selector")).unwrap_or_else(|()| "<invalid>".to_string());
    let [names, images] = template_cells(obj, "/spec/template/spec");
    vec![
        name(obj),
        ready_of_desired(obj),
        Value::from(int_at(obj, "/status/updatedReplicas")),
        Value::from(int_at(obj, "/status/availableReplicas")),
        age(obj, now),
        names,
        images,
        Value::from(selector),
    ]
}

static REPLICA_SET: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Desired", "integer", RS_SPEC_REPLICAS),
        col("Current", "integer", RS_STATUS_REPLICAS),
        col("Ready", "integer", RS_STATUS_READY_REPLICAS),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
        wide("Selector", "string", RS_SPEC_SELECTOR),
    ],
    row: replica_set_row,
};

fn replica_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [names, images] = template_cells(obj, "/spec/template/spec");
    vec![
        name(obj),
        Value::from(int_at(obj, "/spec/replicas")),
        Value::from(int_at(obj, "/status/replicas")),
        Value::from(int_at(obj, "/status/readyReplicas")),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

static STATEFUL_SET: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Ready", "string", "Number of the pod with ready state"),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
    ],
    row: stateful_set_row,
};

fn stateful_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [names, images] = template_cells(obj, "/spec/template/spec");
    vec![
        name(obj),
        ready_of_desired(obj),
        age(obj, now),
        names,
        images,
    ]
}

static DAEMON_SET: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Desired", "integer", DS_STATUS_DESIRED),
        col("Current", "integer", DS_STATUS_CURRENT),
        col("Ready", "integer", DS_STATUS_READY),
        col("Up-to-date", "integer", DS_STATUS_UPDATED),
        col("Available", "integer", DS_STATUS_AVAILABLE),
        col("Node Selector", "string", POD_SPEC_NODE_SELECTOR),
        age_column(),
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
        wide("Selector", "string", DS_SPEC_SELECTOR),
    ],
    row: daemon_set_row,
};

fn daemon_set_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [names, images] = template_cells(obj, "/spec/template/spec");
    let status = |field: &str| Value::from(int_at(obj, &format!("/status/{field}")));
    vec![
        name(obj),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        Value::from(format_labels(obj_at(
            obj,
            "/spec/template/spec/nodeSelector",
        ))),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

static CONTROLLER_REVISION: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Controller", "string", "Controller of the object"),
        col("Revision", "string", CONTROLLER_REVISION_REVISION),
        age_column(),
    ],
    row: controller_revision_row,
};

fn controller_revision_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(controller_name(obj)),
        Value::from(int_at(obj, "/revision")),
        age(obj, now),
    ]
}

/// `kind.group/name` (lower-cased kind and group) of the controlling owner, or `<none>`.
fn controller_name(obj: &Value) -> String {
    let owner = arr_at(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| bool_at(r, "/controller"));
    let Some(owner) = owner else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, "/apiVersion");
    let group = match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let kind = str_at(owner, "/kind");
    let owner_name = str_at(owner, "/name");
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    if group_kind.is_empty() {
        owner_name.to_string()
    } else {
        format!("{}/{owner_name}", group_kind.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, columns, print};

    fn template() -> serde_json::Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}})
    }

    #[test]
    fn deployment_two_of_three_ready() {
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(45 * 60)},
            "spec": {"replicas": 3, "template": template(),
                     "selector": {"matchLabels": {"app": "web"},
                                  "matchExpressions": [{"key": "env", "operator": "In",
                                                        "values": ["prod", "canary"]}]}},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3,
                       "availableReplicas": 2}});
        assert_eq!(
            print("apps", "deployments", &d),
            json!([
                "web",
                "2/3",
                3,
                2,
                "45m",
                "nginx",
                "nginx:1.27",
                "app=web,env in (canary,prod)"
            ])
        );
        assert_eq!(
            columns("apps", "deployments"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ]
        );
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 1}});
        assert_eq!(
            print("apps", "deployments", &fresh),
            json!(["new", "0/1", 0, 0, "<unknown>", "", "", ""])
        );
        let invalid = json!({"spec": {"selector": {"matchExpressions": [
            {"key": "a", "operator": "In", "values": []}]}}});
        assert_eq!(print("apps", "deployments", &invalid)[7], "<invalid>");
    }

    #[test]
    fn replica_set_and_stateful_set() {
        let rs = json!({"metadata": {"name": "web-5d9", "creationTimestamp": ago(600)},
            "spec": {"replicas": 3, "template": template(),
                     "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"},
                                                       {"key": "old", "operator": "DoesNotExist"},
                                                       {"key": "env", "operator": "NotIn",
                                                        "values": ["dev"]}]}},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            print("apps", "replicasets", &rs),
            json!([
                "web-5d9",
                3,
                3,
                1,
                "10m",
                "nginx",
                "nginx:1.27",
                "app,env notin (dev),!old"
            ])
        );
        let empty_selector = json!({"spec": {"selector": {}}});
        assert_eq!(print("apps", "replicasets", &empty_selector)[7], "<none>");
        let bad = json!({"spec": {"selector": {"matchExpressions": [
            {"key": "a", "operator": "Exists", "values": ["x"]}]}}});
        assert_eq!(print("apps", "replicasets", &bad)[7], "<error>");

        let sts = json!({"metadata": {"name": "db", "creationTimestamp": ago(90)},
            "spec": {"replicas": 2, "template": template()}, "status": {"readyReplicas": 2}});
        assert_eq!(
            print("apps", "statefulsets", &sts),
            json!(["db", "2/2", "90s", "nginx", "nginx:1.27"])
        );
    }

    #[test]
    fn daemon_set() {
        let mut t = template();
        t["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        let ds = json!({"metadata": {"name": "proxy", "creationTimestamp": ago(86400 * 3)},
            "spec": {"template": t, "selector": {"matchLabels": {"app": "proxy"}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                       "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            print("apps", "daemonsets", &ds),
            json!([
                "proxy",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "3d",
                "nginx",
                "nginx:1.27",
                "app=proxy"
            ])
        );
    }

    #[test]
    fn controller_revision() {
        let cr = json!({"metadata": {"name": "proxy-7f8", "creationTimestamp": ago(60),
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "other"},
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "proxy",
                 "controller": true}]},
            "revision": 4});
        assert_eq!(
            print("apps", "controllerrevisions", &cr),
            json!(["proxy-7f8", "daemonset.apps/proxy", 4, "60s"])
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(print("apps", "controllerrevisions", &orphan)[1], "<none>");
        let core_owner = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Widget", "name": "w", "controller": true}]}});
        assert_eq!(
            print("apps", "controllerrevisions", &core_owner)[1],
            "widget/w"
        );
    }
}
