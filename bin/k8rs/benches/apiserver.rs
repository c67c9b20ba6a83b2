//! API server benchmark: starts the real `k8rs server --disable-agent` once on the embedded store
//! and once on etcd (Debian's `/usr/bin/etcd`, started here on free loopback ports), drives it
//! through kube-rs, and prints a Markdown table with both columns side by side.
//!
//! Run with `cargo bench -p k8rs --bench apiserver`; `K8RS_BENCH_QUICK=1` divides every count by
//! ten for a smoke run. All traffic goes to 127.0.0.1. Every loop is bounded in count and time;
//! every process started here is killed by PID when its guard drops.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use support::*;

const CLIENTS: usize = 32;
const READY_POLL: Duration = Duration::from_millis(5);
const READY_LIMIT: Duration = Duration::from_secs(30);
const IDLE_BEFORE_RSS: Duration = Duration::from_secs(2);
const REQUEST_LIMIT: Duration = Duration::from_secs(30);
const PHASE_LIMIT: Duration = Duration::from_secs(120);
const WATCH_LIMIT: Duration = Duration::from_secs(120);
const PAGE_SIZE: u32 = 500;
/// Created together before the first phase, so that no phase races the server's namespace cache.
const NAMESPACES: [&str; 4] = ["bench-cm", "bench-pods", "bench-watch", "bench-cr"];

/// How much work each phase does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    configmaps: usize,
    pods: usize,
    list_rounds: usize,
    watchers: usize,
    watch_writes: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let full = Sizes {
            configmaps: 4_000,
            pods: 10_000,
            list_rounds: 10,
            watchers: 100,
            watch_writes: 2_000,
        };
        if std::env::var_os("K8RS_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0") {
            return Sizes {
                configmaps: full.configmaps / 10,
                pods: full.pods / 10,
                list_rounds: 3,
                watchers: full.watchers / 10,
                watch_writes: full.watch_writes / 10,
            };
        }
        full
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Figure {
    IdleRss,
    Ready,
    CreateRate,
    CreateLatency,
    GetRate,
    GetLatency,
    CustomCreateRate,
    CustomCreateLatency,
    PodCreateRate,
    FullList,
    PagedList,
    WatchRate,
    LoadedRss,
}

impl Figure {
    const ALL: [Figure; 13] = [
        Figure::IdleRss,
        Figure::Ready,
        Figure::CreateRate,
        Figure::CreateLatency,
        Figure::GetRate,
        Figure::GetLatency,
        Figure::CustomCreateRate,
        Figure::CustomCreateLatency,
        Figure::PodCreateRate,
        Figure::FullList,
        Figure::PagedList,
        Figure::WatchRate,
        Figure::LoadedRss,
    ];

    fn label(self, s: &Sizes) -> String {
        match self {
            Figure::IdleRss => "idle RSS of `k8rs server` (2 s after ready)".into(),
            Figure::Ready => "start to first 200 on `/readyz` (fresh data dir)".into(),
            Figure::CreateRate => format!("create {} ConfigMaps, {CLIENTS} clients", s.configmaps),
            Figure::CreateLatency => "create latency p50 / p99".into(),
            Figure::GetRate => format!("get {} ConfigMaps, {CLIENTS} clients", s.configmaps),
            Figure::GetLatency => "get latency p50 / p99".into(),
            Figure::CustomCreateRate => format!(
                "create {} custom resources (schema + CEL rule), {CLIENTS} clients",
                s.configmaps
            ),
            Figure::CustomCreateLatency => "custom resource create latency p50 / p99".into(),
            Figure::PodCreateRate => format!("create {} pods, {CLIENTS} clients", s.pods),
            Figure::FullList => format!(
                "full list of {} pods ({} calls) p50 / max",
                s.pods, s.list_rounds
            ),
            Figure::PagedList => format!(
                "paginated list of {} pods, all namespaces, limit {PAGE_SIZE}",
                s.pods
            ),
            Figure::WatchRate => {
                format!(
                    "events/s to {} watchers ({} writes)",
                    s.watchers, s.watch_writes
                )
            }
            Figure::LoadedRss => "RSS of `k8rs server` after all of the above".into(),
        }
    }

    fn target(self) -> &'static str {
        match self {
            Figure::IdleRss => "< 64 MiB",
            Figure::Ready => "< 1 s",
            _ => "—",
        }
    }
}

/// What one backend measured, plus notes for anything that went wrong.
#[derive(Debug, Default)]
struct Outcome {
    figures: HashMap<Figure, String>,
    notes: Vec<String>,
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

fn etcd_version() -> String {
    Command::new(ETCD_BIN)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "etcd: not found".into())
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
}

