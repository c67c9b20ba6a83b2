//! The HorizontalPodAutoscaler controller (autoscaling/v2), as upstream's: every sync period
//! each HPA reads its target's scale subresource, the pods its selector matches (from the shared
//! pod cache) and their `metrics.k8s.io` PodMetrics, computes the replica count ([`calculator`], [`behavior`]),
//! writes it through the scale subresource and reports status, conditions and events.
//!
//! The decision is [`sync::decide`], a pure function; this module is the I/O around it.

pub mod behavior;
pub mod calculator;
pub mod sync;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8rs_controller_runtime::{self as runtime, Queue, Requeue, SharedInformers};
use k8rs_machinery::labels::Selector;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use behavior::Memory;
use sync::{Decision, PodUsage, ScaleView, Settings, Snapshot};

/// The controller's name in events (`reportingController`).
pub const CONTROLLER_NAME: &str = "horizontal-pod-autoscaler";

/// Settings of the HPA controller (upstream's `--horizontal-pod-autoscaler-*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpaConfig {
    /// HPAs synced at once (`--concurrent-horizontal-pod-autoscaler-syncs`, 5).
    pub workers: usize,
    /// How often each HPA is synced (`--horizontal-pod-autoscaler-sync-period`, 15 s).
    pub sync_period: Duration,
    /// Scale-down stabilization for HPAs that set none
    /// (`--horizontal-pod-autoscaler-downscale-stabilization`, 5 min).
    pub downscale_stabilization: Duration,
    /// Wait before a failed sync is retried.
    pub retry_after: Duration,
}

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            workers: 5,
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_secs(300),
            retry_after: Duration::from_secs(5),
        }
    }
}

struct Ctx {
    client: kube::Client,
    config: HpaConfig,
    recorder: Recorder,
    hpas: Store<HorizontalPodAutoscaler>,
    /// The shared pod cache (upstream's pod lister).
    pods: Store<Pod>,
    /// Recent recommendations and scale events, per HPA.
    memory: Mutex<HashMap<String, Memory>>,
    queue: Queue<String>,
    resyncs: Resyncs,
}

/// The next sync of each HPA, at most one waiting per HPA (the earliest wins), as upstream's
/// delaying queue: an HPA is synced every sync period however often it is also synced on a
/// change, and a failed one is retried once, not once per failure.
#[derive(Default)]
struct Resyncs {
    due: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Resyncs {
    /// Queues `key` after `delay`, unless it is already due sooner.
    fn after(&self, queue: &Queue<String>, key: &str, delay: Duration) {
        let at = Instant::now() + delay;
        {
            let mut due = lock(&self.due);
            if due.get(key).is_some_and(|d| *d <= at) {
                return;
            }
            due.insert(key.to_string(), at);
        }
        let (due, queue, key) = (self.due.clone(), queue.clone(), key.to_string());
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let current = {
                let mut due = lock(&due);
                let current = due.get(&key) == Some(&at);
                if current {
                    due.remove(&key);
                }
                current
            };
            if current {
                queue.add(key);
            }
        });
    }
}

/// Runs the HPA controller until `shutdown`, on the process's shared HPA and pod caches: every
/// HPA is synced when it is created or its spec changes, and `sync_period` after its last sync
/// (`retry_after` after a failed one).
pub async fn run(
    informers: SharedInformers,
    config: HpaConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<String> = Queue::default();
    let hpas = {
        let q = queue.clone();
        informers.subscribe::<HorizontalPodAutoscaler, _>(move |(old, new)| {
            if needs_sync(old, new)
                && let Some(hpa) = new.or(old)
            {
                q.add(runtime::key_of(hpa));
            }
        })
    };
    let pods = informers.store::<Pod>();
    let stores = vec![runtime::ready(&hpas), runtime::ready(&pods)];
    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: None,
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config,
        hpas,
        pods,
        memory: Mutex::new(HashMap::new()),
        queue: queue.clone(),
        resyncs: Resyncs::default(),
    });
    let sync = move |key: String| {
        let ctx = ctx.clone();
        async move { sync_key(&ctx, &key).await }
    };
    let workers = config.workers;
    runtime::run_synced(CONTROLLER_NAME, stores, queue, workers, shutdown, sync).await?;
    Ok(())
}

/// Whether a change of an HPA calls for a sync now: it was added or deleted, or its spec or
/// labels changed (its own status writes wait for the next resync, as upstream).
fn needs_sync(
    old: Option<&HorizontalPodAutoscaler>,
    new: Option<&HorizontalPodAutoscaler>,
) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => {
            old.spec != new.spec || old.metadata.labels != new.metadata.labels
        }
        _ => true,
    }
}

