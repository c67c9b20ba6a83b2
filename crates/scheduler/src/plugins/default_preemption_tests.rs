//! Preemption choices, run through the default framework as the scheduler runs them.

use std::sync::Arc;

use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::runtime::watcher::Event;

use super::default_framework_with;
use super::default_preemption::{Candidate, DefaultPreemption, pick_one};
use crate::api::fake::FakeApi;
use crate::framework::{CycleState, NominatedPods, PostFilterContext, PostFilterResult, Status};
use crate::listers::Listers;
use crate::nodeinfo::NodeInfo;
use crate::schedule::{Algorithm, ScheduleError};
use crate::snapshot::Snapshot;
use crate::testing::{NodeBuilder, PodBuilder};

fn pdb(name: &str, app: &str, allowed: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_owned(), app.to_owned())].into()),
                match_expressions: None,
            }),
            ..Default::default()
        }),
        status: Some(PodDisruptionBudgetStatus {
            disruptions_allowed: allowed,
            ..Default::default()
        }),
    }
}

fn preempt(
    pod: PodBuilder,
    nodes: Vec<NodeInfo>,
    pdbs: Vec<PodDisruptionBudget>,
) -> (Option<PostFilterResult>, Status) {
    let (listers, mut w) = Listers::new();
    for p in pdbs {
        w.pdbs.apply_watcher_event(&Event::Apply(p));
    }
    let preemption = DefaultPreemption::with_offset(listers.clone(), Box::new(|_| 0));
    let fw = default_framework_with(listers, Arc::new(FakeApi::default()), preemption);
    let snapshot = Snapshot::from_nodes(nodes);
    let nominated = NominatedPods::new();
    let pod = pod.info();
    let mut state = CycleState::new();
    match Algorithm::default().schedule(&fw, &mut state, &pod, &snapshot, &nominated) {
        Err(ScheduleError::Fit(fit)) => {
            let ctx = PostFilterContext {
                framework: &fw,
                snapshot: &snapshot,
                nominated: &nominated,
            };
            fw.run_post_filter(&ctx, &state, &pod, &fit.diagnosis.node_to_status)
        }
        other => panic!("expected the pod not to fit, got {other:?}"),
    }
}

fn chosen(r: &(Option<PostFilterResult>, Status)) -> (String, Vec<String>) {
    let result = r.0.clone().unwrap_or_default();
    let victims = result.victims.iter().map(|v| v.name().to_owned()).collect();
    (result.nominated_node.unwrap_or_default(), victims)
}

fn low(
    name: &str,
    node: &str,
    cpu: &str,
    priority: i32,
    start: i64,
) -> Arc<crate::podinfo::PodInfo> {
    PodBuilder::new(name)
        .req("cpu", cpu)
        .priority(priority)
        .start_time(start)
        .node(node)
        .arc()
}

fn node(name: &str, pods: &[Arc<crate::podinfo::PodInfo>]) -> NodeInfo {
    NodeBuilder::new(name).alloc("cpu", "2").info_with(pods)
}

#[test]
fn evicts_as_few_and_as_unimportant_pods_as_possible() {
    let r = preempt(
        PodBuilder::new("p").req("cpu", "1").priority(10),
        vec![node(
            "n",
            &[
                low("older", "n", "1", 1, 100),
                low("newer", "n", "1", 1, 200),
            ],
        )],
        vec![],
    );
    assert!(r.1.is_success(), "{:?}", r.1);
    assert_eq!(chosen(&r), ("n".into(), vec!["newer".into()]));
}

#[test]
fn prefers_the_node_with_the_lowest_priority_victims() {
    let r = preempt(
        PodBuilder::new("p").req("cpu", "2").priority(10),
        vec![
            node("a", &[low("a1", "a", "2", 5, 100)]),
            node("b", &[low("b1", "b", "2", 1, 100)]),
        ],
        vec![],
    );
    assert_eq!(chosen(&r), ("b".into(), vec!["b1".into()]));
}

#[test]
fn prefers_nodes_without_pdb_violations() {
    let guarded = PodBuilder::new("guarded")
        .label("app", "db")
        .req("cpu", "2")
        .priority(1)
        .node("a")
        .arc();
    let r = preempt(
        PodBuilder::new("p").req("cpu", "2").priority(10),
        vec![
            node("a", &[guarded]),
            node("b", &[low("b1", "b", "2", 5, 100)]),
        ],
        vec![pdb("db", "db", 0)],
    );
    assert_eq!(chosen(&r), ("b".into(), vec!["b1".into()]));
}

