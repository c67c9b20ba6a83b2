use super::*;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

const NODE: &str = "hollow-node-0";
const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn kubelet(cidr: Option<&str>) -> Kubelet {
    Kubelet::new(
        [(NODE.to_string(), HOST, cidr.map(str::to_string))],
        UsageTable::default(),
    )
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

/// A pod bound to `NODE` with one container; `extra` is merged into its JSON.
fn pod(name: &str, extra: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": "Pending"},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("a pod")
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn job(name: &str, duration: &str, code: i32, policy: &str) -> Pod {
    pod(
        name,
        json!({
            "metadata": {"annotations": {"hollow.k8rs.io/run-duration": duration,
                                         "hollow.k8rs.io/exit-code": code.to_string()}},
            "spec": {"restartPolicy": policy},
        }),
    )
}

fn deleting(p: &Pod) -> Pod {
    let mut p = p.clone();
    p.metadata.deletion_timestamp = serde_json::from_value(json!("2024-01-01T00:00:00Z")).ok();
    p
}

/// The single status write queued, or a panic naming what was queued.
fn status_write(k: &mut Kubelet) -> Value {
    match k.take_writes().as_slice() {
        [Write::Status { status, .. }] => status.clone(),
        other => panic!("expected one status write, got {other:?}"),
    }
}

#[test]
fn running_pods_get_sequential_ips_and_the_host_ip() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    k.pod_applied(&pod("a", json!({})), now());
    let s = status_write(&mut k);
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["podIP"], "10.42.3.2");
    assert_eq!(s["hostIP"], "198.18.0.1");
    k.pod_applied(&pod("b", json!({})), now());
    assert_eq!(status_write(&mut k)["podIP"], "10.42.3.3");
    // Our own status echoes back: nothing more to write.
    k.pod_applied(&pod("a", json!({"status": {"phase": "Running"}})), now());
    assert_eq!(k.take_writes(), vec![]);
}

#[test]
fn pods_of_other_nodes_are_ignored() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    k.pod_applied(&pod("a", json!({"spec": {"nodeName": "real-node"}})), now());
    k.pod_applied(&pod("b", json!({"spec": {"nodeName": null}})), now());
    assert_eq!(k.take_writes(), vec![]);
}

#[test]
fn pods_wait_for_the_node_cidr() {
    let mut k = kubelet(None);
    k.pod_applied(&pod("a", json!({})), now());
    assert_eq!(k.take_writes(), vec![]);
    k.node_seen(NODE, Some("10.42.9.0/24"), now());
    assert_eq!(status_write(&mut k)["podIP"], "10.42.9.2");
}

#[test]
fn host_network_pods_use_the_host_ip_without_a_cidr() {
    let mut k = kubelet(None);
    k.pod_applied(&pod("a", json!({"spec": {"hostNetwork": true}})), now());
    let s = status_write(&mut k);
    assert_eq!(s["podIP"], "198.18.0.1");
    assert_eq!(s["podIPs"], json!([{"ip": "198.18.0.1"}]));
}

#[test]
fn deletion_request_deletes_at_once_and_frees_the_address() {
    // A /30 holds one pod address.
    let mut k = kubelet(Some("10.42.3.0/30"));
    let a = pod("a", json!({}));
    k.pod_applied(&a, now());
    assert_eq!(status_write(&mut k)["podIP"], "10.42.3.2");
    k.pod_applied(&pod("b", json!({})), now());
    assert_eq!(k.take_writes(), vec![], "b waits for an address");
    k.pod_applied(&deleting(&a), now());
    let writes = k.take_writes();
    assert_eq!(
        writes[0],
        Write::Delete {
            key: ("default".into(), "a".into()),
            uid: "uid-a".into()
        }
    );
    match &writes[1..] {
        [Write::Status { key, status, .. }] => {
            assert_eq!(key.1, "b");
            assert_eq!(status["podIP"], "10.42.3.2");
        }
        other => panic!("b should start: {other:?}"),
    }
    k.pod_applied(&deleting(&a), now());
    assert_eq!(k.take_writes(), vec![], "the delete is not repeated");
    k.pod_deleted(&a, now());
    assert_eq!(k.take_writes(), vec![]);
}

#[test]
fn relist_forgets_pods_deleted_while_disconnected() {
    let mut k = kubelet(Some("10.42.3.0/30"));
    let a = pod("a", json!({}));
    k.pod_applied(&a, now());
    k.take_writes();
    k.list_started();
    k.list_done(now());
    k.pod_applied(&pod("b", json!({})), now());
    assert_eq!(
        status_write(&mut k)["podIP"],
        "10.42.3.2",
        "a's address is free"
    );
}

