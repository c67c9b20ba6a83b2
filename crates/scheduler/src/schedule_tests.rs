use std::sync::Arc;

use super::*;
use crate::api::fake::FakeApi;
use crate::listers::Listers;
use crate::plugins::default_framework;
use crate::testing::{NodeBuilder, PodBuilder};

fn framework() -> Framework {
    default_framework(Listers::empty(), Arc::new(FakeApi::default()))
}

fn run(
    alg: &mut Algorithm,
    pod: PodBuilder,
    snapshot: &Snapshot,
) -> Result<ScheduleResult, ScheduleError> {
    alg.schedule(
        &framework(),
        &mut CycleState::new(),
        &pod.info(),
        snapshot,
        &NominatedPods::new(),
    )
}

fn node_of(r: Result<ScheduleResult, ScheduleError>) -> String {
    match r {
        Ok(r) => r.node,
        Err(ScheduleError::Fit(f)) => format!("fit error: {f}"),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn feasible_nodes_to_find_follows_upstream() {
    let cases = [
        (None, 50, 50),
        (None, 100, 100),
        (None, 1000, 420),
        (None, 5000, 500),
        (None, 6000, 300),
        (Some(100), 1000, 1000),
        (Some(1), 1000, 100),
        (Some(0), 5000, 500),
    ];
    for (pct, all, want) in cases {
        assert_eq!(
            num_feasible_nodes_to_find(pct, all),
            want,
            "{pct:?} of {all}"
        );
    }
}

#[test]
fn sampling_stops_early_and_rotates_the_start() {
    let snapshot =
        Snapshot::from_nodes((0..500).map(|i| NodeBuilder::new(&format!("n{i:03}")).info()));
    let mut alg = Algorithm::new(None);
    let first = run(&mut alg, PodBuilder::new("p"), &snapshot);
    // 50% - 500/125 = 46% of 500.
    assert_eq!(
        first.as_ref().map(|r| (r.evaluated, r.feasible)).ok(),
        Some((230, 230))
    );
    assert_eq!(alg.next_start, 230);
    let _ = run(&mut alg, PodBuilder::new("q"), &snapshot);
    assert_eq!(alg.next_start, 460);
    let _ = run(&mut alg, PodBuilder::new("r"), &snapshot);
    assert_eq!(alg.next_start, 190, "wraps around");
}

#[test]
fn fit_error_lists_every_node_reason() {
    let busy = PodBuilder::new("busy")
        .req("cpu", "3500m")
        .node("worker")
        .arc();
    let snapshot = Snapshot::from_nodes([
        NodeBuilder::new("cp1")
            .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
            .info(),
        NodeBuilder::new("cp2")
            .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
            .info(),
        NodeBuilder::new("worker").info_with(&[busy]),
    ]);
    let r = run(
        &mut Algorithm::default(),
        PodBuilder::new("p").req("cpu", "1"),
        &snapshot,
    );
    let Err(ScheduleError::Fit(fit)) = r else {
        panic!("expected a fit error, got {r:?}");
    };
    assert_eq!(
        fit.to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
         {node-role.kubernetes.io/control-plane: }."
    );
    let plugins: Vec<&str> = fit
        .diagnosis
        .unschedulable_plugins
        .iter()
        .copied()
        .collect();
    assert_eq!(plugins, ["NodeResourcesFit", "TaintToleration"]);
}

#[test]
fn no_nodes_is_its_own_error() {
    let r = run(
        &mut Algorithm::default(),
        PodBuilder::new("p"),
        &Snapshot::default(),
    );
    assert!(matches!(r, Err(ScheduleError::NoNodes)));
}

#[test]
fn scoring_picks_the_best_node() {
    let half = |n: &str| {
        PodBuilder::new(&format!("on-{n}"))
            .req("cpu", "2")
            .req("memory", "8Gi")
            .node(n)
            .arc()
    };
    let cases = [
        (
            "least allocated",
            PodBuilder::new("p").req("cpu", "1").req("memory", "1Gi"),
            vec![
                NodeBuilder::new("busy").info_with(&[half("busy")]),
                NodeBuilder::new("idle").info(),
            ],
            "idle",
        ),
        (
            "prefer-no-schedule taint avoided",
            PodBuilder::new("p"),
            vec![
                NodeBuilder::new("tainted")
                    .taint("a", "b", "PreferNoSchedule")
                    .info(),
                NodeBuilder::new("clean").info(),
            ],
            "clean",
        ),
        (
            "preferred node affinity",
            PodBuilder::new("p").node_affinity_preferred(50, "disk", "In", &["ssd"]),
            vec![
                NodeBuilder::new("hdd").info(),
                NodeBuilder::new("ssd").label("disk", "ssd").info(),
            ],
            "ssd",
        ),
        (
            "required node selector",
            PodBuilder::new("p").node_selector("disk", "ssd"),
            vec![
                NodeBuilder::new("ssd")
                    .label("disk", "ssd")
                    .info_with(&[half("ssd")]),
                NodeBuilder::new("hdd").info(),
            ],
            "ssd",
        ),
    ];
    for (name, pod, nodes, want) in cases {
        let snapshot = Snapshot::from_nodes(nodes);
        assert_eq!(
            node_of(run(&mut Algorithm::default(), pod, &snapshot)),
            want,
            "{name}"
        );
    }
}

#[test]
fn nominated_node_is_tried_first() {
    let snapshot = Snapshot::from_nodes((0..5).map(|i| NodeBuilder::new(&format!("n{i}")).info()));
    let mut alg = Algorithm::default();
    let r = run(&mut alg, PodBuilder::new("p").nominated("n3"), &snapshot);
    assert_eq!(
        r.map(|r| (r.node, r.evaluated)).ok(),
        Some(("n3".to_owned(), 1))
    );
}

#[test]
fn nominated_pods_hold_their_space() {
    let snapshot = Snapshot::from_nodes([NodeBuilder::new("only").alloc("cpu", "2").info()]);
    let fw = framework();
    let mut nominated = NominatedPods::new();
    let big = PodBuilder::new("big").req("cpu", "2").priority(100).arc();
    nominated.insert("only".into(), vec![big]);
    let pod = PodBuilder::new("small").req("cpu", "1").priority(1).info();
    let r = Algorithm::default().schedule(&fw, &mut CycleState::new(), &pod, &snapshot, &nominated);
    assert!(
        matches!(r, Err(ScheduleError::Fit(_))),
        "a lower priority pod must not take nominated space"
    );
    let urgent = PodBuilder::new("urgent")
        .req("cpu", "1")
        .priority(1000)
        .info();
    let r =
        Algorithm::default().schedule(&fw, &mut CycleState::new(), &urgent, &snapshot, &nominated);
    assert!(r.is_ok(), "a higher priority pod ignores lower nominations");
}

#[test]
fn prefilter_narrowing_reports_the_other_nodes() {
    let snapshot = Snapshot::from_nodes([
        NodeBuilder::new("a").info(),
        NodeBuilder::new("b").unschedulable().info(),
        NodeBuilder::new("c").info(),
    ]);
    let r = run(
        &mut Algorithm::default(),
        PodBuilder::new("ds").node_affinity_names(&["b"]),
        &snapshot,
    );
    assert_eq!(
        node_of(r),
        "fit error: 0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't satisfy \
         plugin(s) [NodeAffinity]."
    );
    let r = run(
        &mut Algorithm::default(),
        PodBuilder::new("ds").node_affinity_names(&["c"]),
        &snapshot,
    );
    assert_eq!(node_of(r), "c");
}

#[test]
fn host_ports_spread_pods() {
    let existing = PodBuilder::new("e").host_port(80).node("a").arc();
    let snapshot = Snapshot::from_nodes([
        NodeBuilder::new("a").info_with(&[existing]),
        NodeBuilder::new("b").info(),
    ]);
    let r = run(
        &mut Algorithm::default(),
        PodBuilder::new("p").host_port(80),
        &snapshot,
    );
    assert_eq!(node_of(r), "b");
}

#[test]
fn ties_are_broken_randomly() {
    let picks: std::collections::BTreeSet<usize> =
        (0..200).map(|_| select_host(&[5, 9, 9, 1, 9])).collect();
    assert_eq!(picks.into_iter().collect::<Vec<_>>(), [1, 2, 4]);
}
