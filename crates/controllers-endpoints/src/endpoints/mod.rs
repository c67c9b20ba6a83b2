//! The Endpoints controller, as upstream's `endpoint` controller: one core/v1 Endpoints object
//! per Service with a selector, named like the Service, listing the selected pods' addresses
//! (ready ones in `addresses`, the others in `notReadyAddresses`).
//!
//! The shared Service, pod and Endpoints informers queue Service keys; [`sync::sync`] decides the
//! write.

pub mod sync;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::podutil;
use crate::runtime::{self, Queue, Requeue, SharedInformers};
use crate::trigger::TriggerTracker;
use sync::{Action, Snapshot};

/// The name events are reported under.
pub const CONTROLLER_NAME: &str = "endpoint-controller";

/// Endpoints that hold a leader-election record are never cleaned up.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Settings, upstream's `--concurrent-endpoint-syncs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointsConfig {
    /// Services synced at once (default 5).
    pub workers: usize,
}

impl Default for EndpointsConfig {
    fn default() -> Self {
        EndpointsConfig { workers: 5 }
    }
}

struct Ctx {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    triggers: TriggerTracker,
    recorder: Recorder,
}

/// Runs the Endpoints controller until `shutdown`, on the process's shared Service, pod and
/// Endpoints caches.
pub async fn run(
    informers: SharedInformers,
    config: EndpointsConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<String> = Queue::default();
    let services = {
        let q = queue.clone();
        informers.subscribe::<Service, _>(move |(old, new)| {
            if let Some(svc) = new.or(old) {
                q.add(runtime::key_of(svc));
            }
        })
    };
    let pods = {
        let (q, services) = (queue.clone(), services.clone());
        informers.subscribe::<Pod, _>(move |(old, new)| {
            for key in services_of_pod(&services, old, new) {
                q.add(key);
            }
        })
    };
    let endpoints = {
        let q = queue.clone();
        // Upstream recreates deleted Endpoints; other changes are not its business.
        informers.subscribe::<Endpoints, _>(move |(old, new)| {
            if let (Some(ep), None) = (old, new) {
                q.add(runtime::key_of(ep));
            }
        })
    };
    let synced = runtime::wait_synced(
        &shutdown,
        vec![
            runtime::ready(&services),
            runtime::ready(&pods),
            runtime::ready(&endpoints),
        ],
    )
    .await;
    if !synced {
        return if shutdown.is_cancelled() {
            Ok(())
        } else {
            Err(runtime::NotSynced.into())
        };
    }
    // Upstream's `checkLeftoverEndpoints`: Endpoints whose Service is gone are deleted.
    for ep in endpoints.state() {
        let leader = ep
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
        if !leader {
            queue.add(runtime::key_of(ep.as_ref()));
        }
    }
    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: None,
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        services,
        pods,
        endpoints,
        triggers: TriggerTracker::default(),
    });
    runtime::run_workers(queue, config.workers, shutdown, move |key: String| {
        let ctx = ctx.clone();
        async move { sync_key(&ctx, &key).await }
    })
    .await;
    Ok(())
}

/// The Services (keys) whose selector matches the pod before or after a change.
pub(crate) fn services_of_pod(
    services: &Store<Service>,
    old: Option<&Pod>,
    new: Option<&Pod>,
) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for pod in old.into_iter().chain(new) {
        let ns = pod.metadata.namespace.as_deref();
        for svc in services.state() {
            if svc.metadata.namespace.as_deref() != ns {
                continue;
            }
            let Some(selector) = podutil::selector(&svc) else {
                continue;
            };
            if podutil::selects(selector, pod.metadata.labels.as_ref()) {
                let key = runtime::key_of(svc.as_ref());
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

async fn sync_key(ctx: &Ctx, key: &str) -> Result<Requeue, Error> {
    let (namespace, name) = runtime::split_key(key);
    let service = runtime::lookup(&ctx.services, key);
    let current = runtime::lookup(&ctx.endpoints, key);
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .collect();
    let pods: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
    let trigger = match service.as_deref() {
        Some(svc) => {
            let selected: Vec<&Pod> = match podutil::selector(svc) {
                Some(sel) => pods
                    .iter()
                    .copied()
                    .filter(|p| podutil::selects(sel, p.metadata.labels.as_ref()))
                    .collect(),
                None => Vec::new(),
            };
            ctx.triggers.compute(key, svc, &selected)
        }
        None => {
            ctx.triggers.forget(key);
            (None, Default::default())
        }
    };
    let (trigger, seen) = trigger;
    let snap = Snapshot {
        namespace,
        name,
        service: service.as_deref(),
        pods: &pods,
        current: current.as_deref(),
        trigger,
    };
    let Some(action) = sync::sync(&snap) else {
        ctx.triggers.commit(seen);
        return Ok(None);
    };
    perform(ctx, key, action).await?;
    ctx.triggers.commit(seen);
    Ok(None)
}

async fn perform(ctx: &Ctx, key: &str, action: Action) -> Result<(), Error> {
    let (namespace, _) = runtime::split_key(key);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), namespace);
    let write = |verb, source| Error::Write {
        verb,
        kind: "Endpoints",
        key: key.to_string(),
        source,
    };
    match action {
        Action::Create(ep) => match api.create(&PostParams::default(), &ep).await {
            Ok(_) => Ok(()),
            Err(err) => {
                warn_event(ctx, &ep, "FailedToCreateEndpoint", "create", &err).await;
                Err(write("create", err))
            }
        },
        Action::Update(ep) => {
            let name = ep.metadata.name.clone().unwrap_or_default();
            match api.replace(&name, &PostParams::default(), &ep).await {
                Ok(_) => Ok(()),
                Err(err) => {
                    warn_event(ctx, &ep, "FailedToUpdateEndpoint", "update", &err).await;
                    Err(write("update", err))
                }
            }
        }
        Action::Delete { name, .. } => match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(err) => Err(write("delete", err)),
        },
    }
}

async fn warn_event(ctx: &Ctx, ep: &Endpoints, reason: &str, verb: &str, err: &kube::Error) {
    if matches!(err, kube::Error::Api(s) if s.code == 409) {
        return;
    }
    let ns = ep.metadata.namespace.clone().unwrap_or_default();
    let name = ep.metadata.name.clone().unwrap_or_default();
    let note = if verb == "create" {
        format!("Failed to create endpoint for service {ns}/{name}: {err}")
    } else {
        format!("Failed to update endpoint {ns}/{name}: {err}")
    };
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Endpoints".into()),
        namespace: Some(ns),
        name: Some(name),
        uid: ep.metadata.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note),
        action: verb.into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(%err, "recording an event failed");
    }
}
