//! The PersistentVolume binder, as upstream's persistent-volume controller
//! (pkg/controller/volume/persistentvolume): binds pending claims to matching volumes in both
//! directions, keeps the phases of both (Pending/Bound/Lost, Available/Bound/Released/Failed),
//! hands claims of external provisioners (such as [`crate::localpath`]) to them, honours
//! `WaitForFirstConsumer` until the scheduler picks a node, and reclaims volumes whose claim is
//! gone. [`sync`] decides; this module only reads caches and writes.

pub mod sync;
#[cfg(test)]
mod sync_tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8rs_controller_runtime::{self as runtime, EventSink, Queue, SharedInformers};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::volume::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_STORAGE_PROVISIONER, claim_class, claim_key, claim_ref, claim_ref_key, volume_name,
    volume_phase,
};
use sync::{Action, Target};

/// The name events are reported under, as upstream's.
pub const CONTROLLER_NAME: &str = "persistentvolume-controller";

/// Settings of the binder.
#[derive(Debug, Clone)]
pub struct PvBinderConfig {
    /// How often every claim and volume is synced again (upstream's `--pvclaimbinder-sync-period`,
    /// 15 s).
    pub resync_period: Duration,
}

impl Default for PvBinderConfig {
    fn default() -> Self {
        Self {
            resync_period: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Claim(String),
    Volume(String),
}

struct Ctx {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    events: EventSink,
}

/// Runs the binder until `shutdown`.
///
/// # Errors
/// [`Error::CachesNotSynced`] when a cache stopped before it listed.
pub async fn run(
    informers: SharedInformers,
    config: PvBinderConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<Key> = Queue::default();
    let claims = informers.store::<PersistentVolumeClaim>();
    let q = queue.clone();
    informers.subscribe::<PersistentVolumeClaim, _>(move |(old, new)| {
        if let Some(c) = new.or(old) {
            on_claim(&q, c);
        }
    });
    let (q, cs) = (queue.clone(), claims.clone());
    let volumes = informers.subscribe::<PersistentVolume, _>(move |(old, new)| {
        if let Some(v) = new.or(old) {
            on_volume(&q, &cs, v);
        }
    });
    let (q, cs) = (queue.clone(), claims.clone());
    let classes = informers.subscribe::<StorageClass, _>(move |_| {
        for c in cs.state() {
            q.add(Key::Claim(claim_key(&c)));
        }
    });
    let stores = vec![
        runtime::ready(&claims),
        runtime::ready(&volumes),
        runtime::ready(&classes),
    ];
    let (cs, vs) = (claims.clone(), volumes.clone());
    runtime::resync(
        queue.clone(),
        config.resync_period,
        shutdown.clone(),
        move || all_keys(&cs, &vs),
    );
    let ctx = Arc::new(Ctx {
        events: EventSink::new(client.clone(), CONTROLLER_NAME),
        client,
        claims,
        volumes,
        classes,
    });
    let sync = move |key: Key| {
        let ctx = ctx.clone();
        async move { sync_key(ctx, key).await.map(|()| None) }
    };
    runtime::run_synced(CONTROLLER_NAME, stores, queue, 1, shutdown, sync).await?;
    Ok(())
}

fn all_keys(claims: &Store<PersistentVolumeClaim>, volumes: &Store<PersistentVolume>) -> Vec<Key> {
    let claims = claims
        .state()
        .into_iter()
        .map(|c| Key::Claim(claim_key(&c)));
    let volumes = volumes
        .state()
        .into_iter()
        .map(|v| Key::Volume(v.metadata.name.clone().unwrap_or_default()));
    claims.chain(volumes).collect()
}

fn on_claim(queue: &Queue<Key>, claim: &PersistentVolumeClaim) {
    queue.add(Key::Claim(claim_key(claim)));
    let volume = volume_name(claim);
    if !volume.is_empty() {
        queue.add(Key::Volume(volume.into()));
    }
}

/// A volume's claim is synced with it; a free volume may serve any unbound claim (upstream
/// leaves those to the periodic resync).
fn on_volume(queue: &Queue<Key>, claims: &Store<PersistentVolumeClaim>, volume: &PersistentVolume) {
    queue.add(Key::Volume(
        volume.metadata.name.clone().unwrap_or_default(),
    ));
    match claim_ref(volume) {
        Some(r) => queue.add(Key::Claim(claim_ref_key(r))),
        None if volume_phase(volume) == "Available" => {
            for claim in claims.state() {
                if volume_name(&claim).is_empty() {
                    queue.add(Key::Claim(claim_key(&claim)));
                }
            }
        }
        None => {}
    }
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

fn cached_claim(ctx: &Ctx, key: &str) -> Option<Arc<PersistentVolumeClaim>> {
    let (ns, name) = split(key);
    ctx.claims.get(&ObjectRef::new(name).within(ns))
}

async fn sync_key(ctx: Arc<Ctx>, key: Key) -> Result<(), Error> {
    let (actions, work) = match &key {
        Key::Claim(k) => {
            let Some(claim) = cached_claim(&ctx, k) else {
                return Ok(());
            };
            let volumes = ctx.volumes.state();
            let class = ctx
                .classes
                .get(&ObjectRef::new(claim_class(&claim)))
                .filter(|_| !claim_class(&claim).is_empty());
            let actions = sync::sync_claim(&claim, &volumes, class.as_deref());
            (actions, Work::new(Some(claim), None))
        }
        Key::Volume(name) => {
            let Some(volume) = ctx.volumes.get(&ObjectRef::new(name)) else {
                return Ok(());
            };
            let claim = claim_of(&ctx, &volume).await?;
            let actions = sync::sync_volume(&volume, claim.as_deref());
            (actions, Work::new(claim, Some(volume)))
        }
    };
    if !actions.is_empty() {
        tracing::debug!(?key, ?actions, "syncing");
    }
    apply(&ctx, work, actions).await
}

/// The claim a volume's `claimRef` names. When the cache lacks it (or holds another claim of the
/// same name) and the volume is not yet released, the API server is asked: a claim created an
/// instant ago must not make its new volume released.
async fn claim_of(
    ctx: &Ctx,
    volume: &PersistentVolume,
) -> Result<Option<Arc<PersistentVolumeClaim>>, Error> {
    let Some(r) = claim_ref(volume) else {
        return Ok(None);
    };
    let key = claim_ref_key(r);
    let cached = cached_claim(ctx, &key);
    let uid_ok = |c: &PersistentVolumeClaim| r.uid.is_none() || c.metadata.uid == r.uid;
    let settled = matches!(volume_phase(volume), "Released" | "Failed");
    if settled || cached.as_deref().is_some_and(uid_ok) {
        return Ok(cached);
    }
    let (ns, name) = split(&key);
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let live = api.get_opt(name).await.map_err(|source| Error::Read {
        kind: "persistentvolumeclaim",
        key: key.clone(),
        source,
    })?;
    Ok(live.map(Arc::new))
}

/// The objects a sync writes, updated with each write's result.
struct Work {
    claims: HashMap<String, PersistentVolumeClaim>,
    volumes: HashMap<String, PersistentVolume>,
}

impl Work {
    fn new(
        claim: Option<Arc<PersistentVolumeClaim>>,
        volume: Option<Arc<PersistentVolume>>,
    ) -> Self {
        let claims = claim
            .map(|c| (claim_key(&c), c.as_ref().clone()))
            .into_iter()
            .collect();
        let volumes = volume
            .map(|v| {
                (
                    v.metadata.name.clone().unwrap_or_default(),
                    v.as_ref().clone(),
                )
            })
            .into_iter()
            .collect();
        Work { claims, volumes }
    }

    fn volume(&mut self, ctx: &Ctx, name: &str) -> Result<&mut PersistentVolume, Error> {
        if !self.volumes.contains_key(name) {
            let v = ctx
                .volumes
                .get(&ObjectRef::new(name))
                .ok_or_else(|| Error::StaleCache(name.into()))?;
            self.volumes.insert(name.into(), v.as_ref().clone());
        }
        self.volumes
            .get_mut(name)
            .ok_or_else(|| Error::StaleCache(name.into()))
    }

    fn claim(&mut self, ctx: &Ctx, key: &str) -> Result<&mut PersistentVolumeClaim, Error> {
        if !self.claims.contains_key(key) {
            let c = cached_claim(ctx, key).ok_or_else(|| Error::StaleCache(key.into()))?;
            self.claims.insert(key.into(), c.as_ref().clone());
        }
        self.claims
            .get_mut(key)
            .ok_or_else(|| Error::StaleCache(key.into()))
    }
}

async fn apply(ctx: &Ctx, mut work: Work, actions: Vec<Action>) -> Result<(), Error> {
    for action in actions {
        match action {
            Action::Event {
                target,
                warning,
                reason,
                message,
            } => {
                let reference = match &target {
                    Target::Claim(k) => work.claim(ctx, k)?.object_ref(&()),
                    Target::Volume(n) => work.volume(ctx, n)?.object_ref(&()),
                };
                ctx.events.record(&reference, warning, reason, message);
            }
            Action::BindVolume { .. }
            | Action::UnbindVolume { .. }
            | Action::VolumePhase { .. } => {
                apply_volume(ctx, &mut work, action).await?;
            }
            _ => apply_claim(ctx, &mut work, action).await?,
        }
    }
    Ok(())
}

fn set_annotation(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), "yes".into());
}

fn write_err(
    verb: &'static str,
    kind: &'static str,
    key: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let key = key.to_owned();
    move |source| Error::Write {
        verb,
        kind,
        key,
        source,
    }
}

async fn apply_volume(ctx: &Ctx, work: &mut Work, action: Action) -> Result<(), Error> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pp = PostParams::default();
    let (name, status) = match action {
        Action::BindVolume {
            volume,
            claim_ref,
            by_controller,
        } => {
            let pv = work.volume(ctx, &volume)?;
            pv.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_ref);
            if by_controller {
                set_annotation(&mut pv.metadata, ANN_BOUND_BY_CONTROLLER);
            }
            (volume, false)
        }
        Action::UnbindVolume { volume } => {
            let pv = work.volume(ctx, &volume)?;
            let by_controller = pv
                .metadata
                .annotations
                .as_mut()
                .and_then(|a| a.remove(ANN_BOUND_BY_CONTROLLER))
                .is_some();
            let spec = pv.spec.get_or_insert_with(Default::default);
            if by_controller {
                spec.claim_ref = None;
            } else if let Some(r) = spec.claim_ref.as_mut() {
                r.uid = None;
            }
            (volume, false)
        }
        Action::VolumePhase {
            volume,
            phase,
            message,
        } => {
            let pv = work.volume(ctx, &volume)?;
            let st = pv.status.get_or_insert_with(Default::default);
            st.phase = Some(phase.into());
            st.message = message;
            (volume, true)
        }
        _ => return Ok(()),
    };
    let pv = work.volume(ctx, &name)?;
    let written = if status {
        api.replace_status(&name, &pp, pv).await
    } else {
        api.replace(&name, &pp, pv).await
    };
    *pv = written.map_err(write_err("update", "persistentvolume", &name))?;
    Ok(())
}