#[test]
fn finished_pods_found_at_list_are_left_alone() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    k.pod_applied(
        &pod("done", json!({"status": {"phase": "Succeeded"}})),
        now(),
    );
    assert_eq!(k.take_writes(), vec![]);
}

#[test]
fn running_pods_are_adopted_after_a_restart() {
    let mut first = kubelet(Some("10.42.3.0/24"));
    first.pod_applied(&pod("a", json!({})), now());
    let status = status_write(&mut first);
    let mut second = kubelet(Some("10.42.3.0/24"));
    second.pod_applied(&pod("a", json!({"status": status})), now());
    assert_eq!(second.take_writes(), vec![], "adopted as it runs");
    second.pod_applied(&pod("b", json!({})), now());
    assert_eq!(status_write(&mut second)["podIP"], "10.42.3.3");
}

#[test]
fn usage_annotations_are_stored() {
    let usage = UsageTable::default();
    let mut k = Kubelet::new([(NODE.to_string(), HOST, None)], usage.clone());
    let annotated = |cpu: &str| {
        pod(
            "a",
            json!({"metadata": {"annotations": {"hollow.k8rs.io/cpu-usage": cpu,
                                                 "hollow.k8rs.io/memory-usage": "64Mi"}}}),
        )
    };
    k.pod_applied(&annotated("250m"), now());
    let u = usage.pod("default", "a").expect("usage");
    assert_eq!((u.cpu_nanocores, u.memory_bytes), (250_000_000, 64 << 20));
    k.pod_applied(&annotated("500m"), now());
    assert_eq!(usage.node(NODE)[0].2.cpu_nanocores, 500_000_000);
    k.pod_deleted(&annotated("500m"), now());
    assert_eq!(usage.pod("default", "a"), None);
}

#[tokio::test(start_paused = true)]
async fn job_exits_after_its_run_duration() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    let start = Instant::now();
    k.pod_applied(&job("j", "5s", 0, "Never"), now());
    assert_eq!(status_write(&mut k)["phase"], "Running");
    let timer = k.next_timer().await.expect("exit timer");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    k.timer_fired(timer, now());
    let s = status_write(&mut k);
    assert_eq!(s["phase"], "Succeeded");
    assert_eq!(
        s["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert!(!k.has_timers());
    k.pod_applied(&job("j2", "1s", 0, "Never"), now());
    assert_eq!(status_write(&mut k)["podIP"], "10.42.3.3");
}

#[tokio::test(start_paused = true)]
async fn failing_job_with_restart_never_fails() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    k.pod_applied(&job("j", "2s", 3, "Never"), now());
    k.take_writes();
    let timer = k.next_timer().await.expect("exit timer");
    k.timer_fired(timer, now());
    let s = status_write(&mut k);
    assert_eq!(s["phase"], "Failed");
    let t = &s["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(3), Some("Error"))
    );
}

#[tokio::test(start_paused = true)]
async fn on_failure_restarts_until_deleted() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    let start = Instant::now();
    let j = job("j", "3s", 1, "OnFailure");
    k.pod_applied(&j, now());
    k.take_writes();
    for restarts in 1..=2 {
        let timer = k.next_timer().await.expect("exit timer");
        assert_eq!(start.elapsed(), Duration::from_secs(3 * restarts));
        k.timer_fired(timer, now());
        let s = status_write(&mut k);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["containerStatuses"][0]["restartCount"], restarts);
        assert_eq!(
            s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
    }
    k.pod_applied(&deleting(&j), now());
    assert!(!k.has_timers(), "deletion cancels the exit timer");
}

#[tokio::test(start_paused = true)]
async fn always_restarts_even_on_success() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    k.pod_applied(&job("j", "1s", 0, "Always"), now());
    k.take_writes();
    let timer = k.next_timer().await.expect("exit timer");
    k.timer_fired(timer, now());
    let s = status_write(&mut k);
    assert_eq!(
        (
            s["phase"].as_str(),
            s["containerStatuses"][0]["restartCount"].as_i64()
        ),
        (Some("Running"), Some(1))
    );
}

#[tokio::test(start_paused = true)]
async fn failed_writes_are_made_again() {
    let mut k = kubelet(Some("10.42.3.0/24"));
    let start = Instant::now();
    k.pod_applied(&pod("a", json!({})), now());
    let first = status_write(&mut k);
    k.write_failed(("default".into(), "a".into()), "uid-a".into(), false);
    let timer = k.next_timer().await.expect("retry timer");
    assert_eq!(start.elapsed(), RETRY_AFTER);
    k.timer_fired(timer, now());
    assert_eq!(status_write(&mut k), first);
    k.write_failed(("default".into(), "a".into()), "uid-a".into(), true);
    assert!(!k.has_timers(), "a gone pod is not retried");
}