/// One sync of the HPA `key`; a failure is logged and retried after `retry_after` (upstream
/// retries at its fixed sync interval rather than with backoff).
async fn sync_key(ctx: &Ctx, key: &str) -> Result<Requeue, Error> {
    let Some(hpa) = runtime::lookup(&ctx.hpas, key) else {
        lock(&ctx.memory).remove(key);
        return Ok(None);
    };
    let next = match reconcile(&hpa, ctx).await {
        Ok(()) => ctx.config.sync_period,
        Err(err) => {
            tracing::info!(%err, key, "hpa: sync failed; retrying");
            ctx.config.retry_after
        }
    };
    ctx.resyncs.after(&ctx.queue, key, next);
    Ok(None)
}

async fn reconcile(hpa: &HorizontalPodAutoscaler, ctx: &Ctx) -> Result<(), Error> {
    let ns = hpa.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", hpa.name_any());
    let Some(spec) = hpa.spec.as_ref() else {
        return Ok(());
    };
    let target = &spec.scale_target_ref;
    let scales = Api::<DynamicObject>::namespaced_with(
        ctx.client.clone(),
        &ns,
        &target_resource(target.api_version.as_deref().unwrap_or("v1"), &target.kind),
    );
    let scale = scales
        .get_scale(&target.name)
        .await
        .map(|s| ScaleView {
            replicas: s.spec.and_then(|s| s.replicas).unwrap_or(0),
            selector: s.status.and_then(|s| s.selector).unwrap_or_default(),
        })
        .map_err(|e| api_message(&e));
    let (pods, metrics) = match &scale {
        Ok(s) if !s.selector.is_empty() => (
            selected_pods(&ctx.pods, &ns, &s.selector),
            fetch_metrics(&ctx.client, &ns, &s.selector).await,
        ),
        _ => (Vec::new(), Ok(BTreeMap::new())),
    };
    let pods: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
    let now_ms = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let settings = Settings {
        downscale_window_s: i32::try_from(ctx.config.downscale_stabilization.as_secs())
            .unwrap_or(i32::MAX),
    };
    let mut memory = lock(&ctx.memory).remove(&key).unwrap_or_default();
    let snapshot = Snapshot {
        hpa,
        scale: scale.clone(),
        pods: &pods,
        metrics,
        now_ms,
    };
    let mut decision = sync::decide(&snapshot, &mut memory, settings);
    if let (Some((replicas, _)), Ok(current)) = (decision.rescale.clone(), &scale) {
        let patch = json!({"spec": {"replicas": replicas}});
        match scales
            .patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => decision.rescaled(hpa, &mut memory, current.replicas, settings, now_ms),
            Err(e) => decision.rescale_failed(&api_message(&e), now_ms),
        }
    }
    lock(&ctx.memory).insert(key, memory);
    write_status(&ctx.client, hpa, &decision).await?;
    publish(&ctx.recorder, hpa, &decision).await;
    match decision.error {
        Some(err) => Err(Error::SyncFailed(err)),
        None => Ok(()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The resource of a scale target: the built-in scalable kinds, else the kind's plural guessed
/// as upstream's RESTMapper would for a simple name.
pub fn target_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Deployment" => "deployments".to_string(),
        "ReplicaSet" => "replicasets".to_string(),
        "StatefulSet" => "statefulsets".to_string(),
        "ReplicationController" => "replicationcontrollers".to_string(),
        other => format!("{}s", other.to_ascii_lowercase()),
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural,
    }
}

/// The cached pods of `ns` that the scale's `selector` matches (none if it does not parse).
fn selected_pods(pods: &Store<Pod>, ns: &str, selector: &str) -> Vec<Arc<Pod>> {
    let Ok(selector) = Selector::parse(selector) else {
        return Vec::new();
    };
    let empty = BTreeMap::new();
    pods.state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .collect()
}

/// The `metrics.k8s.io` usage of the selected pods (or why the metrics API failed).
async fn fetch_metrics(
    client: &kube::Client,
    ns: &str,
    selector: &str,
) -> Result<BTreeMap<String, PodUsage>, String> {
    let params = ListParams::default().labels(selector);
    let metrics_api =
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &pod_metrics_resource());
    match metrics_api.list(&params).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .map(|m| (m.name_any(), pod_usage(&m.data)))
            .collect()),
        Err(e) => Err(api_message(&e)),
    }
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

