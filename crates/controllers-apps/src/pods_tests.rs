use super::*;
use crate::builders::{PodBuilder, labels, now};

fn order(pods: Vec<Pod>) -> Vec<String> {
    let mut pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
    let related = pods.clone();
    sort_for_deletion(&mut pods, &related, now());
    pods.iter().map(|p| p.name_any()).collect()
}

#[test]
fn unassigned_before_pending_before_running_before_ready() {
    let got = order(vec![
        PodBuilder::new("ready")
            .node("n1")
            .ready_since(-100)
            .build(),
        PodBuilder::new("running")
            .node("n1")
            .phase("Running")
            .build(),
        PodBuilder::new("unknown")
            .node("n1")
            .phase("Unknown")
            .build(),
        PodBuilder::new("pending").node("n1").build(),
        PodBuilder::new("unassigned").phase("Running").build(),
    ]);
    assert_eq!(
        got,
        ["unassigned", "pending", "unknown", "running", "ready"]
    );
}

#[test]
fn deletion_cost_then_colocation_then_ready_time_restarts_and_age() {
    let got = order(vec![
        PodBuilder::new("costly")
            .node("n1")
            .ready_since(-10)
            .annotation(DELETION_COST, "10")
            .build(),
        PodBuilder::new("cheap")
            .node("n2")
            .ready_since(-100_000)
            .annotation(DELETION_COST, "-5")
            .build(),
        PodBuilder::new("old-ready")
            .node("n3")
            .ready_since(-100_000)
            .build(),
        PodBuilder::new("new-ready")
            .node("n4")
            .ready_since(-10)
            .build(),
    ]);
    assert_eq!(got, ["cheap", "new-ready", "old-ready", "costly"]);
    let got = order(vec![
        PodBuilder::new("alone")
            .node("n1")
            .ready_since(-100)
            .build(),
        PodBuilder::new("pair-a")
            .node("n2")
            .ready_since(-100)
            .build(),
        PodBuilder::new("pair-b")
            .node("n2")
            .ready_since(-100)
            .build(),
    ]);
    assert_eq!(got[2], "alone", "doubled-up pods go first: {got:?}");
    let got = order(vec![
        PodBuilder::new("few")
            .node("n1")
            .ready_since(-100)
            .restarts(1)
            .build(),
        PodBuilder::new("many")
            .node("n2")
            .ready_since(-100)
            .restarts(5)
            .build(),
    ]);
    assert_eq!(got, ["many", "few"]);
    let got = order(vec![
        PodBuilder::new("old")
            .node("n1")
            .phase("Running")
            .created(-100_000)
            .build(),
        PodBuilder::new("new")
            .node("n2")
            .phase("Running")
            .created(-10)
            .build(),
    ]);
    assert_eq!(got, ["new", "old"]);
}

#[test]
fn availability_needs_min_ready_seconds() {
    let pod = PodBuilder::new("p").ready_since(-5).build();
    assert!(is_available(&pod, 0, now()));
    assert!(is_available(&pod, 4, now()));
    assert!(!is_available(&pod, 5, now()));
    assert!(!is_available(&PodBuilder::new("q").build(), 0, now()));
}

#[test]
fn claim_adopts_orphans_keeps_own_and_releases_mismatches() {
    let sel = |l: &std::collections::BTreeMap<String, String>| {
        l.get("app").map(String::as_str) == Some("web")
    };
    let pods = [
        PodBuilder::new("own")
            .owner("ReplicaSet", "rs", "uid-rs")
            .build(),
        PodBuilder::new("orphan").build(),
        PodBuilder::new("orphan-other")
            .labels(&[("app", "db")])
            .build(),
        PodBuilder::new("orphan-deleting").deleting().build(),
        PodBuilder::new("theirs")
            .owner("ReplicaSet", "x", "uid-x")
            .build(),
        PodBuilder::new("moved")
            .labels(&[("app", "db")])
            .owner("ReplicaSet", "rs", "uid-rs")
            .build(),
    ]
    .map(Arc::new);
    let c = claim("uid-rs", false, sel, pods.iter().cloned());
    let names = |v: &[Arc<Pod>]| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
    assert_eq!(names(&c.owned), ["own", "orphan"]);
    assert_eq!(names(&c.adopt), ["orphan"]);
    assert_eq!(names(&c.release), ["moved"]);
    let c = claim("uid-rs", true, sel, pods.iter().cloned());
    assert!(c.adopt.is_empty() && c.release.is_empty());
    let _ = labels(&[]);
}

#[test]
fn deletion_order_is_total_over_many_mixed_pods() {
    // Upstream's pairwise comparator is not a total order; ours must be (Rust's sort panics).
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut pods: Vec<std::sync::Arc<k8s_openapi::api::core::v1::Pod>> = (0..600)
        .map(|i| {
            let ready = now - k8s_openapi::jiff::SignedDuration::from_secs((i * 37 % 500) as i64 + 1);
            let created = now - k8s_openapi::jiff::SignedDuration::from_secs((i * 53 % 700) as i64 + 1);
            std::sync::Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("p{i}"), "uid": format!("u{}", i * 7919 % 600),
                                 "creationTimestamp": created.to_string()},
                    "spec": {"nodeName": format!("n{}", i % 7), "containers": []},
                    "status": {"phase": "Running",
                               "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready.to_string()}],
                               "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": i % 3}]}
                }))
                .expect("pod"),
            )
        })
        .collect();
    let related = pods.clone();
    crate::pods::sort_for_deletion(&mut pods, &related, now);
    assert_eq!(pods.len(), 600);
}
