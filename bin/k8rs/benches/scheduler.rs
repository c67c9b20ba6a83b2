//! Scheduler benchmark shaped like upstream's scheduler_perf `SchedulingBasic`: starts the real
//! `k8rs server --disable-agent` (scheduler and node IPAM inside it) and `k8rs hollow-nodes` as
//! child processes, waits for the nodes to be Ready, binds warm-up pods, then creates the
//! measured pods as fast as 32 concurrent kube-rs clients can and times their bindings through a
//! pod watch. Prints a Markdown table.
//!
//! Run with `cargo bench -p k8rs --bench scheduler`. Sizes: 1,000 nodes, 1,000 warm-up pods,
//! 10,000 measured pods; `K8RS_BENCH_QUICK=1` gives 100 / 100 / 1,000; `K8RS_BENCH_NODES`,
//! `K8RS_BENCH_WARMUP` and `K8RS_BENCH_PODS` override each. `K8RS_BENCH_ETCD=1` runs a second
//! pass on etcd (`/usr/bin/etcd` on loopback). All traffic goes to 127.0.0.1; every wait is
//! bounded; every process started here is killed by PID when its guard drops.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use support::*;

const CLIENTS: usize = 32;
const NAMESPACE: &str = "bench-sched";
const READY_LIMIT: Duration = Duration::from_secs(30);
const NODES_LIMIT: Duration = Duration::from_secs(300);
const BIND_LIMIT: Duration = Duration::from_secs(600);
const REQUEST_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// How much work the run does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    nodes: usize,
    warmup: usize,
    pods: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let quick = std::env::var_os("K8RS_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
        let base = if quick {
            Sizes {
                nodes: 100,
                warmup: 100,
                pods: 1_000,
            }
        } else {
            Sizes {
                nodes: 1_000,
                warmup: 1_000,
                pods: 10_000,
            }
        };
        let env = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        Sizes {
            nodes: env("K8RS_BENCH_NODES", base.nodes),
            warmup: env("K8RS_BENCH_WARMUP", base.warmup),
            pods: env("K8RS_BENCH_PODS", base.pods),
        }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Embedded,
    Etcd { endpoint: String },
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Etcd { .. } => "etcd",
        }
    }

    fn server_args(&self) -> Vec<String> {
        match self {
            Backend::Embedded => Vec::new(),
            Backend::Etcd { endpoint } => vec![format!("--datastore-endpoint={endpoint}")],
        }
    }
}

/// What one backend measured.
#[derive(Debug, Default)]
struct Outcome {
    nodes_ready: Option<Duration>,
    warmup: Option<Duration>,
    throughput: Option<f64>,
    window: Option<Duration>,
    create_rate: Option<f64>,
    p50: Option<Duration>,
    p99: Option<Duration>,
    server_rss: Option<f64>,
    hollow_rss: Option<f64>,
    notes: Vec<String>,
}

/// `k8rs server --disable-agent` on a free port with a fresh data dir.
struct Server {
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Server {
    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }
}

