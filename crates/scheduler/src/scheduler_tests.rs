//! The scheduling loop against the recording fake API: the exact calls for success, failure,
//! preemption and a failed binding.

use std::sync::Arc;

use super::*;
use crate::api::fake::{Action, FakeApi};
use crate::listers::Listers;
use crate::plugins::default_framework;
use crate::queue::{QueueConfig, QueueCounts};
use crate::testing::{NodeBuilder, PodBuilder};

struct Harness {
    api: Arc<FakeApi>,
    scheduler: Scheduler,
}

impl Harness {
    fn new(nodes: Vec<NodeBuilder>, bound: Vec<PodBuilder>) -> Self {
        let api = Arc::new(FakeApi::default());
        let framework = Arc::new(default_framework(Listers::empty(), api.clone()));
        let cache = Arc::new(Cache::new());
        for n in nodes {
            cache.upsert_node(Arc::new(n.build()));
        }
        for p in bound {
            cache.upsert_pod(Arc::new(p.build()));
        }
        let queue = Arc::new(SchedulingQueue::new(
            framework.clone(),
            QueueConfig::default(),
        ));
        let handles = Handles {
            framework,
            cache,
            queue,
            api: api.clone(),
            scheduler_name: "default-scheduler".into(),
        };
        Self {
            api,
            scheduler: Scheduler {
                handles,
                algorithm: Algorithm::default(),
            },
        }
    }

    /// Queues `pod`, runs one cycle and waits for its binding and background calls.
    async fn schedule(&mut self, pod: PodBuilder) {
        self.scheduler.handles.queue.add(Arc::new(pod.build()));
        let qp = self
            .scheduler
            .handles
            .queue
            .pop()
            .await
            .unwrap_or_else(|| panic!("queued"));
        if let Some(binding) = self.scheduler.schedule_one(qp) {
            let _ = binding.await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn queue(&self) -> QueueCounts {
        self.scheduler.handles.queue.counts()
    }
}

fn patch_of(actions: &[Action], pod: &str) -> Option<Value> {
    actions.iter().find_map(|a| match a {
        Action::PatchStatus(p, v) if p == pod => Some(v.clone()),
        _ => None,
    })
}

#[tokio::test]
async fn a_fitting_pod_is_bound_and_reported() {
    let mut h = Harness::new(vec![NodeBuilder::new("n1")], vec![]);
    h.schedule(PodBuilder::new("p").req("cpu", "1")).await;
    assert_eq!(
        h.api.actions(),
        [
            Action::Bind("p".into(), "n1".into()),
            Action::Event(
                "p".into(),
                "Scheduled",
                "Successfully assigned default/p to n1".into()
            ),
        ]
    );
    assert!(h.scheduler.handles.cache.is_assumed("p-uid"));
    assert_eq!(h.queue(), QueueCounts::default());
}

#[tokio::test]
async fn an_unschedulable_pod_gets_upstreams_message() {
    // Upstream's message really ends in "..": the preemption message keeps its own period and
    // FitError adds one after it.
    let taint = "node-role.kubernetes.io/control-plane";
    let mut h = Harness::new(
        vec![
            NodeBuilder::new("cp1").taint(taint, "", "NoSchedule"),
            NodeBuilder::new("cp2").taint(taint, "", "NoSchedule"),
            NodeBuilder::new("worker"),
        ],
        vec![],
    );
    h.schedule(PodBuilder::new("p").req("cpu", "5")).await;
    let want = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
                {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 \
                Preemption is not helpful for scheduling..";
    let actions = h.api.actions();
    assert_eq!(
        actions[0],
        Action::Event("p".into(), "FailedScheduling", want.into())
    );
    let patch = patch_of(&actions, "p").unwrap_or_default();
    let cond = &patch["status"]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["status"].as_str()),
        (Some("PodScheduled"), Some("False"))
    );
    assert_eq!(
        (cond["reason"].as_str(), cond["message"].as_str()),
        (Some("Unschedulable"), Some(want))
    );
    assert!(patch["status"].get("nominatedNodeName").is_none());
    assert_eq!(h.queue().unschedulable, 1);
    // A node that could fit brings it back.
    h.scheduler
        .handles
        .queue
        .move_all(crate::framework::ClusterEvent::NODE_ADD);
    assert_eq!(h.queue().unschedulable, 0);
}

#[tokio::test]
async fn preemption_nominates_and_evicts() {
    let mut h = Harness::new(
        vec![NodeBuilder::new("n").alloc("cpu", "2")],
        vec![
            PodBuilder::new("victim")
                .req("cpu", "2")
                .priority(1)
                .node("n"),
        ],
    );
    h.schedule(PodBuilder::new("p").req("cpu", "2").priority(100))
        .await;
    let actions = h.api.actions();
    assert_eq!(
        actions[0],
        Action::Event(
            "p".into(),
            "FailedScheduling",
            "0/1 nodes are available: 1 Insufficient cpu.".into()
        )
    );
    let patch = patch_of(&actions, "p").unwrap_or_default();
    assert_eq!(patch["status"]["nominatedNodeName"], "n");
    let victim = patch_of(&actions, "victim").unwrap_or_default();
    let cond = &victim["status"]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["reason"].as_str()),
        (Some("DisruptionTarget"), Some("PreemptionByScheduler"))
    );
    assert_eq!(
        cond["message"],
        "default-scheduler: preempting to accommodate a higher priority pod"
    );
    assert!(actions.contains(&Action::Delete("victim".into())));
    assert!(actions.contains(&Action::Event(
        "victim".into(),
        "Preempted",
        "Preempted by pod p-uid on node n".into()
    )));
    assert_eq!(
        h.scheduler
            .handles
            .queue
            .nominated_node_of("p-uid")
            .as_deref(),
        Some("n")
    );
    assert_eq!(h.queue().unschedulable, 1, "waits for the victim to go");
}