/// Spawns the server and polls `/readyz` every 5 ms with the admin client certificate; returns
/// the server, the time from spawn to the first 200, and a client.
async fn start_server(backend: &Backend) -> Result<(Server, Duration, kube::Client)> {
    let dir = tempfile::tempdir().context("server temp dir")?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let spawned = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_k8rs"))
        .args(["server", "--disable-agent", "--bind-address=127.0.0.1"])
        .arg(format!("--https-port={port}"))
        .arg(format!("--data-dir={}", dir.path().display()))
        .args(backend.server_args())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting k8rs")?;
    let mut server = Server {
        proc: Proc(child),
        dir,
    };
    let kubeconfig = server.dir.path().join("admin.kubeconfig");
    let mut client = None;
    loop {
        if let Some(status) = server.proc.exited() {
            bail!("k8rs exited with {status}:\n{}", log_tail(&server.log()));
        }
        if client.is_none() && kubeconfig.exists() {
            client = load_client(&kubeconfig).await.ok();
        }
        if let Some(c) = &client
            && readyz(c).await
        {
            return Ok((server, spawned.elapsed(), c.clone()));
        }
        if spawned.elapsed() > READY_LIMIT {
            bail!(
                "k8rs not ready within {READY_LIMIT:?}:\n{}",
                log_tail(&server.log())
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Creates a probe ConfigMap in `ns` until the server accepts it (its namespace cache may lag
/// behind the namespace create); returns how long creates were refused.
async fn namespace_lag(client: &kube::Client, ns: &str) -> Result<Duration> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let began = Instant::now();
    let mut refused = Duration::ZERO;
    loop {
        let probe = configmap("bench-probe".into(), "probe".into());
        match api.create(&PostParams::default(), &probe).await {
            Ok(_) => return Ok(refused),
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(refused),
            Err(kube::Error::Api(s)) if s.code == 404 && began.elapsed() < READY_LIMIT => {
                refused = began.elapsed();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("creating a ConfigMap in {ns}")),
        }
    }
}

/// Latencies and counts of one phase run by `CLIENTS` concurrent tasks.
#[derive(Debug, Default)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
    timed_out: bool,
}

impl Sample {
    fn rate(&self, what: &str) -> String {
        let per_sec = self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9);
        format!("{per_sec:.0} {what}/s{}", self.trouble())
    }

    fn latency(&self) -> String {
        let p50 = percentile(&self.latencies, 50);
        let p99 = percentile(&self.latencies, 99);
        format!("{} / {}", ms(p50), ms(p99))
    }

    fn trouble(&self) -> String {
        let mut out = String::new();
        if self.errors > 0 {
            out.push_str(&format!(" ({} errors)", self.errors));
        }
        if self.timed_out {
            out.push_str(&format!(
                " (gave up after {PHASE_LIMIT:?}, {} done)",
                self.latencies.len()
            ));
        }
        out
    }

    fn absorb(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.timed_out |= other.timed_out;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn note(&self, backend: &str, phase: &str) -> Option<String> {
        let err = self.first_error.as_ref()?;
        Some(format!(
            "{backend}, {phase}: {} errors, first: {err}",
            self.errors
        ))
    }
}

/// Runs `op(0..count)` from `CLIENTS` tasks, each taking the next index, until all are done or
/// `PHASE_LIMIT` passes.
async fn run_concurrent<F, Fut>(count: usize, op: F) -> Sample
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), kube::Error>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut local = Sample::default();
                loop {
                    if start.elapsed() > PHASE_LIMIT {
                        local.timed_out = true;
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let began = Instant::now();
                    let error = match tokio::time::timeout(REQUEST_LIMIT, op(i)).await {
                        Ok(Ok(())) => {
                            local.latencies.push(began.elapsed());
                            continue;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {REQUEST_LIMIT:?}"),
                    };
                    local.errors += 1;
                    local.first_error.get_or_insert(error);
                }
                local
            })
        })
        .collect();
    let mut total = Sample::default();
    for result in future::join_all(tasks).await {
        let local = match result {
            Ok(local) => local,
            Err(e) => Sample {
                errors: 1,
                first_error: Some(format!("task failed: {e}")),
                ..Default::default()
            },
        };
        total.absorb(local);
    }
    total.elapsed = start.elapsed();
    total.latencies.sort();
    total
}

