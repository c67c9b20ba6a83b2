use super::*;
use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;

const S: i64 = 1000;

fn counts(current: i32, desired: i32, min: i32, max: i32) -> Counts {
    Counts {
        current,
        desired,
        min,
        max,
    }
}

fn policy(kind: &str, value: i32, period: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: kind.into(),
        value,
        period_seconds: period,
    }
}

fn behavior(up: Option<HPAScalingRules>, down: Option<HPAScalingRules>) -> Behavior {
    let b = HorizontalPodAutoscalerBehavior {
        scale_up: up,
        scale_down: down,
    };
    Behavior::resolve(Some(&b), 300).expect("a behavior")
}

#[test]
fn defaults_are_upstreams() {
    assert_eq!(Behavior::resolve(None, 300), None);
    let b = behavior(None, None);
    assert_eq!(b.up.window_s, 0);
    assert_eq!(b.up.select, Select::Max);
    assert_eq!(b.up.policies.len(), 2);
    assert_eq!(b.down.window_s, 300);
    assert_eq!(
        b.down.policies,
        vec![Policy {
            percent: true,
            value: 100,
            period_s: 15
        }]
    );
}

#[test]
fn legacy_scale_down_is_stabilized_for_the_window() {
    let mut m = Memory::default();
    let n = m.normalize(None, counts(5, 5, 1, 10), 300, 0);
    assert_eq!(n.replicas, 5);
    assert_eq!(n.able_to_scale.reason, "ReadyForNewScale");
    let n = m.normalize(None, counts(5, 2, 1, 10), 300, 60 * S);
    assert_eq!(n.replicas, 5);
    assert_eq!(n.able_to_scale.reason, "ScaleDownStabilized");
    let n = m.normalize(None, counts(5, 2, 1, 10), 300, 301 * S);
    assert_eq!(n.replicas, 2);
    assert_eq!(n.scaling_limited.reason, "DesiredWithinRange");
    assert!(!n.scaling_limited.status);
}

#[test]
fn legacy_limits_double_and_bound() {
    let mut m = Memory::default();
    let n = m.normalize(None, counts(1, 10, 1, 20), 300, 0);
    assert_eq!(n.replicas, 4);
    assert_eq!(
        (n.scaling_limited.status, n.scaling_limited.reason),
        (true, "ScaleUpLimit")
    );
    let n = Memory::default().normalize(None, counts(3, 10, 1, 5), 300, 0);
    assert_eq!(
        (n.replicas, n.scaling_limited.reason),
        (5, "TooManyReplicas")
    );
    let n = Memory::default().normalize(None, counts(3, 0, 2, 5), 0, 0);
    assert_eq!(
        (n.replicas, n.scaling_limited.reason),
        (2, "TooFewReplicas")
    );
}

#[test]
fn scale_up_policies_count_recent_events() {
    let up = HPAScalingRules {
        policies: Some(vec![policy("Pods", 1, 60)]),
        ..Default::default()
    };
    let b = behavior(Some(up), None);
    let mut m = Memory::default();
    let n = m.normalize(Some(&b), counts(2, 6, 1, 10), 300, 0);
    assert_eq!((n.replicas, n.scaling_limited.reason), (3, "ScaleUpLimit"));
    m.record_scale(Some(&b), 2, 3, 0);
    let n = m.normalize(Some(&b), counts(3, 6, 1, 10), 300, 10 * S);
    assert_eq!(n.replicas, 3, "one pod per minute already used");
    let n = m.normalize(Some(&b), counts(3, 6, 1, 10), 300, 61 * S);
    assert_eq!(n.replicas, 4);
}

#[test]
fn scale_down_percent_and_stabilization() {
    let down = HPAScalingRules {
        stabilization_window_seconds: Some(60),
        policies: Some(vec![policy("Percent", 50, 60), policy("Pods", 1, 60)]),
        select_policy: Some("Min".into()),
        ..Default::default()
    };
    let b = behavior(None, Some(down));
    let mut m = Memory::default();
    let n = m.normalize(Some(&b), counts(10, 2, 1, 10), 300, 0);
    // Min picks the smaller change: one pod rather than half.
    assert_eq!(
        (n.replicas, n.scaling_limited.reason),
        (9, "ScaleDownLimit")
    );
    let mut m = Memory::default();
    m.normalize(Some(&b), counts(8, 8, 1, 10), 300, 0);
    let n = m.normalize(Some(&b), counts(8, 4, 1, 10), 300, 30 * S);
    assert_eq!(
        (n.replicas, n.able_to_scale.reason),
        (8, "ScaleDownStabilized")
    );
    let disabled = HPAScalingRules {
        select_policy: Some("Disabled".into()),
        ..Default::default()
    };
    let b = behavior(None, Some(disabled));
    let n = Memory::default().normalize(Some(&b), counts(8, 4, 1, 10), 0, 0);
    assert_eq!(n.replicas, 8);
}