/// A PodMetrics object's usage, milli-units per container and resource.
pub fn pod_usage(data: &Value) -> PodUsage {
    let timestamp_ms = data["timestamp"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_millisecond());
    let window_ms = data["window"]
        .as_str()
        .and_then(go_duration_ms)
        .unwrap_or(0);
    let containers = data["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = c["name"].as_str()?.to_string();
            let usage = c["usage"]
                .as_object()?
                .iter()
                .filter_map(|(r, q)| {
                    let nanos = k8rs_api::quantity::nano_value(q.as_str()?)?;
                    Some((r.clone(), calculator::milli(nanos)))
                })
                .collect();
            Some((name, usage))
        })
        .collect();
    PodUsage {
        timestamp_ms,
        window_ms,
        containers,
    }
}

/// A Go duration (`15s`, `1.5s`, `500ms`, `1m0.5s`) in milliseconds.
pub fn go_duration_ms(s: &str) -> Option<i64> {
    let mut rest = s.trim();
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[u..];
    }
    Some(total.round() as i64)
}

/// Writes the status when it changed.
async fn write_status(
    client: &kube::Client,
    hpa: &HorizontalPodAutoscaler,
    d: &Decision,
) -> Result<(), Error> {
    if hpa.status.as_ref() == Some(&d.status) {
        return Ok(());
    }
    let mut status = serde_json::to_value(&d.status).unwrap_or_default();
    for field in ["currentMetrics", "lastScaleTime", "currentReplicas"] {
        if status.get(field).is_none() {
            status[field] = Value::Null;
        }
    }
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), &hpa.namespace().unwrap_or_default());
    let mut patch = json!({"status": status});
    if let Some(generation) = hpa.metadata.generation {
        patch["status"]["observedGeneration"] = generation.into();
    }
    api.patch_status(
        &hpa.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| Error::api("updating an HPA's status", e))?;
    Ok(())
}

async fn publish(recorder: &Recorder, hpa: &HorizontalPodAutoscaler, d: &Decision) {
    let reference = hpa.object_ref(&());
    for e in &d.events {
        let event = KubeEvent {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.clone(),
            note: Some(e.message.clone()),
            action: e.reason.clone(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::debug!(%err, "hpa: recording an event failed");
        }
    }
}

fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_resync_waits_per_hpa_the_earliest() {
        let queue: Queue<String> = Queue::default();
        let resyncs = Resyncs::default();
        for secs in [15, 1, 5] {
            resyncs.after(&queue, "default/web", Duration::from_secs(secs));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(queue.len(), 1);
        let key = queue.next().await;
        queue.done(&key);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(queue.is_empty(), "the later resyncs were dropped");
    }

    #[test]
    fn only_spec_and_label_changes_sync_at_once() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5},
        }))
        .expect("hpa");
        let mut status_only = hpa.clone();
        status_only.status = Some(Default::default());
        let mut resized = hpa.clone();
        if let Some(spec) = resized.spec.as_mut() {
            spec.max_replicas = 6;
        }
        assert!(needs_sync(None, Some(&hpa)));
        assert!(needs_sync(Some(&hpa), None));
        assert!(!needs_sync(Some(&hpa), Some(&status_only)));
        assert!(needs_sync(Some(&hpa), Some(&resized)));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ms("15s"), Some(15_000));
        assert_eq!(go_duration_ms("1.5s"), Some(1_500));
        assert_eq!(go_duration_ms("500ms"), Some(500));
        assert_eq!(go_duration_ms("1m0.5s"), Some(60_500));
        assert_eq!(go_duration_ms("x"), None);
    }

    #[test]
    fn pod_metrics_are_read_in_milli_units() {
        let data = json!({
            "timestamp": "2023-11-14T22:13:20Z", "window": "15s",
            "containers": [{"name": "app", "usage": {"cpu": "123456n", "memory": "1Ki"}}],
        });
        let u = pod_usage(&data);
        assert_eq!(u.timestamp_ms, 1_700_000_000_000);
        assert_eq!(u.window_ms, 15_000);
        assert_eq!(u.containers["app"]["cpu"], 1);
        assert_eq!(u.containers["app"]["memory"], 1_024_000);
    }

    #[test]
    fn scale_targets() {
        let r = target_resource("apps/v1", "Deployment");
        assert_eq!(
            (r.group.as_str(), r.plural.as_str()),
            ("apps", "deployments")
        );
        let r = target_resource("v1", "ReplicationController");
        assert_eq!((r.group.as_str(), r.version.as_str()), ("", "v1"));
    }
}
