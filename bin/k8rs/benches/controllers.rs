//! Controller manager benchmark (issue 4, item 12): starts the real `k8rs server
//! --disable-agent` (API server, scheduler and every controller in one process) and
//! `k8rs hollow-nodes` as child processes, then measures
//! - the time for a Deployment of 3,000 replicas to be all Running and Ready on 100 hollow nodes,
//! - the time for a rolling update of it (a template change, default 25 % / 25 %),
//! - the time from a node failure (one node's hollow-nodes process killed by PID) to all its pods
//!   replaced on other nodes, minus `--node-monitor-grace-period` and the pods'
//!   `tolerationSeconds`,
//! - the server's CPU and RSS while idle with 30,000 pods on 300 hollow nodes, once with every
//!   controller and once, on the same data dir, with `--disable-controllers=<all>`: the
//!   difference estimates the controller manager's share.
//!
//! Run with `cargo bench -p k8rs --bench controllers`. `K8RS_BENCH_QUICK=1` gives 20 nodes /
//! 300 replicas and 30 nodes / 1,000 idle pods with a 10 s window; `K8RS_BENCH_NODES`,
//! `K8RS_BENCH_REPLICAS`, `K8RS_BENCH_IDLE_NODES`, `K8RS_BENCH_IDLE_PODS` and
//! `K8RS_BENCH_IDLE_SECS` override each; `K8RS_BENCH_SKIP_IDLE=1` skips the idle phases. All
//! traffic goes to 127.0.0.1; every wait is bounded; every process started here is killed by PID
//! when its guard drops.

mod support;

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const NAMESPACE: &str = "bench-ctl";
const DEPLOYMENT: &str = "web";
const FAILING_PREFIX: &str = "failing-node-";
const GRACE: Duration = Duration::from_secs(20);
const TOLERATION_SECS: u64 = 5;
const READY_LIMIT: Duration = Duration::from_secs(60);
const NODES_LIMIT: Duration = Duration::from_secs(300);
const ROLLOUT_LIMIT: Duration = Duration::from_secs(900);
const FAILURE_LIMIT: Duration = Duration::from_secs(300);
const REQUEST_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);
/// Quiet time after the cluster converged, before an idle window starts.
const SETTLE: Duration = Duration::from_secs(10);
/// Every controller `--disable-controllers` knows (bin/k8rs/src/controllers.rs).
const ALL_CONTROLLERS: &str = "replicaset,replicationcontroller,deployment,daemonset,statefulset,\
job,cronjob,ttl-after-finished,endpoint,endpointslice,endpointslicemirroring,\
persistentvolume-binder,local-path-provisioner,nodeipam,garbagecollector,serviceaccount,\
root-ca-cert-publisher,nodelifecycle,podgc,csrsigning,disruption,horizontalpodautoscaling,\
resourcequota";

/// How much work the run does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    nodes: usize,
    replicas: usize,
    idle_nodes: usize,
    idle_pods: usize,
    idle_secs: u64,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

impl Sizes {
    fn from_env() -> Sizes {
        let base = if env_flag("K8RS_BENCH_QUICK") {
            Sizes {
                nodes: 20,
                replicas: 300,
                idle_nodes: 30,
                idle_pods: 1_000,
                idle_secs: 10,
            }
        } else {
            Sizes {
                nodes: 100,
                replicas: 3_000,
                idle_nodes: 300,
                idle_pods: 30_000,
                idle_secs: 30,
            }
        };
        Sizes {
            nodes: env_usize("K8RS_BENCH_NODES", base.nodes).max(2),
            replicas: env_usize("K8RS_BENCH_REPLICAS", base.replicas),
            idle_nodes: env_usize("K8RS_BENCH_IDLE_NODES", base.idle_nodes),
            idle_pods: env_usize("K8RS_BENCH_IDLE_PODS", base.idle_pods),
            idle_secs: env_usize("K8RS_BENCH_IDLE_SECS", base.idle_secs as usize) as u64,
        }
    }
}

/// The server's CPU (share of one core) and RSS over one idle window.
#[derive(Debug, Clone, Copy)]
struct Idle {
    cpu: f64,
    rss: f64,
}

