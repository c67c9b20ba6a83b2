use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::api::fake::FakeApi;
use crate::framework::{ActionType, EventResource};
use crate::listers::Listers;
use crate::plugins::{default_framework, node_resources_fit, taint_toleration};
use crate::testing::PodBuilder;

fn queue() -> SchedulingQueue {
    let fw = default_framework(Listers::empty(), Arc::new(FakeApi::default()));
    SchedulingQueue::new(Arc::new(fw), QueueConfig::default())
}

fn pod(name: &str, priority: i32) -> Arc<Pod> {
    Arc::new(PodBuilder::new(name).priority(priority).build())
}

async fn pop_name(q: &SchedulingQueue) -> String {
    let qp = tokio::time::timeout(Duration::from_millis(10), q.pop()).await;
    qp.ok()
        .flatten()
        .map(|p| p.pod.name().to_owned())
        .unwrap_or_default()
}

fn rejected_by(mut qp: QueuedPodInfo, plugin: &'static str) -> QueuedPodInfo {
    qp.unschedulable_plugins.insert(plugin);
    qp
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let c = QueueConfig::default();
    let secs: Vec<u64> = (0..7).map(|a| c.backoff(a).as_secs()).collect();
    assert_eq!(secs, [1, 1, 2, 4, 8, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn active_queue_orders_by_priority_then_arrival() {
    let q = queue();
    q.add(pod("low", 1));
    tokio::time::advance(Duration::from_millis(1)).await;
    q.add(pod("high", 100));
    tokio::time::advance(Duration::from_millis(1)).await;
    q.add(pod("low-later", 1));
    q.add(pod("high-later", 100));
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(pop_name(&q).await);
    }
    assert_eq!(order, ["high", "high-later", "low", "low-later"]);
}

#[tokio::test(start_paused = true)]
async fn gated_pods_wait_until_their_gates_are_removed() {
    let q = queue();
    let gated = PodBuilder::new("g").gate("example.com/wait").build();
    q.add(Arc::new(gated.clone()));
    assert_eq!(q.counts().unschedulable, 1);
    assert_eq!(pop_name(&q).await, "");
    q.move_all(ClusterEvent::NODE_ADD);
    assert_eq!(pop_name(&q).await, "", "events do not release gated pods");
    let released = PodBuilder::new("g").build();
    q.update(Some(&gated), Arc::new(released));
    assert_eq!(pop_name(&q).await, "g");
}

#[tokio::test(start_paused = true)]
async fn unschedulable_pods_move_only_on_relevant_events() {
    let q = queue();
    q.add(pod("p", 0));
    let qp = q
        .pop()
        .await
        .map(|qp| rejected_by(qp, taint_toleration::NAME));
    q.add_unschedulable(qp.unwrap_or_else(|| panic!("popped")));
    assert_eq!(q.counts().unschedulable, 1);
    // A pod deletion frees resources but cannot untaint a node.
    q.move_all(ClusterEvent::ASSIGNED_POD_DELETE);
    assert_eq!(q.counts().unschedulable, 1);
    // A taint change may help: the pod backs off first (1 s after its first attempt).
    q.move_all(ClusterEvent::new(
        EventResource::Node,
        ActionType::UPDATE_NODE_TAINT,
    ));
    assert_eq!(q.counts().backoff, 1);
    tokio::time::advance(Duration::from_millis(999)).await;
    q.flush_backoff_completed();
    assert_eq!(q.counts().backoff, 1);
    tokio::time::advance(Duration::from_millis(2)).await;
    q.flush_backoff_completed();
    assert_eq!(pop_name(&q).await, "p");
}

#[tokio::test(start_paused = true)]
async fn errors_go_to_backoff_and_backoff_grows() {
    let q = queue();
    q.add(pod("p", 0));
    for (attempt, wait_ms) in [(1u32, 1000u64), (2, 2000), (3, 4000)] {
        let qp = q.pop().await.unwrap_or_else(|| panic!("pop"));
        assert_eq!(qp.attempts, attempt);
        q.add_unschedulable(qp);
        assert_eq!(
            q.counts().backoff,
            1,
            "an error (no rejecting plugin) backs off"
        );
        tokio::time::advance(Duration::from_millis(wait_ms - 1)).await;
        q.flush_backoff_completed();
        assert_eq!(q.counts().active, 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        q.flush_backoff_completed();
        assert_eq!(q.counts().active, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn events_during_the_cycle_send_the_pod_to_backoff() {
    let q = queue();
    q.add(pod("p", 0));
    let qp = q.pop().await.unwrap_or_else(|| panic!("pop"));
    q.move_all(ClusterEvent::ASSIGNED_POD_DELETE);
    q.add_unschedulable(rejected_by(qp, node_resources_fit::NAME));
    assert_eq!(
        q.counts(),
        QueueCounts {
            backoff: 1,
            ..Default::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn leftover_unschedulable_pods_are_flushed_after_five_minutes() {
    let q = queue();
    q.add(pod("p", 0));
    let qp = q
        .pop()
        .await
        .map(|qp| rejected_by(qp, node_resources_fit::NAME));
    q.add_unschedulable(qp.unwrap_or_else(|| panic!("pop")));
    tokio::time::advance(Duration::from_secs(299)).await;
    q.flush_unschedulable_leftover();
    assert_eq!(q.counts().unschedulable, 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    q.flush_unschedulable_leftover();
    assert_eq!(pop_name(&q).await, "p");
}

#[tokio::test(start_paused = true)]
async fn flush_loops_run_on_the_paused_clock() {
    let q = Arc::new(queue());
    let cancel = CancellationToken::new();
    let loops = tokio::spawn({
        let (q, cancel) = (q.clone(), cancel.clone());
        async move { q.run_flush_loops(cancel).await }
    });
    q.add(pod("p", 0));
    let qp = q.pop().await.unwrap_or_else(|| panic!("pop"));
    q.add_unschedulable(qp);
    // Backoff 1 s, flushed by the 1 s loop.
    let popped = tokio::time::timeout(Duration::from_secs(3), q.pop()).await;
    assert!(matches!(popped, Ok(Some(_))));
    cancel.cancel();
    let _ = loops.await;
}

#[tokio::test(start_paused = true)]
async fn deleted_pods_leave_every_part_of_the_queue() {
    let q = queue();
    let p = pod("p", 0);
    q.add(p.clone());
    q.delete(&p);
    assert_eq!(q.counts(), QueueCounts::default());
    q.add(p.clone());
    let qp = q.pop().await.unwrap_or_else(|| panic!("pop"));
    q.delete(&p);
    q.add_unschedulable(qp);
    assert_eq!(
        q.counts(),
        QueueCounts::default(),
        "a pod deleted while in flight is dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn updates_of_unschedulable_pods_requeue_them() {
    let q = queue();
    let old = PodBuilder::new("p").build();
    q.add(Arc::new(old.clone()));
    let qp = q
        .pop()
        .await
        .map(|qp| rejected_by(qp, node_resources_fit::NAME));
    q.add_unschedulable(qp.unwrap_or_else(|| panic!("pop")));
    let status_only = PodBuilder::new("p")
        .condition("PodScheduled", "False", "Unschedulable")
        .build();
    q.update(Some(&old), Arc::new(status_only.clone()));
    assert_eq!(q.counts().unschedulable, 1, "status changes do not requeue");
    let relabeled = PodBuilder::new("p").label("a", "b").build();
    q.update(Some(&status_only), Arc::new(relabeled));
    assert_eq!(q.counts().backoff, 1);
}

#[tokio::test(start_paused = true)]
async fn nominations_follow_pods() {
    let q = queue();
    let p = Arc::new(PodBuilder::new("p").priority(10).nominated("n1").build());
    q.add(p.clone());
    assert_eq!(q.nominated_node_of("p-uid").as_deref(), Some("n1"));
    assert_eq!(q.nominated_pods().get("n1").map(Vec::len), Some(1));
    q.delete(&p);
    assert!(q.nominated_pods().is_empty());
}