async fn apply_claim(ctx: &Ctx, work: &mut Work, action: Action) -> Result<(), Error> {
    let pp = PostParams::default();
    let (key, status) = match action {
        Action::BindClaim {
            claim,
            volume,
            by_controller,
        } => {
            let pvc = work.claim(ctx, &claim)?;
            pvc.spec.get_or_insert_with(Default::default).volume_name = Some(volume);
            set_annotation(&mut pvc.metadata, ANN_BIND_COMPLETED);
            if by_controller {
                set_annotation(&mut pvc.metadata, ANN_BOUND_BY_CONTROLLER);
            }
            (claim, false)
        }
        Action::ClaimStatus {
            claim,
            phase,
            capacity,
            access_modes,
        } => {
            let pvc = work.claim(ctx, &claim)?;
            let st = pvc.status.get_or_insert_with(Default::default);
            st.phase = Some(phase.into());
            st.capacity = capacity;
            st.access_modes = access_modes;
            (claim, true)
        }
        Action::SetProvisioner { claim, provisioner } => {
            let pvc = work.claim(ctx, &claim)?;
            let ann = pvc
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            ann.insert(ANN_STORAGE_PROVISIONER.into(), provisioner.clone());
            ann.insert(ANN_BETA_STORAGE_PROVISIONER.into(), provisioner);
            (claim, false)
        }
        _ => return Ok(()),
    };
    let (ns, name) = split(&key);
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let name = name.to_owned();
    let pvc = work.claim(ctx, &key)?;
    let written = if status {
        api.replace_status(&name, &pp, pvc).await
    } else {
        api.replace(&name, &pp, pvc).await
    };
    *pvc = written.map_err(write_err("update", "persistentvolumeclaim", &key))?;
    Ok(())
}