#[test]
fn ties_go_to_fewer_victims_then_later_start() {
    let r = preempt(
        PodBuilder::new("p").req("cpu", "2").priority(10),
        vec![
            node(
                "two",
                &[low("t1", "two", "1", 1, 100), low("t2", "two", "1", 1, 100)],
            ),
            node("one", &[low("o1", "one", "2", 1, 100)]),
        ],
        vec![],
    );
    assert_eq!(chosen(&r).0, "one");
    let r = preempt(
        PodBuilder::new("p").req("cpu", "2").priority(10),
        vec![
            node("early", &[low("e", "early", "2", 1, 100)]),
            node("late", &[low("l", "late", "2", 1, 500)]),
        ],
        vec![],
    );
    assert_eq!(chosen(&r).0, "late");
}

#[test]
fn pods_that_never_preempt_say_so() {
    let r = preempt(
        PodBuilder::new("p")
            .req("cpu", "2")
            .priority(10)
            .preempt_never(),
        vec![node("n", &[low("v", "n", "2", 1, 100)])],
        vec![],
    );
    assert_eq!(
        r.1.message(),
        "preemption: not eligible due to preemptionPolicy=Never."
    );
    assert!(r.0.is_none());
}

#[test]
fn preemption_cannot_fix_unresolvable_nodes() {
    let r = preempt(
        PodBuilder::new("p").req("cpu", "1").priority(10),
        vec![
            NodeBuilder::new("a")
                .taint("dedicated", "x", "NoSchedule")
                .info(),
            NodeBuilder::new("b")
                .taint("dedicated", "x", "NoSchedule")
                .info(),
        ],
        vec![],
    );
    assert_eq!(
        r.1.message(),
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        r.0.and_then(|r| r.nominated_node).as_deref(),
        Some(""),
        "clears a stale nomination"
    );
}

#[test]
fn nodes_without_lower_priority_pods_have_no_victims() {
    let r = preempt(
        PodBuilder::new("p").req("cpu", "1").priority(10),
        vec![node("n", &[low("peer", "n", "2", 10, 100)])],
        vec![],
    );
    assert_eq!(
        r.1.message(),
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
}

#[test]
fn a_terminating_victim_on_the_nominated_node_blocks_more_preemption() {
    let victim = PodBuilder::new("v")
        .req("cpu", "2")
        .priority(1)
        .node("n")
        .terminating()
        .condition("DisruptionTarget", "True", "PreemptionByScheduler")
        .arc();
    let r = preempt(
        PodBuilder::new("p")
            .req("cpu", "2")
            .priority(10)
            .nominated("n"),
        vec![node("n", &[victim])],
        vec![],
    );
    assert_eq!(
        r.1.message(),
        "preemption: not eligible due to a terminating pod on the nominated node."
    );
}

#[test]
fn pick_one_follows_the_criteria_order() {
    let cand = |node: &str, pdb: usize, victims: &[(i32, i64)]| Candidate {
        node: node.into(),
        victims: victims
            .iter()
            .enumerate()
            .map(|(i, (p, s))| {
                PodBuilder::new(&format!("{node}-{i}"))
                    .priority(*p)
                    .start_time(*s)
                    .arc()
            })
            .collect(),
        pdb_violations: pdb,
    };
    let pick = |c: &[Candidate]| pick_one(c).map(|c| c.node.clone()).unwrap_or_default();
    assert_eq!(
        pick(&[cand("a", 1, &[(1, 0)]), cand("b", 0, &[(9, 0)])]),
        "b"
    );
    assert_eq!(
        pick(&[cand("a", 0, &[(5, 0)]), cand("b", 0, &[(3, 0), (3, 0)])]),
        "b"
    );
    assert_eq!(
        pick(&[
            cand("a", 0, &[(3, 0), (2, 0)]),
            cand("b", 0, &[(3, 0), (1, 0)])
        ]),
        "b"
    );
    assert_eq!(
        pick(&[cand("a", 0, &[(3, 0), (-5, 0)]), cand("b", 0, &[(3, 0)])]),
        "b"
    );
    assert_eq!(
        pick(&[cand("a", 0, &[(3, 10)]), cand("b", 0, &[(3, 20)])]),
        "b"
    );
}
