use super::*;
use crate::testutil::{node, pod};

fn cfg() -> NodeLifecycleConfig {
    NodeLifecycleConfig {
        node_monitor_grace_period: Duration::from_secs(3),
        node_eviction_rate: 1.0,
        ..Default::default()
    }
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(s).expect("time")
}

fn taint_keys(plan: &Plan, node_name: &str) -> Option<Vec<String>> {
    plan.actions.iter().find_map(|a| match a {
        Action::SetTaints { node, taints } if node == node_name => Some(
            taints
                .iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect(),
        ),
        _ => None,
    })
}

#[test]
fn a_silent_node_goes_unknown_is_tainted_and_its_pods_not_ready() {
    let mut m = Monitor::new(cfg());
    let t0 = Instant::now();
    let n1 = node("n1").ready("True", at(100)).build();
    let n2 = node("n2").ready("True", at(100)).build();
    let p = pod("p").on("n1").ready("True").build();
    let none = HashMap::new();
    let first = m.sync(t0, at(100), &[&n1, &n2], &none, &[&p]);
    assert_eq!(first.actions, vec![]);
    assert!(
        first
            .next
            .is_some_and(|d| d <= Duration::from_secs(3) + Duration::from_millis(1))
    );

    // n2 keeps renewing its Lease, n1 does not.
    let mut lease = Lease::default();
    lease.metadata.name = Some("n2".into());
    lease.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
        renew_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            at(103),
        )),
        ..Default::default()
    });
    let leases = HashMap::from([("n2".to_string(), &lease)]);
    let later = t0 + Duration::from_secs(4);
    let plan = m.sync(later, at(104), &[&n1, &n2], &leases, &[&p]);
    let Some(Action::SetConditions { node, conditions }) = plan.actions.first() else {
        panic!("conditions first: {:?}", plan.actions);
    };
    assert_eq!(node, "n1");
    let ready = condition(conditions, "Ready").expect("Ready");
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    assert_eq!(
        conditions.len(),
        4,
        "memory, disk and PID pressure added as Unknown"
    );
    assert!(plan.actions.contains(&Action::NodeEvent {
        node: "n1".into(),
        uid: "n1".into(),
        reason: "NodeNotReady".into(),
        message: "Node n1 status is now: NodeNotReady".into(),
    }));
    assert!(plan.actions.contains(&Action::MarkPodNotReady {
        namespace: "default".into(),
        name: "p".into()
    }));
    assert_eq!(
        taint_keys(&plan, "n1"),
        Some(vec![
            "node.kubernetes.io/unreachable:NoSchedule".to_string(),
            "node.kubernetes.io/unreachable:NoExecute".to_string()
        ])
    );
    assert_eq!(taint_keys(&plan, "n2"), None);
}

#[test]
fn not_ready_nodes_get_not_ready_taints_and_ready_ones_lose_them() {
    let mut m = Monitor::new(cfg());
    let t0 = Instant::now();
    let sick = node("sick").ready("False", at(100)).build();
    let back = node("back")
        .ready("True", at(100))
        .taint(TAINT_UNREACHABLE, "NoExecute", at(50))
        .taint(TAINT_UNREACHABLE, "NoSchedule", at(50))
        .build();
    let plan = m.sync(t0, at(100), &[&sick, &back], &HashMap::new(), &[]);
    assert_eq!(
        taint_keys(&plan, "sick"),
        Some(vec![
            "node.kubernetes.io/not-ready:NoSchedule".to_string(),
            "node.kubernetes.io/not-ready:NoExecute".to_string()
        ])
    );
    assert_eq!(taint_keys(&plan, "back"), Some(vec![]));
}

#[test]
fn unschedulable_follows_the_spec() {
    let mut m = Monitor::new(cfg());
    let cordoned = node("c").ready("True", at(100)).unschedulable().build();
    let plan = m.sync(Instant::now(), at(100), &[&cordoned], &HashMap::new(), &[]);
    assert_eq!(
        taint_keys(&plan, "c"),
        Some(vec![
            "node.kubernetes.io/unschedulable:NoSchedule".to_string()
        ])
    );
    let uncordoned = node("c")
        .ready("True", at(100))
        .taint(TAINT_UNSCHEDULABLE, "NoSchedule", at(100))
        .build();
    let plan = m.sync(
        Instant::now(),
        at(100),
        &[&uncordoned],
        &HashMap::new(),
        &[],
    );
    assert_eq!(taint_keys(&plan, "c"), Some(vec![]));
}

#[test]
fn no_execute_taints_are_rate_limited_per_zone() {
    let mut m = Monitor::new(NodeLifecycleConfig {
        node_eviction_rate: 0.1,
        ..cfg()
    });
    let nodes: Vec<Node> = (0..6)
        .map(|i| {
            let status = if i < 2 { "False" } else { "True" };
            node(&format!("n{i}"))
                .ready(status, at(100))
                .zone("a")
                .build()
        })
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let plan = m.sync(Instant::now(), at(100), &refs, &HashMap::new(), &[]);
    let no_execute = |plan: &Plan| {
        plan.actions
            .iter()
            .filter(|a| {
                matches!(a, Action::SetTaints { taints, .. }
                if taints.iter().any(|t| t.effect == "NoExecute"))
            })
            .count()
    };
    assert_eq!(no_execute(&plan), 1, "one token: one node tainted");
    assert!(plan.next.is_some());
}

#[test]
fn zone_states_follow_upstream() {
    assert_eq!(zone_state(&[true, true, false], 0.55), ZoneState::Normal);
    assert_eq!(zone_state(&[false, false], 0.55), ZoneState::FullDisruption);
    assert_eq!(
        zone_state(&[true, false, false, false], 0.55),
        ZoneState::PartialDisruption
    );
    assert_eq!(
        zone_state(&[true, true, false, false, false, false, true, true], 0.55),
        ZoneState::Normal
    );
}

#[test]
fn nothing_is_evicted_when_every_zone_is_down() {
    let mut m = Monitor::new(cfg());
    let a = node("a").ready("False", at(100)).zone("z1").build();
    let b = node("b").ready("Unknown", at(100)).zone("z2").build();
    let plan = m.sync(Instant::now(), at(100), &[&a, &b], &HashMap::new(), &[]);
    for name in ["a", "b"] {
        let keys = taint_keys(&plan, name).expect("NoSchedule taints");
        assert!(keys.iter().all(|k| k.ends_with(":NoSchedule")), "{keys:?}");
    }
}

#[test]
fn partial_disruption_of_a_small_zone_stops_tainting() {
    let mut m = Monitor::new(cfg());
    let nodes: Vec<Node> = (0..4)
        .map(|i| {
            let status = if i < 3 { "False" } else { "True" };
            node(&format!("n{i}"))
                .ready(status, at(100))
                .zone("a")
                .build()
        })
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let plan = m.sync(Instant::now(), at(100), &refs, &HashMap::new(), &[]);
    let tainted = plan.actions.iter().any(|a| {
        matches!(a, Action::SetTaints { taints, .. } if taints.iter().any(|t| t.effect == "NoExecute"))
    });
    assert!(!tainted);
}
