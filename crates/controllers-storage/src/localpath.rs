//! The built-in local-path provisioner, as k3s ships rancher's `local-path-provisioner`:
//! a claim of a class whose provisioner is [`PROVISIONER`] (handed over by the
//! [`crate::pvbinder`] through the `volume.kubernetes.io/storage-provisioner` annotation) gets a
//! `hostPath` volume `pvc-<claim uid>` under the storage root of the node the scheduler selected,
//! pinned to that node by node affinity and pre-bound to the claim; a released volume of a
//! `Delete` class is deleted. The directory is made by the kubelet when it mounts the volume
//! (`DirectoryOrCreate`); removing it after deletion is the node's job.
//!
//! [`ensure_default_storage_class`] creates the default `local-path` StorageClass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8rs_controller_runtime::{self as runtime, EventSink, Queue, SharedInformers};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::volume::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER,
    annotation, claim_class, claim_key, is_delay_binding, reference_to, volume_name, volume_phase,
};

/// The provisioner name classes use to ask for local-path volumes.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The name of the default class [`ensure_default_storage_class`] creates.
pub const DEFAULT_CLASS: &str = "local-path";
/// The annotation that makes a class the default for class-less claims.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Rancher's annotation recording the node a volume lives on.
pub const ANN_LOCAL_PATH_NODE: &str = "local.path.provisioner/selected-node";
const RESYNC: Duration = Duration::from_secs(15);

/// Settings of the provisioner.
#[derive(Debug, Clone)]
pub struct LocalPathConfig {
    /// The directory on every node under which volumes live (`<root>/pvc-<uid>_<ns>_<name>`).
    pub storage_root: PathBuf,
}

impl Default for LocalPathConfig {
    fn default() -> Self {
        Self {
            storage_root: PathBuf::from("/var/lib/k8rs/storage"),
        }
    }
}

/// What to do for one claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not ours, not yet, or already done.
    Nothing,
    /// Create this volume.
    Provision(Box<PersistentVolume>),
    /// Provisioning cannot succeed; report why (`ProvisioningFailed`).
    Fail(String),
}

/// The name of the volume provisioned for a claim.
pub fn volume_name_for(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

/// Upstream's `shouldProvision` and rancher's `Provision` for one claim: `exists` says whether
/// the volume for it already exists.
pub fn decide(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    exists: bool,
    storage_root: &Path,
) -> Decision {
    let ours = annotation(&claim.metadata, ANN_STORAGE_PROVISIONER)
        .or_else(|| annotation(&claim.metadata, ANN_BETA_STORAGE_PROVISIONER))
        == Some(PROVISIONER);
    let Some(class) = class.filter(|c| c.provisioner == PROVISIONER) else {
        return Decision::Nothing;
    };
    if !ours || exists || !volume_name(claim).is_empty() || claim.metadata.uid.is_none() {
        return Decision::Nothing;
    }
    let node = annotation(&claim.metadata, ANN_SELECTED_NODE);
    if node.is_none() && is_delay_binding(Some(class)) {
        return Decision::Nothing;
    }
    let fail = |why: &str| {
        Decision::Fail(format!(
            "failed to provision volume with StorageClass {:?}: {why}",
            claim_class(claim)
        ))
    };
    let Some(node) = node else {
        return fail("configuration error, no node was specified");
    };
    let spec = claim.spec.clone().unwrap_or_default();
    if spec.selector.is_some() {
        return fail("claim.Spec.Selector is not supported");
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return fail("local-path does not support block volume provisioning");
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return fail(
            "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes",
        );
    }
    Decision::Provision(Box::new(volume_for(claim, class, node, storage_root)))
}

fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    storage_root: &Path,
) -> PersistentVolume {
    let name = volume_name_for(claim);
    let folder = format!(
        "{name}_{}_{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    );
    let spec = claim.spec.clone().unwrap_or_default();
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| BTreeMap::from([("storage".to_owned(), q.clone())]));
    let term = NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: "kubernetes.io/hostname".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_fields: None,
    };
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([
                (ANN_PROVISIONED_BY.to_owned(), PROVISIONER.to_owned()),
                (ANN_LOCAL_PATH_NODE.to_owned(), node.to_owned()),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes,
            capacity,
            claim_ref: Some(reference_to(claim)),
            host_path: Some(HostPathVolumeSource {
                path: storage_root.join(folder).to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![term],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(claim_class(claim).to_owned()),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            ..Default::default()
        }),
        status: None,
    }
}