fn configmap(name: String, value: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        data: Some([("key".to_string(), value)].into()),
        ..Default::default()
    }
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i:05}")),
            labels: Some([("app".to_string(), "bench".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Phase 3: create then get ConfigMaps.
async fn bench_configmaps(
    client: &kube::Client,
    sizes: &Sizes,
    name: &str,
    out: &mut Outcome,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "bench-cm");
    eprintln!(
        "[{name}] creating {} ConfigMaps with {CLIENTS} clients",
        sizes.configmaps
    );
    let created = {
        let api = api.clone();
        run_concurrent(sizes.configmaps, move |i| {
            let api = api.clone();
            async move {
                let cm = configmap(format!("cm-{i:05}"), format!("value-{i}"));
                api.create(&PostParams::default(), &cm).await.map(drop)
            }
        })
        .await
    };
    out.figures
        .insert(Figure::CreateRate, created.rate("creates"));
    out.figures.insert(Figure::CreateLatency, created.latency());
    out.notes.extend(created.note(name, "create ConfigMaps"));
    eprintln!(
        "[{name}] getting {} ConfigMaps with {CLIENTS} clients",
        sizes.configmaps
    );
    let got = run_concurrent(sizes.configmaps, move |i| {
        let api = api.clone();
        async move { api.get(&format!("cm-{i:05}")).await.map(drop) }
    })
    .await;
    out.figures.insert(Figure::GetRate, got.rate("gets"));
    out.figures.insert(Figure::GetLatency, got.latency());
    out.notes.extend(got.note(name, "get ConfigMaps"));
    Ok(())
}

/// The definition phase 3b creates: a structural schema with nesting, defaults, an enum, bounds
/// and a CEL rule, so that a create runs every step of custom resource validation.
fn widgets_definition() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.bench.k8rs.io"},
        "spec": {
            "group": "bench.k8rs.io", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {
                    "type": "object", "required": ["size"],
                    "x-kubernetes-validations": [{"rule": "self.replicas <= self.size * 4", "message": "too many replicas"}],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 100},
                        "replicas": {"type": "integer", "default": 1},
                        "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
                        "ports": {"type": "array", "maxItems": 16, "items": {
                            "type": "object", "required": ["port"],
                            "properties": {"name": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535}},
                        }},
                    },
                }},
            }}}],
        },
    })
}

/// Phase 3b: create custom resources (compare with phase 3's ConfigMaps in the same run).
async fn bench_custom_resources(
    client: &kube::Client,
    sizes: &Sizes,
    name: &str,
    out: &mut Outcome,
) -> Result<()> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let crds: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(widgets_definition())?;
    crds.create(&PostParams::default(), &crd).await?;
    let widgets = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("bench.k8rs.io", "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench-cr", &widgets);
    let served = Instant::now();
    while api.list(&ListParams::default().limit(1)).await.is_err() {
        if served.elapsed() > READY_LIMIT {
            bail!("the definition was not served within {READY_LIMIT:?}");
        }
        tokio::time::sleep(READY_POLL).await;
    }
    eprintln!(
        "[{name}] creating {} custom resources with {CLIENTS} clients",
        sizes.configmaps
    );
    let created = run_concurrent(sizes.configmaps, move |i| {
        let api = api.clone();
        async move {
            let widget: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "bench.k8rs.io/v1", "kind": "Widget",
                "metadata": {"name": format!("w-{i:05}")},
                "spec": {"size": 1 + i % 100, "replicas": 2, "labels": {"app": "bench", "tier": "web"},
                         "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
            }))
            .map_err(kube::Error::SerdeError)?;
            api.create(&PostParams::default(), &widget).await.map(drop)
        }
    })
    .await;
    out.figures
        .insert(Figure::CustomCreateRate, created.rate("creates"));
    out.figures
        .insert(Figure::CustomCreateLatency, created.latency());
    out.notes
        .extend(created.note(name, "create custom resources"));
    Ok(())
}

