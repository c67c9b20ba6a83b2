//! The resource quota controller, as upstream's: keeps every ResourceQuota's `status.hard`
//! equal to its `spec.hard` and `status.used` equal to what the namespace uses of each hard
//! resource (see [`usage`] for what is counted and how), recalculated promptly when a quota or
//! a counted object changes and fully every `resync_period`. The admission side (refusing what
//! would exceed a quota) is the API server's.
//!
//! It records no events, as upstream.

pub mod counts;
pub mod quantity;
pub mod sync;
pub mod usage;

#[cfg(test)]
mod tests;

use std::time::Duration;

use futures::StreamExt;
use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};
use counts::CountWatches;
use sync::{Snapshot, Update};

/// Settings of the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceQuotaConfig {
    /// How often every quota is recalculated even if nothing changed (upstream's
    /// `--resource-quota-sync-period`, default 5 minutes).
    pub resync_period: Duration,
}

impl Default for ResourceQuotaConfig {
    fn default() -> Self {
        ResourceQuotaConfig {
            resync_period: Duration::from_secs(300),
        }
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(
    informers: SharedInformers,
    config: ResourceQuotaConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.resync_period.is_zero() {
        return Err(Error::InvalidConfig {
            controller: "resourcequota",
            message: "--resource-quota-sync-period must be positive".into(),
        });
    }
    let client = informers.client().clone();
    let (quotas, c1) = informers.changes::<ResourceQuota>();
    let (pods, c2) = informers.changes::<Pod>();
    let (services, c3) = informers.changes::<Service>();
    let (claims, c4) = informers.changes::<PersistentVolumeClaim>();
    let ready = vec![
        k8rs_controller_runtime::ready(&quotas),
        k8rs_controller_runtime::ready(&pods),
        k8rs_controller_runtime::ready(&services),
        k8rs_controller_runtime::ready(&claims),
    ];
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let counted = CountWatches::new(client.clone(), tx, shutdown.child_token());
    let changes = vec![c1, c2, c3, c4, rx.boxed()];
    informer::run_loop(changes, ready, config.resync_period, shutdown, || {
        let (updates, wake) = decide(&quotas, &pods, &services, &claims, &counted);
        let client = client.clone();
        async move {
            let ok = write_all(&client, updates).await;
            match (ok, wake) {
                (false, _) => Next::Retry,
                (true, Some(d)) => Next::After(d),
                (true, None) => Next::Idle,
            }
        }
    })
    .await;
    Ok(())
}

/// One sync over the stores' snapshot: each update with the quota it applies to.
fn decide(
    quotas: &Store<ResourceQuota>,
    pods: &Store<Pod>,
    services: &Store<Service>,
    claims: &Store<PersistentVolumeClaim>,
    counted: &CountWatches,
) -> (Vec<(ResourceQuota, Update)>, Option<Duration>) {
    let quota_snap = quotas.state();
    let quota_refs: Vec<&ResourceQuota> = quota_snap.iter().map(AsRef::as_ref).collect();
    let wanted: Vec<String> = quota_refs
        .iter()
        .flat_map(|q| usage::counted_resources(q))
        .collect();
    counted.ensure(&wanted);
    let (pod_snap, svc_snap, pvc_snap) = (pods.state(), services.state(), claims.state());
    let snap = Snapshot {
        pods: pod_snap.iter().map(AsRef::as_ref).collect(),
        services: svc_snap.iter().map(AsRef::as_ref).collect(),
        claims: pvc_snap.iter().map(AsRef::as_ref).collect(),
        counts: counted.counts(),
    };
    let plan = sync::plan(&quota_refs, &snap, Timestamp::now());
    let updates = plan
        .updates
        .into_iter()
        .filter_map(|u| {
            let q = quota_refs.iter().find(|q| {
                q.metadata.name.as_deref() == Some(u.name.as_str())
                    && q.metadata.namespace.as_deref() == Some(u.namespace.as_str())
            })?;
            Some(((*q).clone(), u))
        })
        .collect();
    (updates, plan.wake_after)
}

/// Writes each status (as upstream, a status update at the quota's resourceVersion); whether
/// all went through (a conflict is retried on the next sync).
async fn write_all(client: &kube::Client, updates: Vec<(ResourceQuota, Update)>) -> bool {
    let mut ok = true;
    for (mut quota, update) in updates {
        quota.status = Some(update.status);
        let api: Api<ResourceQuota> = Api::namespaced(client.clone(), &update.namespace);
        match api
            .replace_status(&update.name, &PostParams::default(), &quota)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(kube::Error::Api(s)) if s.code == 409 => ok = false,
            Err(err) => {
                tracing::warn!(%err, quota = update.name, ns = update.namespace,
                    "resourcequota: writing status failed");
                ok = false;
            }
        }
    }
    ok
}