/// What the run measured.
#[derive(Debug, Default)]
struct Outcome {
    nodes_ready: Option<Duration>,
    deploy: Option<Duration>,
    rollout: Option<Duration>,
    failed_pods: Option<usize>,
    node_unknown: Option<Duration>,
    evicted: Option<Duration>,
    replaced: Option<Duration>,
    fill: Option<Duration>,
    idle_all: Option<Idle>,
    idle_none: Option<Idle>,
    server_rss: Option<f64>,
    notes: Vec<String>,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Spawns `k8rs server --disable-agent` on `dir` and polls `/readyz` until it answers.
async fn start_server(dir: &Path, extra: &[String]) -> Result<(Proc, kube::Client)> {
    let port = free_port()?;
    let log_path = dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let kubeconfig = dir.join("admin.kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let spawned = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_k8rs"))
        .args(["server", "--disable-agent", "--bind-address=127.0.0.1"])
        .arg(format!("--https-port={port}"))
        .arg(format!("--data-dir={}", dir.display()))
        .args(["--cluster-cidr=10.48.0.0/12", "--node-cidr-mask-size=25"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting k8rs server")?;
    let mut proc = Proc(child);
    let mut client = None;
    loop {
        if let Some(status) = proc.exited() {
            bail!("k8rs exited with {status}:\n{}", log_tail(&log_path));
        }
        if client.is_none() && kubeconfig.exists() {
            client = load_client(&kubeconfig).await.ok();
        }
        if let Some(c) = &client
            && readyz(c).await
        {
            return Ok((proc, c.clone()));
        }
        if spawned.elapsed() > READY_LIMIT {
            bail!(
                "k8rs not ready within {READY_LIMIT:?}:\n{}",
                log_tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `k8rs hollow-nodes --count N --name-prefix P`, logging to `dir/<log>`.
fn start_hollow(dir: &Path, count: usize, prefix: &str, log: &str) -> Result<Proc> {
    let log = std::fs::File::create(dir.join(log))?;
    let child = Command::new(env!("CARGO_BIN_EXE_k8rs"))
        .args(["hollow-nodes", "--count", &count.to_string()])
        .args(["--name-prefix", prefix, "--pods", "110", "--kubeconfig"])
        .arg(dir.join("admin.kubeconfig"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting k8rs hollow-nodes")?;
    Ok(Proc(child))
}

/// Polls the node list until `count` nodes are Ready.
async fn wait_nodes_ready(client: &kube::Client, count: usize) -> Result<Duration> {
    let api: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    let mut ready = 0;
    while start.elapsed() < NODES_LIMIT {
        if let Ok(Ok(list)) =
            tokio::time::timeout(REQUEST_LIMIT, api.list(&ListParams::default())).await
        {
            ready = list.items.iter().filter(|n| node_ready(n)).count();
            if ready >= count {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("only {ready} of {count} nodes Ready after {NODES_LIMIT:?}")
}

/// A Deployment whose pods request 10m / 10Mi and leave unreachable or not-ready nodes after
/// `TOLERATION_SECS`.
fn deployment(replicas: usize) -> Result<Deployment> {
    let toleration = |key: &str| {
        json!({"key": key, "operator": "Exists", "effect": "NoExecute",
               "tolerationSeconds": TOLERATION_SECS})
    };
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}
                    }],
                    "tolerations": [
                        toleration("node.kubernetes.io/not-ready"),
                        toleration("node.kubernetes.io/unreachable")
                    ]
                }
            }
        }
    });
    Ok(serde_json::from_value(body)?)
}

/// Whether the Deployment is complete as `kubectl rollout status` reads it, with every
/// replica also Ready.
fn rolled_out(d: &Deployment, replicas: i32) -> bool {
    let (Some(status), Some(generation)) = (d.status.as_ref(), d.metadata.generation) else {
        return false;
    };
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && status.ready_replicas.unwrap_or(0) == replicas
}

/// Polls the Deployment until it is rolled out; returns the time since `start`.
async fn wait_rolled_out(
    api: &Api<Deployment>,
    replicas: usize,
    start: Instant,
) -> Result<Duration> {
    let replicas = i32::try_from(replicas).context("replicas out of range")?;
    let mut last = String::new();
    while start.elapsed() < ROLLOUT_LIMIT {
        if let Ok(Ok(d)) = tokio::time::timeout(REQUEST_LIMIT, api.get(DEPLOYMENT)).await {
            if rolled_out(&d, replicas) {
                return Ok(start.elapsed());
            }
            last = format!(
                "{:?}",
                d.status.map(|s| (
                    s.replicas,
                    s.updated_replicas,
                    s.ready_replicas,
                    s.available_replicas
                ))
            );
        }
        tokio::time::sleep(POLL).await;
    }
    bail!(
        "Deployment not rolled out within {ROLLOUT_LIMIT:?}; last (replicas, updated, ready, available): {last}"
    )
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// Deployment, then rolling update, then node failure, on `sizes.nodes` nodes (one of them
/// in its own hollow-nodes process, the one that fails).
async fn scale_phases(sizes: &Sizes, out: &mut Outcome) -> Result<()> {
    let dir = tempfile::tempdir().context("server temp dir")?;
    let grace = format!("--node-monitor-grace-period={}s", GRACE.as_secs());
    eprintln!("[scale] starting k8rs server");
    let (server, client) = start_server(dir.path(), &[grace]).await?;
    eprintln!("[scale] starting {} hollow nodes", sizes.nodes);
    let _healthy = start_hollow(dir.path(), sizes.nodes - 1, "hollow-node-", "hollow.log")?;
    let failing = start_hollow(dir.path(), 1, FAILING_PREFIX, "failing.log")?;
    let result = async {
        out.nodes_ready = Some(wait_nodes_ready(&client, sizes.nodes).await?);
        ensure_namespace(&client, NAMESPACE).await?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        eprintln!("[scale] Deployment of {} replicas", sizes.replicas);
        let start = Instant::now();
        api.create(&PostParams::default(), &deployment(sizes.replicas)?)
            .await
            .context("creating the Deployment")?;
        out.deploy = Some(wait_rolled_out(&api, sizes.replicas, start).await?);
        eprintln!("[scale] rolling update");
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {"bench/rev": "2"}}}}});
        let start = Instant::now();
        api.patch(DEPLOYMENT, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context("patching the Deployment")?;
        out.rollout = Some(wait_rolled_out(&api, sizes.replicas, start).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!("[scale] node failure");
        node_failure(&client, sizes.replicas, failing, out).await
    }
    .await;
    out.server_rss = rss_mib(server.pid()).ok();
    if result.is_err() {
        out.notes.push(format!(
            "scale: server log tail:\n{}",
            log_tail(&dir.path().join("server.log"))
        ));
    }
    result
}

/// Kills the failing node's process and polls until every replica is Ready on another node.
async fn node_failure(
    client: &kube::Client,
    replicas: usize,
    failing: Proc,
    out: &mut Outcome,
) -> Result<()> {
    let node_name = format!("{FAILING_PREFIX}0");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let nodes: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("app={DEPLOYMENT}"));
    let before = pods.list(&lp).await.context("listing pods")?;
    let victims: Vec<String> = before
        .items
        .iter()
        .filter(|p| node_of(p) == Some(&node_name))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    out.failed_pods = Some(victims.len());
    if victims.is_empty() {
        bail!("no pod of the Deployment is on {node_name}");
    }
    let killed = Instant::now();
    drop(failing);
    while killed.elapsed() < FAILURE_LIMIT {
        if out.node_unknown.is_none()
            && let Ok(Ok(n)) = tokio::time::timeout(REQUEST_LIMIT, nodes.get(&node_name)).await
            && !node_ready(&n)
        {
            out.node_unknown = Some(killed.elapsed());
        }
        if let Ok(Ok(list)) = tokio::time::timeout(REQUEST_LIMIT, pods.list(&lp)).await {
            let gone = list
                .items
                .iter()
                .filter(|p| node_of(p) == Some(&node_name))
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count()
                == 0;
            if gone && out.evicted.is_none() {
                out.evicted = Some(killed.elapsed());
            }
            let serving = list
                .items
                .iter()
                .filter(|p| node_of(p) != Some(&node_name))
                .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
                .count();
            if gone && serving >= replicas {
                out.replaced = Some(killed.elapsed());
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("the failed node's pods were not replaced within {FAILURE_LIMIT:?}")
}

/// Clock ticks per second, for `/proc/PID/stat`.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading stat")?;
    let rest = stat.rsplit_once(')').context("no ')' in stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("short stat line")
    };
    // Fields 14 (utime) and 15 (stime), counted from 1, are 11 and 12 after the ')'.
    Ok((field(11)? + field(12)?) / ticks)
}

/// Sleeps `SETTLE`, then measures the server's CPU share over `window` and its RSS at the end.
async fn measure_idle(pid: u32, window: Duration) -> Result<Idle> {
    let ticks = clock_ticks();
    tokio::time::sleep(SETTLE).await;
    let (cpu0, t0) = (cpu_seconds(pid, ticks)?, Instant::now());
    tokio::time::sleep(window).await;
    let cpu = (cpu_seconds(pid, ticks)? - cpu0) / t0.elapsed().as_secs_f64();
    Ok(Idle {
        cpu,
        rss: rss_mib(pid)?,
    })
}

/// `idle_pods` pods (one Deployment) on `idle_nodes` nodes, measured idle with every controller;
/// then the same data dir restarted with every controller disabled and measured again.
async fn idle_phases(sizes: &Sizes, out: &mut Outcome) -> Result<()> {
    let dir = tempfile::tempdir().context("server temp dir")?;
    let window = Duration::from_secs(sizes.idle_secs);
    {
        eprintln!(
            "[idle] starting k8rs server, {} hollow nodes",
            sizes.idle_nodes
        );
        let (server, client) = start_server(dir.path(), &[]).await?;
        let _hollow = start_hollow(dir.path(), sizes.idle_nodes, "hollow-node-", "hollow.log")?;
        wait_nodes_ready(&client, sizes.idle_nodes).await?;
        ensure_namespace(&client, NAMESPACE).await?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        eprintln!("[idle] Deployment of {} replicas", sizes.idle_pods);
        let start = Instant::now();
        api.create(&PostParams::default(), &deployment(sizes.idle_pods)?)
            .await
            .context("creating the Deployment")?;
        out.fill = Some(wait_rolled_out(&api, sizes.idle_pods, start).await?);
        eprintln!("[idle] measuring with every controller for {window:?}");
        out.idle_all = Some(measure_idle(server.pid(), window).await?);
    }
    eprintln!("[idle] restarting with --disable-controllers=<all>");
    let disable = format!("--disable-controllers={ALL_CONTROLLERS}");
    let (server, client) = start_server(dir.path(), &[disable]).await?;
    let _hollow = start_hollow(dir.path(), sizes.idle_nodes, "hollow-node-", "hollow2.log")?;
    wait_nodes_ready(&client, sizes.idle_nodes).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let count = pods.list(&ListParams::default()).await?.items.len();
    if count != sizes.idle_pods {
        out.notes.push(format!(
            "idle: after the restart the namespace holds {count} pods, not {}",
            sizes.idle_pods
        ));
    }
    eprintln!("[idle] measuring with no controller for {window:?}");
    out.idle_none = Some(measure_idle(server.pid(), window).await?);
    Ok(())
}

/// One table row: its label and how to read its cell from an outcome.
type Row = (String, Box<dyn Fn(&Outcome) -> Option<String>>);

fn rows(sizes: &Sizes) -> Vec<Row> {
    let subtract = GRACE + Duration::from_secs(TOLERATION_SECS);
    let idle =
        |o: Option<Idle>| o.map(|i| format!("{:.1} % of a core, {:.1} MiB", i.cpu * 100.0, i.rss));
    vec![
        (
            format!("{} hollow nodes Ready after start", sizes.nodes),
            Box::new(|o: &Outcome| o.nodes_ready.map(secs)),
        ),
        (
            format!(
                "**Deployment of {} replicas all Running and Ready**",
                sizes.replicas
            ),
            Box::new(|o: &Outcome| o.deploy.map(|d| format!("**{}**", secs(d)))),
        ),
        (
            "**rolling update of it (25 % / 25 %) complete**".into(),
            Box::new(|o: &Outcome| o.rollout.map(|d| format!("**{}**", secs(d)))),
        ),
        (
            "pods on the failed node".into(),
            Box::new(|o: &Outcome| o.failed_pods.map(|n| n.to_string())),
        ),
        (
            "node kill -> node seen not Ready".into(),
            Box::new(|o: &Outcome| o.node_unknown.map(secs)),
        ),
        (
            "node kill -> all its pods evicted (deletionTimestamp set)".into(),
            Box::new(|o: &Outcome| o.evicted.map(secs)),
        ),
        (
            "node kill -> all replaced and Ready elsewhere".into(),
            Box::new(|o: &Outcome| o.replaced.map(secs)),
        ),
        (
            format!(
                "**the same minus grace {}s and toleration {TOLERATION_SECS}s**",
                GRACE.as_secs()
            ),
            Box::new(move |o: &Outcome| {
                o.replaced
                    .map(|d| format!("**{}**", secs(d.saturating_sub(subtract))))
            }),
        ),
        (
            "RSS of `k8rs server` after the above".into(),
            Box::new(|o: &Outcome| o.server_rss.map(|v| format!("{v:.1} MiB"))),
        ),
        (
            format!(
                "Deployment of {} replicas on {} nodes Running",
                sizes.idle_pods, sizes.idle_nodes
            ),
            Box::new(|o: &Outcome| o.fill.map(secs)),
        ),
        (
            format!(
                "idle server, every controller ({} s window)",
                sizes.idle_secs
            ),
            Box::new(move |o: &Outcome| idle(o.idle_all)),
        ),
        (
            "idle server, `--disable-controllers=<all>`".into(),
            Box::new(move |o: &Outcome| idle(o.idle_none)),
        ),
        (
            "**controller manager estimate (difference)**".into(),
            Box::new(|o: &Outcome| {
                o.idle_all.zip(o.idle_none).map(|(a, n)| {
                    format!(
                        "**{:.1} % of a core, {:.1} MiB**",
                        (a.cpu - n.cpu) * 100.0,
                        a.rss - n.rss
                    )
                })
            }),
        ),
    ]
}

fn print_table(sizes: &Sizes, out: &Outcome) {
    println!();
    println!("Command: `cargo bench -p k8rs --bench controllers` (sizes {sizes:?})");
    println!(
        "Server: `k8rs server --disable-agent --bind-address=127.0.0.1 --cluster-cidr=10.48.0.0/12 --node-cidr-mask-size=25` (+ `--node-monitor-grace-period={}s` for the failure run); nodes: `k8rs hollow-nodes --count N --pods 110`",
        GRACE.as_secs()
    );
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("Machine: {cpus} CPUs shared by server, hollow nodes and the benchmark client.");
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    for (label, get) in rows(sizes) {
        println!("| {label} | {} |", get(out).unwrap_or_else(|| "n/a".into()));
    }
    if !out.notes.is_empty() {
        println!();
        for note in &out.notes {
            println!("- {note}");
        }
    }
}

fn main() -> ExitCode {
    let sizes = Sizes::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot build the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = Outcome::default();
    if let Err(e) = runtime.block_on(scale_phases(&sizes, &mut out)) {
        out.notes.insert(0, format!("scale: stopped early: {e:#}"));
    }
    if !env_flag("K8RS_BENCH_SKIP_IDLE")
        && let Err(e) = runtime.block_on(idle_phases(&sizes, &mut out))
    {
        out.notes.push(format!("idle: stopped early: {e:#}"));
    }
    print_table(&sizes, &out);
    let complete =
        out.replaced.is_some() && (env_flag("K8RS_BENCH_SKIP_IDLE") || out.idle_none.is_some());
    runtime.shutdown_timeout(Duration::from_secs(1));
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