/// Spawns the server and polls `/readyz` with the admin client until it answers.
async fn start_server(backend: &Backend) -> Result<(Server, kube::Client)> {
    let dir = tempfile::tempdir().context("server temp dir")?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let spawned = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_k8rs"))
        .args(["server", "--disable-agent", "--bind-address=127.0.0.1"])
        .arg(format!("--https-port={port}"))
        .arg(format!("--data-dir={}", dir.path().display()))
        .args(["--cluster-cidr=10.48.0.0/12", "--node-cidr-mask-size=25"])
        .args(backend.server_args())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting k8rs server")?;
    let mut server = Server {
        proc: Proc(child),
        dir,
    };
    let mut client = None;
    loop {
        if let Some(status) = server.proc.exited() {
            bail!("k8rs exited with {status}:\n{}", log_tail(&server.log()));
        }
        if client.is_none() && server.kubeconfig().exists() {
            client = load_client(&server.kubeconfig()).await.ok();
        }
        if let Some(c) = &client
            && readyz(c).await
        {
            return Ok((server, c.clone()));
        }
        if spawned.elapsed() > READY_LIMIT {
            bail!(
                "k8rs not ready within {READY_LIMIT:?}:\n{}",
                log_tail(&server.log())
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts `k8rs hollow-nodes --count N` against the server, logging next to the server's log.
fn start_hollow(server: &Server, count: usize) -> Result<Proc> {
    let log = std::fs::File::create(server.dir.path().join("hollow.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_k8rs"))
        .args([
            "hollow-nodes",
            "--count",
            &count.to_string(),
            "--kubeconfig",
        ])
        .arg(server.kubeconfig())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting k8rs hollow-nodes")?;
    Ok(Proc(child))
}

/// Polls the node list until `count` nodes are Ready.
async fn wait_nodes_ready(
    client: &kube::Client,
    count: usize,
    hollow: &mut Proc,
    log: &Path,
) -> Result<Duration> {
    let api: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    let mut ready = 0;
    while start.elapsed() < NODES_LIMIT {
        if let Some(status) = hollow.exited() {
            bail!("hollow-nodes exited with {status}:\n{}", log_tail(log));
        }
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

fn pod(name: String) -> Pod {
    let requests = [
        ("cpu".to_string(), Quantity("10m".into())),
        ("memory".to_string(), Quantity("10Mi".into())),
    ];
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some([("app".to_string(), "sched-bench".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// When each pod's binding was first seen in the watch, by pod name.
type Bound = Arc<Mutex<HashMap<String, Instant>>>;

fn record_bound(bound: &Bound, pod: &Pod) {
    let Some(name) = pod.metadata.name.as_ref() else {
        return;
    };
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
    {
        return;
    }
    if let Ok(mut map) = bound.lock() {
        map.entry(name.clone()).or_insert_with(Instant::now);
    }
}

/// Watches the benchmark namespace's pods, recording bindings; re-opens the watch from the last
/// resourceVersion when it ends, and re-lists when that version is gone.
async fn watch_bindings(api: Api<Pod>, bound: Bound) {
    let mut rv = String::new();
    loop {
        if rv.is_empty() {
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for p in &list.items {
                        record_bound(&bound, p);
                    }
                    rv = list.metadata.resource_version.unwrap_or_default();
                }
                Err(e) => {
                    eprintln!("pod list for the watch failed: {e}");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        }
        let wp = WatchParams::default().timeout(290);
        let mut stream = match api.watch(&wp, &rv).await {
            Ok(s) => s.boxed(),
            Err(e) => {
                eprintln!("pod watch failed to open: {e}");
                tokio::time::sleep(POLL).await;
                rv.clear();
                continue;
            }
        };
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)) => {
                    record_bound(&bound, &p);
                    if let Some(v) = p.metadata.resource_version {
                        rv = v;
                    }
                }
                Ok(WatchEvent::Deleted(_)) => {}
                Ok(WatchEvent::Bookmark(b)) => rv = b.metadata.resource_version,
                Ok(WatchEvent::Error(e)) => {
                    eprintln!("pod watch error: {e}; re-listing");
                    rv.clear();
                    break;
                }
                Err(e) => {
                    eprintln!("pod watch stream: {e}; re-opening");
                    break;
                }
            }
        }
    }
}

/// Creates pods `{prefix}{0..count}` from `CLIENTS` tasks; returns when each create was
/// acknowledged (by name), the number of failures and the first error.
async fn create_pods(
    api: &Api<Pod>,
    prefix: &str,
    count: usize,
) -> (HashMap<String, Instant>, usize, Option<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (api, next, prefix) = (api.clone(), next.clone(), prefix.to_string());
            tokio::spawn(async move {
                let mut acks = Vec::new();
                let (mut errors, mut first) = (0, None);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let name = format!("{prefix}{i:05}");
                    let (pp, body) = (PostParams::default(), pod(name.clone()));
                    let create = api.create(&pp, &body);
                    match tokio::time::timeout(REQUEST_LIMIT, create).await {
                        Ok(Ok(_)) => acks.push((name, Instant::now())),
                        Ok(Err(e)) => {
                            errors += 1;
                            first.get_or_insert(e.to_string());
                        }
                        Err(_) => {
                            errors += 1;
                            first.get_or_insert(format!("no answer within {REQUEST_LIMIT:?}"));
                        }
                    }
                }
                (acks, errors, first)
            })
        })
        .collect();
    let mut acks = HashMap::new();
    let (mut errors, mut first) = (0, None);
    for joined in future::join_all(tasks).await {
        match joined {
            Ok((a, e, f)) => {
                acks.extend(a);
                errors += e;
                first = first.or(f);
            }
            Err(e) => {
                errors += 1;
                first.get_or_insert(format!("create task failed: {e}"));
            }
        }
    }
    (acks, errors, first)
}

/// Waits until every name in `names` has a binding; returns how many are still unbound.
async fn wait_bound<'a>(bound: &Bound, names: impl Iterator<Item = &'a String> + Clone) -> usize {
    let start = Instant::now();
    loop {
        let missing = match bound.lock() {
            Ok(map) => names.clone().filter(|n| !map.contains_key(*n)).count(),
            Err(_) => return usize::MAX,
        };
        if missing == 0 || start.elapsed() > BIND_LIMIT {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Warm-up and measured phases against a running cluster.
async fn measure(
    client: &kube::Client,
    sizes: &Sizes,
    name: &str,
    out: &mut Outcome,
) -> Result<()> {
    ensure_namespace(client, NAMESPACE).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let bound: Bound = Arc::default();
    let watcher = tokio::spawn(watch_bindings(api.clone(), bound.clone()));
    let result = async {
        eprintln!("[{name}] creating {} warm-up pods", sizes.warmup);
        let started = Instant::now();
        let (acks, errors, first) = create_pods(&api, "warm-", sizes.warmup).await;
        if errors > 0 {
            bail!("{errors} warm-up creates failed, first: {first:?}");
        }
        let missing = wait_bound(&bound, acks.keys()).await;
        if missing > 0 {
            bail!("{missing} warm-up pods not bound within {BIND_LIMIT:?}");
        }
        out.warmup = Some(started.elapsed());
        eprintln!("[{name}] creating {} measured pods", sizes.pods);
        let first_create = Instant::now();
        let (acks, errors, first) = create_pods(&api, "pod-", sizes.pods).await;
        let created = first_create.elapsed();
        if errors > 0 {
            out.notes.push(format!(
                "{name}: {errors} measured creates failed, first: {}",
                first.unwrap_or_default()
            ));
        }
        out.create_rate = Some(acks.len() as f64 / created.as_secs_f64().max(1e-9));
        let missing = wait_bound(&bound, acks.keys()).await;
        if missing > 0 {
            out.notes.push(format!(
                "{name}: {missing} measured pods not bound within {BIND_LIMIT:?}"
            ));
        }
        summarize(&bound, &acks, first_create, out);
        Ok(())
    }
    .await;
    watcher.abort();
    result
}

fn summarize(bound: &Bound, acks: &HashMap<String, Instant>, first: Instant, out: &mut Outcome) {
    let Ok(map) = bound.lock() else {
        return;
    };
    let mut latencies = Vec::new();
    let mut last = first;
    for (name, ack) in acks {
        if let Some(at) = map.get(name) {
            latencies.push(at.saturating_duration_since(*ack));
            last = last.max(*at);
        }
    }
    latencies.sort();
    let window = last.duration_since(first);
    out.window = Some(window);
    out.throughput = Some(latencies.len() as f64 / window.as_secs_f64().max(1e-9));
    out.p50 = Some(percentile(&latencies, 50));
    out.p99 = Some(percentile(&latencies, 99));
}

async fn run_backend(backend: &Backend, sizes: &Sizes, out: &mut Outcome) -> Result<()> {
    let name = backend.name();
    eprintln!("[{name}] starting k8rs server");
    let (server, client) = start_server(backend).await?;
    eprintln!("[{name}] starting {} hollow nodes", sizes.nodes);
    let mut hollow = start_hollow(&server, sizes.nodes)?;
    let hollow_log = server.dir.path().join("hollow.log");
    let phases = async {
        out.nodes_ready =
            Some(wait_nodes_ready(&client, sizes.nodes, &mut hollow, &hollow_log).await?);
        measure(&client, sizes, name, out).await
    };
    let result = phases.await;
    out.server_rss = rss_mib(server.proc.pid()).ok();
    out.hollow_rss = rss_mib(hollow.pid()).ok();
    if let Err(e) = result {
        out.notes.push(format!(
            "{name}: server log tail:\n{}\nhollow-nodes log tail:\n{}",
            log_tail(&server.log()),
            log_tail(&hollow_log)
        ));
        return Err(e);
    }
    Ok(())
}

async fn embedded(sizes: &Sizes) -> Outcome {
    let mut out = Outcome::default();
    if let Err(e) = run_backend(&Backend::Embedded, sizes, &mut out).await {
        out.notes
            .insert(0, format!("embedded: stopped early: {e:#}"));
    }
    out
}

async fn etcd(sizes: &Sizes) -> Outcome {
    let mut out = Outcome::default();
    eprintln!("[etcd] starting {ETCD_BIN}");
    let etcd = match start_etcd().await {
        Ok(etcd) => etcd,
        Err(e) => {
            out.notes.push(format!("etcd: could not start: {e:#}"));
            return out;
        }
    };
    let backend = Backend::Etcd {
        endpoint: etcd.endpoint.clone(),
    };
    if let Err(e) = run_backend(&backend, sizes, &mut out).await {
        out.notes.insert(0, format!("etcd: stopped early: {e:#}"));
    }
    if let Ok(rss) = rss_mib(etcd.proc.pid()) {
        out.notes
            .push(format!("etcd process RSS at the end: {rss:.1} MiB"));
    }
    out
}

/// One table row: its label and how to read its cell from an outcome.
type Row = (String, fn(&Outcome) -> Option<String>);

fn rows(sizes: &Sizes) -> [Row; 8] {
    [
        (
            format!("{} hollow nodes Ready after start", sizes.nodes),
            |o| o.nodes_ready.map(|d| format!("{:.1} s", d.as_secs_f64())),
        ),
        (
            format!("{} warm-up pods created and bound", sizes.warmup),
            |o| o.warmup.map(|d| format!("{:.1} s", d.as_secs_f64())),
        ),
        (
            format!("**scheduling throughput, {} measured pods**", sizes.pods),
            |o| {
                o.throughput
                    .zip(o.window)
                    .map(|(t, w)| format!("**{t:.0} pods/s** ({:.2} s)", w.as_secs_f64()))
            },
        ),
        (format!("create rate ({CLIENTS} clients)"), |o| {
            o.create_rate.map(|r| format!("{r:.0} pods/s"))
        }),
        (
            "scheduling latency p50 (create ack -> binding in watch)".into(),
            |o| o.p50.map(ms),
        ),
        ("scheduling latency p99".into(), |o| o.p99.map(ms)),
        ("RSS of `k8rs server` at the end".into(), |o| {
            o.server_rss.map(|v| format!("{v:.1} MiB"))
        }),
        ("RSS of `k8rs hollow-nodes` at the end".into(), |o| {
            o.hollow_rss.map(|v| format!("{v:.1} MiB"))
        }),
    ]
}

fn print_table(sizes: &Sizes, outcomes: &[(&str, Outcome)]) {
    println!();
    println!("Command: `cargo bench -p k8rs --bench scheduler` (sizes {sizes:?})");
    println!(
        "Server: `k8rs server --disable-agent --bind-address=127.0.0.1 --cluster-cidr=10.48.0.0/12 --node-cidr-mask-size=25`; nodes: `k8rs hollow-nodes --count {}`",
        sizes.nodes
    );
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("Machine: {cpus} CPUs shared by server, hollow nodes and the benchmark client.");
    println!();
    let names: Vec<&str> = outcomes.iter().map(|(n, _)| *n).collect();
    println!("| figure | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for (label, get) in rows(sizes) {
        let cells: Vec<String> = outcomes
            .iter()
            .map(|(_, o)| get(o).unwrap_or_else(|| "n/a".into()))
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
    let notes: Vec<&String> = outcomes.iter().flat_map(|(_, o)| &o.notes).collect();
    if !notes.is_empty() {
        println!();
        for note in notes {
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
    let mut outcomes = vec![("embedded", runtime.block_on(embedded(&sizes)))];
    if std::env::var_os("K8RS_BENCH_ETCD").is_some_and(|v| !v.is_empty() && v != "0") {
        outcomes.push(("etcd", runtime.block_on(etcd(&sizes))));
    }
    print_table(&sizes, &outcomes);
    let complete = outcomes.iter().all(|(_, o)| o.throughput.is_some());
    runtime.shutdown_timeout(Duration::from_secs(1));
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
