use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use super::plan::*;
use crate::builders::{PodBuilder, now};

fn ds(extra: serde_json::Value) -> DaemonSet {
    let mut v = json!({
        "metadata": {"name": "agent", "namespace": "ns", "uid": "uid-ds", "generation": 2},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            spec.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).expect("daemonset")
}

fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}
        }))
        .expect("node"),
    )
}

fn daemon_pod(name: &str, node: &str, hash: &str) -> Arc<Pod> {
    Arc::new(
        PodBuilder::new(name)
            .labels(&[("app", "web"), ("controller-revision-hash", hash)])
            .owner("DaemonSet", "agent", "uid-ds")
            .node(node)
            .ready_since(-100)
            .build(),
    )
}

#[test]
fn one_pod_per_eligible_node_following_selector_and_taints() {
    let d = ds(json!({"template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c"}], "nodeSelector": {"role": "edge"}}}}));
    let nodes = [
        node("a", json!({"role": "edge"}), json!([])),
        node("b", json!({"role": "core"}), json!([])),
        node(
            "c",
            json!({"role": "edge"}),
            json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
        ),
        node(
            "d",
            json!({"role": "edge"}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        ),
        node(
            "e",
            json!({"role": "edge"}),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        ),
    ];
    let stray = daemon_pod("stray", "b", "h1");
    let (actions, status) = plan(&d, &nodes, &[stray], "h1", now());
    assert_eq!(
        actions,
        [
            Action::Create { node: "a".into() },
            Action::Delete {
                pod: "stray".into()
            },
            Action::Create { node: "d".into() },
            Action::Create { node: "e".into() },
        ]
    );
    assert_eq!(
        (status.desired_number_scheduled, status.number_misscheduled),
        (3, 1)
    );
    assert_eq!(status.observed_generation, Some(2));
}

#[test]
fn pods_are_pinned_by_node_affinity_with_default_tolerations() {
    let d = ds(json!({}));
    let t = pod_template(&d, "h1", "node-3");
    let spec = t.spec.clone().unwrap_or_default();
    assert!(spec.node_name.is_none());
    let pod = Pod {
        metadata: Default::default(),
        spec: Some(spec.clone()),
        status: None,
    };
    assert_eq!(target_node(&pod).as_deref(), Some("node-3"));
    let keys: Vec<_> = spec
        .tolerations
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.key)
        .collect();
    assert!(keys.contains(&"node.kubernetes.io/unreachable".to_string()));
    assert!(keys.contains(&"node.kubernetes.io/unschedulable".to_string()));
    assert!(!keys.contains(&"node.kubernetes.io/network-unavailable".to_string()));
    let labels = t.metadata.unwrap_or_default().labels.unwrap_or_default();
    assert_eq!(
        labels.get("controller-revision-hash").map(String::as_str),
        Some("h1")
    );
}

#[test]
fn rolling_update_replaces_at_most_max_unavailable_and_ondelete_waits() {
    let d = ds(json!({}));
    let nodes = [
        node("a", json!({}), json!([])),
        node("b", json!({}), json!([])),
        node("c", json!({}), json!([])),
    ];
    let pods = [
        daemon_pod("pa", "a", "old"),
        daemon_pod("pb", "b", "old"),
        daemon_pod("pc", "c", "new"),
    ];
    let (actions, status) = plan(&d, &nodes, &pods, "new", now());
    assert_eq!(actions, [Action::Delete { pod: "pa".into() }]);
    assert_eq!(
        (status.number_ready, status.updated_number_scheduled),
        (3, Some(1))
    );
    let d = ds(json!({"updateStrategy": {"type": "OnDelete"}}));
    assert!(plan(&d, &nodes, &pods, "new", now()).0.is_empty());
}

fn surge_ds() -> DaemonSet {
    ds(json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}))
}

fn starting_pod(name: &str, node: &str, hash: &str) -> Arc<Pod> {
    Arc::new(
        PodBuilder::new(name)
            .labels(&[("app", "web"), ("controller-revision-hash", hash)])
            .owner("DaemonSet", "agent", "uid-ds")
            .node(node)
            .created(-10)
            .build(),
    )
}

#[test]
fn surge_starts_the_new_pod_before_removing_the_old_one_per_node() {
    let d = surge_ds();
    let nodes = [
        node("a", json!({}), json!([])),
        node("b", json!({}), json!([])),
    ];
    let old = [daemon_pod("pa", "a", "old"), daemon_pod("pb", "b", "old")];
    let (actions, _) = plan(&d, &nodes, &old, "new", now());
    assert_eq!(
        actions,
        [Action::Create { node: "a".into() }],
        "one surge pod"
    );

    // The new pod on a is starting: the old one stays, no second surge pod.
    let pods = [
        old[0].clone(),
        old[1].clone(),
        starting_pod("na", "a", "new"),
    ];
    let (actions, status) = plan(&d, &nodes, &pods, "new", now());
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(status.number_available, Some(2));

    // Once it is available the old pod on a goes.
    let pods = [old[0].clone(), old[1].clone(), daemon_pod("na", "a", "new")];
    let (actions, _) = plan(&d, &nodes, &pods, "new", now());
    assert_eq!(actions, [Action::Delete { pod: "pa".into() }]);

    // An unavailable old pod gets its replacement at once, beyond maxSurge.
    let broken = Arc::new(
        PodBuilder::new("pb")
            .labels(&[("app", "web"), ("controller-revision-hash", "old")])
            .owner("DaemonSet", "agent", "uid-ds")
            .node("b")
            .phase("Running")
            .build(),
    );
    let pods = [old[0].clone(), broken, starting_pod("na", "a", "new")];
    let (actions, _) = plan(&d, &nodes, &pods, "new", now());
    assert_eq!(actions, [Action::Create { node: "b".into() }]);
}

#[test]
fn without_surge_a_second_pod_on_a_node_is_deleted() {
    let d = ds(json!({}));
    let nodes = [node("a", json!({}), json!([]))];
    let pods = [daemon_pod("pa", "a", "old"), starting_pod("na", "a", "new")];
    let (actions, _) = plan(&d, &nodes, &pods, "new", now());
    assert_eq!(
        actions,
        [Action::Delete { pod: "na".into() }],
        "the newer goes"
    );
}

#[test]
fn a_daemonset_being_deleted_creates_nothing() {
    let mut d = ds(json!({}));
    d.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let nodes = [node("a", json!({}), json!([]))];
    let (actions, status) = plan(&d, &nodes, &[], "h1", now());
    assert!(actions.is_empty());
    assert_eq!(status.desired_number_scheduled, 1);
}