/// Phase 4: store pods, then time full and paginated lists.
async fn bench_pod_lists(
    client: &kube::Client,
    sizes: &Sizes,
    name: &str,
    out: &mut Outcome,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "bench-pods");
    eprintln!(
        "[{name}] creating {} pods with {CLIENTS} clients",
        sizes.pods
    );
    let created = {
        let api = api.clone();
        run_concurrent(sizes.pods, move |i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod(i)).await.map(drop) }
        })
        .await
    };
    out.figures
        .insert(Figure::PodCreateRate, created.rate("creates"));
    out.notes.extend(created.note(name, "create pods"));
    eprintln!(
        "[{name}] listing {} pods {} times",
        created.latencies.len(),
        sizes.list_rounds
    );
    let mut times = Vec::new();
    let mut items = 0;
    let started = Instant::now();
    for _ in 0..sizes.list_rounds {
        if started.elapsed() > PHASE_LIMIT {
            break;
        }
        let began = Instant::now();
        let list = tokio::time::timeout(REQUEST_LIMIT, api.list(&ListParams::default()))
            .await
            .context("full pod list timed out")?
            .context("full pod list")?;
        times.push(began.elapsed());
        items = list.items.len();
    }
    times.sort();
    let max = times.last().copied().unwrap_or_default();
    let full = format!(
        "{} / {} ({items} items)",
        ms(percentile(&times, 50)),
        ms(max)
    );
    out.figures.insert(Figure::FullList, full);
    eprintln!("[{name}] paginated list, limit {PAGE_SIZE}");
    out.figures.insert(
        Figure::PagedList,
        paged_list(&Api::all(client.clone()), sizes).await?,
    );
    Ok(())
}

/// Lists pods in all namespaces in pages of `PAGE_SIZE`, as `kubectl get pods -A --chunk-size=500`.
async fn paged_list(api: &Api<Pod>, sizes: &Sizes) -> Result<String> {
    let max_pages = sizes.pods / PAGE_SIZE as usize + 10;
    let began = Instant::now();
    let (mut pages, mut items) = (0, 0);
    let mut token: Option<String> = None;
    while pages < max_pages {
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = tokio::time::timeout(REQUEST_LIMIT, api.list(&lp))
            .await
            .context("paginated pod list timed out")?
            .context("paginated pod list")?;
        pages += 1;
        items += page.items.len();
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let unfinished = if token.is_some() {
        ", stopped before the last page"
    } else {
        ""
    };
    Ok(format!(
        "{} total ({pages} pages, {items} items{unfinished})",
        ms(began.elapsed())
    ))
}

/// Events received by all watchers and when the last one arrived.
#[derive(Debug, Default)]
struct Tally {
    received: AtomicUsize,
    last_nanos: AtomicU64,
    failed: AtomicBool,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, error: String) {
        self.failed.store(true, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
    }
}

/// Phase 5: `watchers` watches on one namespace, then `watch_writes` writes (half creates, half
/// updates of the created objects); events/s = events received / (last event - first write).
async fn bench_watch(
    client: &kube::Client,
    sizes: &Sizes,
    name: &str,
    out: &mut Outcome,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "bench-watch");
    let listed = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .context("listing for a watch RV")?;
    let rv = listed.metadata.resource_version.unwrap_or_default();
    eprintln!(
        "[{name}] starting {} watches from resourceVersion {rv:?}",
        sizes.watchers
    );
    let wp = WatchParams::default().timeout(290);
    let opened = future::join_all((0..sizes.watchers).map(|_| api.watch(&wp, &rv))).await;
    let mut streams = Vec::new();
    for s in opened {
        streams.push(s.context("starting a watch")?.boxed());
    }
    let tally = Arc::new(Tally::default());
    let base = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let tally = tally.clone();
            tokio::spawn(async move {
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(
                            WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_),
                        ) => {
                            tally.received.fetch_add(1, Ordering::Relaxed);
                            let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                            tally.last_nanos.fetch_max(now, Ordering::Relaxed);
                        }
                        Ok(WatchEvent::Bookmark(_)) => {}
                        Ok(WatchEvent::Error(e)) => return tally.fail(format!("watch error: {e}")),
                        Err(e) => return tally.fail(format!("watch stream: {e}")),
                    }
                }
                tally.fail("a watch ended early".into());
            })
        })
        .collect();
    let creates = sizes.watch_writes / 2;
    let updates = sizes.watch_writes - creates;
    eprintln!("[{name}] writing {creates} creates + {updates} updates");
    let written = watch_writes(&api, creates, updates).await;
    let expected = sizes.watchers * (written.latencies.len());
    let waited = Instant::now();
    while tally.received.load(Ordering::Relaxed) < expected
        && !tally.failed.load(Ordering::Relaxed)
        && waited.elapsed() < WATCH_LIMIT
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in &tasks {
        task.abort();
    }
    let received = tally.received.load(Ordering::Relaxed);
    let span =
        Duration::from_nanos(tally.last_nanos.load(Ordering::Relaxed)).max(Duration::from_nanos(1));
    let rate = received as f64 / span.as_secs_f64();
    let mut figure = format!("{rate:.0} events/s ({received}/{expected} in {})", ms(span));
    if received < expected {
        figure.push_str(" INCOMPLETE");
    }
    out.figures.insert(Figure::WatchRate, figure);
    out.notes.extend(written.note(name, "watch writes"));
    if let Ok(first) = tally.first_error.lock()
        && let Some(e) = first.as_ref()
        && received < expected
    {
        out.notes.push(format!("{name}, watch: {e}"));
    }
    Ok(())
}

