//! Pod startup latency through k8rs (API create -> kubelet -> containerd -> Running seen by a
//! watcher) beside the same work done with bare CRI calls against the same containerd, plus the
//! kubelet process's RSS and CPU with 20 running pods and node Ready time.
//!
//! Run: `cargo bench -p k8rs-kubelet --bench startup` (root; containerd, runc, CNI plugins,
//! umoci and skopeo installed). Prints a markdown report on stdout.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use common::IMAGE;
use k8rs_kubelet::cri::{Cri, GrpcCri, image_spec};

const N: usize = 20;
const NET: u8 = 31;
const WAIT: Duration = Duration::from_secs(120);
const IDLE: Duration = Duration::from_secs(20);

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench())
}

/// Milliseconds of each run, sorted.
struct Lat(Vec<f64>);

impl Lat {
    fn new(mut v: Vec<Duration>) -> Lat {
        v.sort();
        Lat(v.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
    }

    fn pct(&self, q: f64) -> f64 {
        let n = self.0.len();
        let i = ((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
        self.0.get(i).copied().unwrap_or(f64::NAN)
    }
}

fn overhead(k8rs: f64, bare: f64) -> f64 {
    (k8rs - bare) / bare * 100.0
}

async fn bench() -> anyhow::Result<()> {
    let containerd = common::Containerd::start(NET).await?;
    let cri = containerd.cri()?;

    // Bare CRI: one warm-up pod, then N one at a time, then N at once.
    let logs = containerd.dir.path().join("bare-logs");
    bare_pod(&cri, &logs, "warm").await?;
    let mut seq = Vec::new();
    for i in 0..N {
        let t = Instant::now();
        bare_pod(&cri, &logs, &format!("seq-{i}")).await?;
        seq.push(t.elapsed());
    }
    let bare_seq = Lat::new(seq);
    let runs = (0..N).map(|i| {
        let (cri, logs) = (cri.clone(), logs.clone());
        async move {
            let t = Instant::now();
            bare_pod(&cri, &logs, &format!("par-{i}")).await?;
            anyhow::Ok(t.elapsed())
        }
    });
    let par: Vec<Duration> = futures::future::join_all(runs)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let bare_par = Lat::new(par);
    remove_all(&cri).await?;

    // k8rs: API server + kubelet in this process, against the same containerd.
    let server = k8rs_testing::TestServer::start().await;
    common::cluster_defaults(&server).await?;
    let mut config = k8rs_kubelet::KubeletConfig::new(
        format!("node-{NET}"),
        "127.0.0.1".parse()?,
        &containerd.socket,
        containerd.dir.path().join("kubelet"),
    );
    config.cgroup_root = format!("/k8rs-bench-{NET}");
    config.pinned_images = vec![common::PAUSE.to_string()];
    config.eviction = false;
    config.image_gc_high_percent = 100;
    config.server_port = 0;
    let mut node = common::Node {
        server,
        containerd,
        config,
        kubelet: None,
    };
    let client = node.server.client();
    let rss_before = status_kib("VmRSS");
    let seen = watch_running(client.clone());

    let started = Instant::now();
    node.start_kubelet();
    wait_node_ready(&client, &node.config.node_name).await?;
    let ready = started.elapsed();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let name = node.config.node_name.clone();
    let mut seq = Vec::new();
    for i in 0..N {
        let p = format!("seq-{i}");
        let t = Instant::now();
        pods.create(&PostParams::default(), &pod(&p, &name)?)
            .await?;
        seq.push(wait_seen(&seen, &p, t).await?);
    }
    let k_seq = Lat::new(seq);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    for i in 0..N {
        pods.delete(&format!("seq-{i}"), &dp).await?;
    }
    wait_no_sandboxes(&cri).await?;

    let creates = (0..N).map(|i| {
        let (pods, name) = (pods.clone(), name.clone());
        async move {
            let p = format!("par-{i}");
            let t = Instant::now();
            pods.create(&PostParams::default(), &pod(&p, &name)?)
                .await?;
            anyhow::Ok((p, t))
        }
    });
    let starts: Vec<(String, Instant)> = futures::future::join_all(creates)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut par = Vec::new();
    for (p, t) in &starts {
        par.push(wait_seen(&seen, p, *t).await?);
    }
    let k_par = Lat::new(par);

    // Idle with N running pods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_start = status_kib("VmRSS");
    let cpu0 = cpu_ticks()?;
    tokio::time::sleep(IDLE).await;
    let ticks = cpu_ticks()?.saturating_sub(cpu0);
    let rss_end = status_kib("VmRSS");
    let hz = clock_ticks();
    let cpu_pct = ticks as f64 / hz / IDLE.as_secs_f64() * 100.0;
    let running = cri.list_pod_sandboxes(HashMap::new()).await?.len();

    println!("## Pod startup on containerd (issue 5)\n");
    println!(
        "| run ({N} pods) | bare CRI p50 | bare CRI p99 | k8rs p50 | k8rs p99 | overhead p50 | overhead p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (what, b, k) in [
        ("one at a time", &bare_seq, &k_seq),
        ("all at once", &bare_par, &k_par),
    ] {
        println!(
            "| {what} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:+.0}% | {:+.0}% |",
            b.pct(0.5),
            b.pct(0.99),
            k.pct(0.5),
            k.pct(0.99),
            overhead(k.pct(0.5), b.pct(0.5)),
            overhead(k.pct(0.99), b.pct(0.99)),
        );
    }
    println!();
    println!("node Ready after kubelet start: {:.0} ms", ms(ready));
    println!(
        "process RSS: {} MiB before the kubelet started (API server, containerd client, watcher), \
         {} MiB at the start and {} MiB at the end of a {}s idle window with {running} running pods \
         (peak {} MiB)",
        mib(rss_before),
        mib(rss_start),
        mib(rss_end),
        IDLE.as_secs(),
        mib(status_kib("VmHWM")),
    );
    println!(
        "process CPU over the idle window: {cpu_pct:.1}% of one core ({ticks} ticks at {hz} Hz)"
    );
    println!("k8rs raw ms one at a time: {:?}", rounded(&k_seq));
    println!("k8rs raw ms all at once: {:?}", rounded(&k_par));
    println!("bare raw ms one at a time: {:?}", rounded(&bare_seq));
    println!("bare raw ms all at once: {:?}", rounded(&bare_par));
    drop(node);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn rounded(l: &Lat) -> Vec<u64> {
    l.0.iter().map(|v| v.round() as u64).collect()
}

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/stat")?;
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat; `rest` starts at field 3.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(get(14) + get(15))
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// What a bare CRI client does for a one-container pod: sandbox, container, start.
async fn bare_pod(cri: &GrpcCri, logs: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let uid = uuid::Uuid::new_v4().to_string();
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: "bare".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.join(&uid).display().to_string(),
        labels: HashMap::from([("k8rs-bench".to_string(), "bare".to_string())]),
        ..Default::default()
    };
    let id = cri.run_pod_sandbox(sandbox.clone()).await?;
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(image_spec(IMAGE)),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "c/0.log".into(),
        ..Default::default()
    };
    let c = cri.create_container(&id, container, sandbox).await?;
    cri.start_container(&c).await?;
    Ok(())
}

async fn remove_all(cri: &GrpcCri) -> anyhow::Result<()> {
    let ids: Vec<String> = cri
        .list_pod_sandboxes(HashMap::new())
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let stops = ids.iter().map(|id| async move {
        cri.stop_pod_sandbox(id).await?;
        cri.remove_pod_sandbox(id).await
    });
    for r in futures::future::join_all(stops).await {
        r?;
    }
    Ok(())
}

fn pod(name: &str, node: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                 "command": ["sleep", "3600"]}]}
    }))?)
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Records when a watcher first sees each pod Running.
fn watch_running(client: kube::Client) -> Seen {
    let seen: Seen = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, "default");
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(e) = events.next().await {
            let p = match e {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase == Some("Running")
                && let (Some(n), Ok(mut m)) = (p.metadata.name, out.lock())
            {
                m.entry(n).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

async fn wait_seen(seen: &Seen, name: &str, start: Instant) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let at = seen.lock().ok().and_then(|m| m.get(name).copied());
        if let Some(at) = at {
            return Ok(at.saturating_duration_since(start));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    anyhow::bail!("{name} not Running within {WAIT:?}")
}

async fn wait_node_ready(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let ready = nodes.get_opt(name).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("node {name} not Ready within {WAIT:?}")
}

async fn wait_no_sandboxes(cri: &GrpcCri) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cri.list_pod_sandboxes(HashMap::new()).await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the deleted pods' sandboxes were not removed within {WAIT:?}")
}