#[tokio::test]
async fn a_failed_binding_forgets_the_pod_and_backs_off() {
    let mut h = Harness::new(vec![NodeBuilder::new("n1")], vec![]);
    h.api
        .fail_bind
        .lock()
        .map(|mut f| f.insert("p".into()))
        .unwrap_or_default();
    h.schedule(PodBuilder::new("p").req("cpu", "1")).await;
    let actions = h.api.actions();
    assert_eq!(actions[0], Action::Bind("p".into(), "n1".into()));
    assert_eq!(
        actions[1],
        Action::Event(
            "p".into(),
            "FailedScheduling",
            "running Bind plugin \"DefaultBinder\": conflict".into()
        )
    );
    let patch = patch_of(&actions, "p").unwrap_or_default();
    assert_eq!(patch["status"]["conditions"][0]["reason"], "SchedulerError");
    assert!(!h.scheduler.handles.cache.contains_pod("p-uid"));
    assert_eq!(h.queue().backoff, 1);
}

#[tokio::test]
async fn no_nodes_backs_off() {
    let mut h = Harness::new(vec![], vec![]);
    h.schedule(PodBuilder::new("p")).await;
    assert_eq!(h.api.events()[0].2, "no nodes available to schedule pods");
    assert_eq!(h.queue().backoff, 1);
}

#[test]
fn status_patch_only_when_something_changes() {
    let pod = PodBuilder::new("p").build();
    assert!(status_patch(&pod, "Unschedulable", "m", None).is_some());
    let mut shown = pod.clone();
    shown.status.get_or_insert_with(Default::default).conditions =
        Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("m".into()),
            ..Default::default()
        }]);
    assert!(status_patch(&shown, "Unschedulable", "m", None).is_none());
    assert!(
        status_patch(&shown, "Unschedulable", "m", Some("")).is_none(),
        "already not nominated"
    );
    let nominate = status_patch(&shown, "Unschedulable", "m", Some("n1")).unwrap_or_default();
    assert_eq!(nominate, json!({"status": {"nominatedNodeName": "n1"}}));
}

#[test]
fn long_messages_are_truncated_for_events() {
    let long = "x".repeat(2000);
    let t = truncate_message(&long);
    assert_eq!(t.len(), 1024);
    assert!(t.ends_with(" ..."));
    assert_eq!(truncate_message("short"), "short");
}

/// Rough throughput of the scheduling cycle alone (run with `--ignored --nocapture`).
#[tokio::test]
#[ignore = "measurement, not a check"]
async fn measure_cycle_throughput() {
    let nodes: Vec<NodeBuilder> = (0..5000)
        .map(|i| NodeBuilder::new(&format!("n{i:05}")).zone(&format!("z{}", i % 3)))
        .collect();
    let mut h = Harness::new(nodes, vec![]);
    let pods = 2000;
    let start = std::time::Instant::now();
    for i in 0..pods {
        h.scheduler.handles.queue.add(Arc::new(
            PodBuilder::new(&format!("p{i}"))
                .req("cpu", "100m")
                .req("memory", "128Mi")
                .build(),
        ));
        let qp = h
            .scheduler
            .handles
            .queue
            .pop()
            .await
            .unwrap_or_else(|| panic!("queued"));
        if let Some(b) = h.scheduler.schedule_one(qp) {
            let _ = b.await;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{pods} pods on 5000 nodes: {:.0} pods/s ({:.0} us/pod)",
        pods as f64 / secs,
        secs * 1e6 / pods as f64
    );
}