/// Creates `creates` ConfigMaps, then merge-patches the first `updates` of them.
async fn watch_writes(api: &Api<ConfigMap>, creates: usize, updates: usize) -> Sample {
    let create_api = api.clone();
    let mut total = run_concurrent(creates, move |i| {
        let api = create_api.clone();
        async move {
            let cm = configmap(format!("w-{i:05}"), "0".into());
            api.create(&PostParams::default(), &cm).await.map(drop)
        }
    })
    .await;
    let update_api = api.clone();
    let patched = run_concurrent(updates.min(creates), move |i| {
        let api = update_api.clone();
        async move {
            let patch = serde_json::json!({"data": {"key": "1"}});
            api.patch(
                &format!("w-{i:05}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(drop)
        }
    })
    .await;
    total.absorb(patched);
    total
}

/// Everything for one backend, in order; stops at the first phase that cannot go on.
async fn run_backend(backend: &Backend, sizes: &Sizes, out: &mut Outcome) -> Result<()> {
    let name = backend.name();
    eprintln!("[{name}] starting k8rs server");
    let (server, ready, client) = start_server(backend).await?;
    out.figures.insert(Figure::Ready, ms(ready));
    tokio::time::sleep(IDLE_BEFORE_RSS).await;
    out.figures.insert(
        Figure::IdleRss,
        format!("{:.1} MiB", rss_mib(server.proc.pid())?),
    );
    let phases = async {
        for ns in NAMESPACES {
            ensure_namespace(&client, ns).await?;
        }
        for ns in NAMESPACES {
            let lag = namespace_lag(&client, ns).await?;
            if lag > Duration::ZERO {
                out.notes.push(format!(
                    "{name}: creates in the new namespace {ns} failed with NotFound for {} after it was created",
                    ms(lag)
                ));
            }
        }
        bench_configmaps(&client, sizes, name, out).await?;
        bench_custom_resources(&client, sizes, name, out).await?;
        bench_pod_lists(&client, sizes, name, out).await?;
        bench_watch(&client, sizes, name, out).await?;
        out.figures.insert(
            Figure::LoadedRss,
            format!("{:.1} MiB", rss_mib(server.proc.pid())?),
        );
        Ok::<_, anyhow::Error>(())
    };
    let result = phases.await;
    if let Err(e) = &result {
        out.notes.push(format!(
            "{name}: server log tail:\n{}",
            log_tail(&server.log())
        ));
        return Err(anyhow::anyhow!("{e:#}"));
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
        out.notes.push(format!(
            "etcd process RSS at the end of the run: {rss:.1} MiB (not in the k8rs rows)"
        ));
    }
    out
}

fn print_table(sizes: &Sizes, embedded: &Outcome, etcd: &Outcome) {
    println!();
    println!("Command: `cargo bench -p k8rs --bench apiserver`");
    println!(
        "Binary: `{} server --disable-agent --bind-address=127.0.0.1`",
        env!("CARGO_BIN_EXE_k8rs")
    );
    println!(
        "etcd: `{ETCD_BIN} --logger=zap --log-outputs=stderr` on loopback ({})",
        etcd_version()
    );
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("Machine: {cpus} CPUs; client and server share them. Sizes: {sizes:?}");
    println!();
    println!("| figure | embedded | etcd | target |");
    println!("|---|---|---|---|");
    for f in Figure::ALL {
        let cell = |o: &Outcome| o.figures.get(&f).cloned().unwrap_or_else(|| "n/a".into());
        println!(
            "| {} | {} | {} | {} |",
            f.label(sizes),
            cell(embedded),
            cell(etcd),
            f.target()
        );
    }
    let notes: Vec<&String> = embedded.notes.iter().chain(&etcd.notes).collect();
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
    let embedded = runtime.block_on(embedded(&sizes));
    let etcd = runtime.block_on(etcd(&sizes));
    print_table(&sizes, &embedded, &etcd);
    let complete = Figure::ALL
        .iter()
        .all(|f| embedded.figures.contains_key(f) && etcd.figures.contains_key(f));
    runtime.shutdown_timeout(Duration::from_secs(1));
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