/// Upstream's `shouldDelete`: a released volume of ours whose policy is `Delete`.
pub fn should_delete(volume: &PersistentVolume) -> bool {
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    volume_phase(volume) == "Released"
        && policy == Some("Delete")
        && annotation(&volume.metadata, ANN_PROVISIONED_BY) == Some(PROVISIONER)
        && volume.metadata.deletion_timestamp.is_none()
}

/// The default `local-path` StorageClass, as k3s ships it.
pub fn default_storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                ANN_DEFAULT_CLASS.to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// Creates the default `local-path` StorageClass unless a class of that name exists (an
/// existing one, possibly changed by the user, is left alone).
///
/// # Errors
/// [`Error::Write`] when the API server refuses the create for another reason than existence.
pub async fn ensure_default_storage_class(client: Client) -> Result<(), Error> {
    let api: Api<StorageClass> = Api::all(client);
    let read_err = |source| Error::Read {
        kind: "storageclass",
        key: DEFAULT_CLASS.into(),
        source,
    };
    if api
        .get_opt(DEFAULT_CLASS)
        .await
        .map_err(read_err)?
        .is_some()
    {
        return Ok(());
    }
    match api
        .create(&PostParams::default(), &default_storage_class())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(Error::Write {
            verb: "create",
            kind: "storageclass",
            key: DEFAULT_CLASS.into(),
            source,
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Claim(String),
    Volume(String),
}

struct Ctx {
    client: Client,
    root: PathBuf,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    events: EventSink,
}

/// Runs the provisioner until `shutdown`.
///
/// # Errors
/// [`Error::CachesNotSynced`] when the caches never listed.
pub async fn run(
    informers: SharedInformers,
    config: LocalPathConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let queue: Queue<Key> = Queue::default();
    let q = queue.clone();
    let claims = informers.subscribe::<PersistentVolumeClaim, _>(move |(old, new)| {
        if let Some(c) = new.or(old) {
            q.add(Key::Claim(claim_key(c)));
        }
    });
    let q = queue.clone();
    let volumes = informers.subscribe::<PersistentVolume, _>(move |(old, new)| {
        if let Some(v) = new.or(old) {
            q.add(Key::Volume(v.metadata.name.clone().unwrap_or_default()));
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
    let cs = claims.clone();
    runtime::resync(queue.clone(), RESYNC, shutdown.clone(), move || {
        cs.state()
            .iter()
            .map(|c| Key::Claim(claim_key(c)))
            .collect()
    });
    let ctx = Arc::new(Ctx {
        events: EventSink::new(client.clone(), PROVISIONER),
        client,
        root: config.storage_root,
        claims,
        volumes,
        classes,
    });
    let sync = move |key: Key| {
        let ctx = ctx.clone();
        async move { sync_key(ctx, key).await.map(|()| None) }
    };
    runtime::run_synced(PROVISIONER, stores, queue, 1, shutdown, sync).await?;
    Ok(())
}

async fn sync_key(ctx: Arc<Ctx>, key: Key) -> Result<(), Error> {
    match key {
        Key::Claim(k) => sync_claim(&ctx, &k).await,
        Key::Volume(name) => {
            let Some(volume) = ctx.volumes.get(&ObjectRef::new(&name)) else {
                return Ok(());
            };
            if !should_delete(&volume) {
                return Ok(());
            }
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(source) => Err(Error::Write {
                    verb: "delete",
                    kind: "persistentvolume",
                    key: name,
                    source,
                }),
            }
        }
    }
}

async fn sync_claim(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(claim) = ctx.claims.get(&ObjectRef::new(name).within(ns)) else {
        return Ok(());
    };
    let class = ctx.classes.get(&ObjectRef::new(claim_class(&claim)));
    let pv_name = volume_name_for(&claim);
    let exists = ctx.volumes.get(&ObjectRef::new(&pv_name)).is_some();
    let reference = claim.object_ref(&());
    match decide(&claim, class.as_deref(), exists, &ctx.root) {
        Decision::Nothing => Ok(()),
        Decision::Fail(why) => {
            ctx.events
                .record(&reference, true, "ProvisioningFailed", why);
            Ok(())
        }
        Decision::Provision(pv) => {
            let msg = format!("External provisioner is provisioning volume for claim {key:?}");
            ctx.events.record(&reference, false, "Provisioning", msg);
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            match api.create(&PostParams::default(), &pv).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                Err(source) => {
                    return Err(Error::Write {
                        verb: "create",
                        kind: "persistentvolume",
                        key: pv_name,
                        source,
                    });
                }
            }
            let msg = format!("Successfully provisioned volume {pv_name}");
            ctx.events
                .record(&reference, false, "ProvisioningSucceeded", msg);
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "localpath_tests.rs"]
mod tests;
