use super::*;
use crate::builders::{PodBuilder, hpa};

const NOW: i64 = 1_000_000_000;

fn usage(cpu_milli: i64) -> PodUsage {
    PodUsage {
        timestamp_ms: NOW - 1_000,
        window_ms: 15_000,
        containers: BTreeMap::from([(
            "app".to_string(),
            BTreeMap::from([("cpu".to_string(), cpu_milli)]),
        )]),
    }
}

fn scale(replicas: i32) -> Result<ScaleView, String> {
    Ok(ScaleView {
        replicas,
        selector: "app=web".into(),
    })
}

const SETTINGS: Settings = Settings {
    downscale_window_s: 300,
};

fn condition(d: &Decision, kind: &str) -> (String, String) {
    let c = d
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .expect("condition");
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

#[test]
fn scales_up_on_cpu_above_target() {
    let h = hpa(1, 5, 50);
    let pods = [PodBuilder::new("web-1", "100m").build()];
    let s = Snapshot {
        hpa: &h,
        scale: scale(1),
        pods: &pods.iter().collect::<Vec<_>>(),
        metrics: Ok(BTreeMap::from([("web-1".to_string(), usage(200))])),
        now_ms: NOW,
    };
    let mut memory = Memory::default();
    let mut d = decide(&s, &mut memory, SETTINGS);
    assert_eq!(
        d.rescale,
        Some((
            4,
            "cpu resource utilization (percentage of request) above target".to_string()
        ))
    );
    assert_eq!(
        condition(&d, "ScalingActive"),
        ("True".into(), "ValidMetricFound".into())
    );
    assert_eq!(
        condition(&d, "ScalingLimited"),
        ("False".into(), "DesiredWithinRange".into())
    );
    assert_eq!(d.status.desired_replicas, 4);
    assert_eq!(d.status.current_replicas, Some(1));
    let current = d.status.current_metrics.clone().unwrap_or_default();
    let cpu = current[0].resource.as_ref().expect("resource status");
    assert_eq!(cpu.current.average_utilization, Some(200));
    assert_eq!(
        cpu.current.average_value.as_ref().map(|q| q.0.as_str()),
        Some("200m")
    );
    d.rescaled(&h, &mut memory, 1, SETTINGS, NOW);
    assert_eq!(
        d.events,
        vec![Event {
            warning: false,
            reason: "SuccessfulRescale".into(),
            message:
                "New size: 4; reason: cpu resource utilization (percentage of request) above target"
                    .into(),
        }]
    );
    assert_eq!(
        condition(&d, "AbleToScale"),
        ("True".into(), "SucceededRescale".into())
    );
    assert!(d.status.last_scale_time.is_some());
}

#[test]
fn bounded_by_max_replicas() {
    let h = hpa(1, 3, 50);
    let pods = [
        PodBuilder::new("web-1", "100m").build(),
        PodBuilder::new("web-2", "100m").build(),
    ];
    let metrics = BTreeMap::from([
        ("web-1".to_string(), usage(500)),
        ("web-2".to_string(), usage(500)),
    ]);
    let s = Snapshot {
        hpa: &h,
        scale: scale(2),
        pods: &pods.iter().collect::<Vec<_>>(),
        metrics: Ok(metrics),
        now_ms: NOW,
    };
    let d = decide(&s, &mut Memory::default(), SETTINGS);
    assert_eq!(d.rescale.clone().map(|r| r.0), Some(3));
    assert_eq!(
        condition(&d, "ScalingLimited"),
        ("True".into(), "TooManyReplicas".into())
    );
}

#[test]
fn out_of_range_targets_are_brought_back() {
    let h = hpa(2, 5, 50);
    let s = Snapshot {
        hpa: &h,
        scale: scale(9),
        pods: &[],
        metrics: Ok(BTreeMap::new()),
        now_ms: NOW,
    };
    let d = decide(&s, &mut Memory::default(), SETTINGS);
    assert_eq!(
        d.rescale,
        Some((
            5,
            "Current number of replicas above Spec.MaxReplicas".into()
        ))
    );
    let s = Snapshot {
        scale: scale(0),
        ..s
    };
    let d = decide(&s, &mut Memory::default(), SETTINGS);
    assert_eq!(d.rescale, None);
    assert_eq!(
        condition(&d, "ScalingActive"),
        ("False".into(), "ScalingDisabled".into())
    );
}

#[test]
fn missing_metrics_are_reported_as_upstream() {
    let h = hpa(1, 5, 50);
    let pods = [PodBuilder::new("web-1", "100m").build()];
    let s = Snapshot {
        hpa: &h,
        scale: scale(1),
        pods: &pods.iter().collect::<Vec<_>>(),
        metrics: Ok(BTreeMap::new()),
        now_ms: NOW,
    };
    let d = decide(&s, &mut Memory::default(), SETTINGS);
    assert_eq!(d.rescale, None);
    assert_eq!(
        condition(&d, "ScalingActive"),
        ("False".into(), "FailedGetResourceMetric".into())
    );
    let reasons: Vec<&str> = d.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["FailedGetResourceMetric", "FailedComputeMetricsReplicas"]
    );
    assert_eq!(
        d.error.as_deref(),
        Some(
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API"
        )
    );
}

#[test]
fn scale_errors_are_conditions_and_events() {
    let h = hpa(1, 5, 50);
    let s = Snapshot {
        hpa: &h,
        scale: Err("deployments.apps \"web\" not found".into()),
        pods: &[],
        metrics: Ok(BTreeMap::new()),
        now_ms: NOW,
    };
    let mut d = decide(&s, &mut Memory::default(), SETTINGS);
    assert_eq!(
        condition(&d, "AbleToScale"),
        ("False".into(), "FailedGetScale".into())
    );
    assert_eq!(d.events[0].reason, "FailedGetScale");
    d.rescale = Some((3, "r".into()));
    d.rescale_failed("boom", NOW);
    assert_eq!(d.events[1].message, "New size: 3; reason: r; error: boom");
    assert_eq!(
        condition(&d, "AbleToScale"),
        ("False".into(), "FailedUpdateScale".into())
    );
}

#[test]
fn milli_quantities() {
    assert_eq!(milli_quantity(250), "250m");
    assert_eq!(milli_quantity(64_000), "64");
    assert_eq!(milli_quantity(2_000_000), "2k");
    assert_eq!(milli_quantity(0), "0");
}
