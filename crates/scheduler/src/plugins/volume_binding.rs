//! VolumeBinding: a pod's PersistentVolumeClaims must be usable on the node. Bound claims need
//! their volume's node affinity to match; unbound `WaitForFirstConsumer` claims need an available
//! volume (static local volumes) on the node, or a class that provisions dynamically. Immediate
//! claims must be bound before the pod is scheduled.
//!
//! Binding is done here, at PreBind, because k8rs has no PersistentVolume controller yet: for a
//! chosen static volume both sides are written (`pv.spec.claimRef`, then `pvc.spec.volumeName`);
//! for dynamic provisioning only the `volume.kubernetes.io/selected-node` annotation is set.
//! TODO: once a PV controller exists, write only `claimRef` (as upstream) and wait for it to
//! complete the binding; also check CSI/attach limits (NodeVolumeLimits) and VolumeZone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::json;

use super::node_affinity::RequiredNodeAffinity;
use crate::api::SharedApi;
use crate::framework::{
    ActionType, ClusterEvent, CycleState, EventResource, FilterPlugin, Plugin, PreBindPlugin,
    PreFilterPlugin, PreFilterResult, ReservePlugin, Status,
};
use crate::listers::Listers;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::resources;
use crate::snapshot::Snapshot;

/// The plugin's name.
pub const NAME: &str = "VolumeBinding";
/// Upstream's `ErrReasonBindConflict`.
pub const ERR_REASON_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
/// Upstream's `ErrReasonNodeConflict`.
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Upstream's `ErrReasonPVNotExist`.
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// Upstream's message for unbound Immediate claims.
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
const STATE_KEY: &str = "PreFilterVolumeBinding";
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

#[derive(Debug, Clone)]
struct ClaimToBind {
    claim: Arc<PersistentVolumeClaim>,
    class: Option<String>,
    provisions: bool,
}

/// Per claim: the volume to bind it to, or `None` to provision one.
type Decisions = Vec<(Arc<PersistentVolumeClaim>, Option<Arc<PersistentVolume>>)>;

#[derive(Debug, Clone, Default)]
struct State {
    bound: Vec<Option<Arc<PersistentVolume>>>,
    to_bind: Vec<ClaimToBind>,
    /// The cycle's nodes, to decide volumes at Reserve.
    snapshot: Snapshot,
    /// Decided at Reserve: (claim, Some(volume) for static binding, None to provision).
    decisions: Decisions,
}

/// The VolumeBinding plugin.
pub struct VolumeBinding {
    listers: Listers,
    api: SharedApi,
    /// Volumes reserved for a claim (`ns/name`) before the informer shows them bound.
    reserved: Mutex<HashMap<String, String>>,
}

impl VolumeBinding {
    /// The plugin reading storage objects from `listers` and writing through `api`.
    pub fn new(listers: Listers, api: SharedApi) -> Self {
        Self {
            listers,
            api,
            reserved: Mutex::new(HashMap::new()),
        }
    }

    fn reserved(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.reserved.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim_names(pod: &PodInfo) -> Vec<String> {
        let volumes = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default();
        volumes
            .iter()
            .filter_map(|v| {
                if let Some(c) = &v.persistent_volume_claim {
                    Some(c.claim_name.clone())
                } else {
                    v.ephemeral
                        .as_ref()
                        .map(|_| format!("{}-{}", pod.name(), v.name))
                }
            })
            .collect()
    }

    fn classify(&self, pod: &PodInfo, state: &mut State, name: &str) -> Result<(), Status> {
        let Some(claim) = self.listers.pvc(pod.namespace(), name) else {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" not found"
            )));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" is being deleted"
            )));
        }
        let spec = claim.spec.as_ref();
        if let Some(volume) = spec
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty())
        {
            state.bound.push(self.listers.pv(volume));
            return Ok(());
        }
        let class_name = spec
            .and_then(|s| s.storage_class_name.clone())
            .filter(|c| !c.is_empty());
        let class = class_name
            .as_deref()
            .and_then(|c| self.listers.storage_class(c));
        let wait = class
            .as_ref()
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer");
        if !wait {
            return Err(Status::unresolvable(ERR_UNBOUND_IMMEDIATE));
        }
        let provisions = class
            .as_ref()
            .is_some_and(|c| c.provisioner != NO_PROVISIONER);
        state.to_bind.push(ClaimToBind {
            claim,
            class: class_name,
            provisions,
        });
        Ok(())
    }

    /// The smallest available volume that satisfies `claim` on `node`, not taken by `taken`.
    fn find_volume(
        &self,
        want: &ClaimToBind,
        node: &NodeInfo,
        taken: &[String],
    ) -> Option<Arc<PersistentVolume>> {
        let claim_key = claim_key(&want.claim);
        let reserved = self.reserved();
        let request = storage(
            want.claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref()),
        );
        self.listers
            .pvs
            .state()
            .into_iter()
            .filter(|pv| {
                let name = pv.metadata.name.clone().unwrap_or_default();
                let free =
                    reserved.get(&name).is_none_or(|c| *c == claim_key) && !taken.contains(&name);
                free && volume_fits(pv, want, request, node)
            })
            .min_by_key(|pv| storage(pv.spec.as_ref().and_then(|s| s.capacity.as_ref())))
    }

    /// Decides, for `node`, the volume of every claim to bind; `None` when one cannot be met.
    fn decide(&self, state: &State, node: &NodeInfo) -> Option<Decisions> {
        let mut taken = Vec::new();
        let mut out = Vec::new();
        for want in &state.to_bind {
            match self.find_volume(want, node, &taken) {
                Some(pv) => {
                    taken.push(pv.metadata.name.clone().unwrap_or_default());
                    out.push((Arc::clone(&want.claim), Some(pv)));
                }
                None if want.provisions => out.push((Arc::clone(&want.claim), None)),
                None => return None,
            }
        }
        Some(out)
    }
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.metadata.name.as_deref().unwrap_or_default()
    )
}

fn storage(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> i64 {
    list.and_then(|l| l.get("storage"))
        .map(resources::value)
        .unwrap_or(0)
}

fn volume_node_ok(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|sel| RequiredNodeAffinity::from_node_selector(sel).matches(node))
}

fn volume_fits(pv: &PersistentVolume, want: &ClaimToBind, request: i64, node: &NodeInfo) -> bool {
    let Some(spec) = pv.spec.as_ref() else {
        return false;
    };
    let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
    let claim_spec = want.claim.spec.as_ref();
    let unclaimed = spec.claim_ref.as_ref().is_none_or(|r| {
        r.name.as_deref() == want.claim.metadata.name.as_deref()
            && r.namespace.as_deref() == want.claim.metadata.namespace.as_deref()
    });
    let class_ok = spec.storage_class_name.as_deref().unwrap_or_default()
        == want.class.as_deref().unwrap_or_default();
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    let modes_ok = claim_spec
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|m| modes.contains(m));
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_owned();
    let volume_mode_ok =
        mode(spec.volume_mode.as_ref()) == mode(claim_spec.and_then(|s| s.volume_mode.as_ref()));
    available
        && unclaimed
        && class_ok
        && modes_ok
        && volume_mode_ok
        && storage(spec.capacity.as_ref()) >= request
        && volume_node_ok(pv, node)
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        let add_update = ActionType::ADD | ActionType::UPDATE;
        vec![
            ClusterEvent::new(EventResource::PersistentVolumeClaim, add_update),
            ClusterEvent::new(EventResource::PersistentVolume, add_update),
            ClusterEvent::new(EventResource::StorageClass, add_update),
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD | ActionType::UPDATE_NODE_LABEL,
            ),
        ]
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let names = Self::claim_names(pod);
        if names.is_empty() {
            return (None, Status::skip());
        }
        let mut s = State {
            snapshot: snapshot.clone(),
            ..State::default()
        };
        for name in &names {
            if let Err(status) = self.classify(pod, &mut s, name) {
                return (None, status);
            }
        }
        state.write(STATE_KEY, s);
        (None, Status::success())
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<State>(STATE_KEY) else {
            return Status::error("VolumeBinding: PreFilter state missing");
        };
        for pv in &s.bound {
            let Some(pv) = pv else {
                return Status::unresolvable(ERR_REASON_PV_NOT_EXIST);
            };
            if !volume_node_ok(pv, node) {
                return Status::unresolvable(ERR_REASON_NODE_CONFLICT);
            }
        }
        if !s.to_bind.is_empty() && self.decide(s, node).is_none() {
            return Status::unresolvable(ERR_REASON_BIND_CONFLICT);
        }
        Status::success()
    }
}

impl ReservePlugin for VolumeBinding {
    fn reserve(&self, state: &mut CycleState, _: &PodInfo, node_name: &str) -> Status {
        let Some(s) = state.read::<State>(STATE_KEY) else {
            return Status::success();
        };
        if s.to_bind.is_empty() {
            return Status::success();
        }
        // Filter saw this node fit; decide again to pick the volumes.
        let Some(node) = s.snapshot.get(node_name) else {
            return Status::error(format!("node {node_name:?} not in the snapshot"));
        };
        let Some(decisions) = self.decide(s, node) else {
            return Status::unschedulable(ERR_REASON_BIND_CONFLICT);
        };
        {
            let mut reserved = self.reserved();
            for (claim, pv) in &decisions {
                if let Some(name) = pv.as_ref().and_then(|pv| pv.metadata.name.clone()) {
                    reserved.insert(name, claim_key(claim));
                }
            }
        }
        if let Some(s) = state.read_mut::<State>(STATE_KEY) {
            s.decisions = decisions;
        }
        Status::success()
    }

    fn unreserve(&self, state: &mut CycleState, _: &PodInfo, _: &str) {
        let Some(s) = state.read_mut::<State>(STATE_KEY) else {
            return;
        };
        let mut reserved = self.reserved();
        for (_, pv) in s.decisions.drain(..) {
            if let Some(name) = pv.and_then(|pv| pv.metadata.name.clone()) {
                reserved.remove(&name);
            }
        }
    }
}

impl PreBindPlugin for VolumeBinding {
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        _: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let Some(s) = state.read::<State>(STATE_KEY) else {
                return Status::success();
            };
            for (claim, pv) in &s.decisions {
                let ns = claim.metadata.namespace.clone().unwrap_or_default();
                let name = claim.metadata.name.clone().unwrap_or_default();
                let result = match pv {
                    Some(pv) => self.bind_static(claim, pv).await,
                    None => {
                        let patch = json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": node}}});
                        self.api.patch_pvc(&ns, &name, patch).await
                    }
                };
                if let Err(e) = result {
                    return Status::error(format!("binding volumes: {e}"));
                }
            }
            Status::success()
        })
    }
}

impl VolumeBinding {
    async fn bind_static(
        &self,
        claim: &PersistentVolumeClaim,
        pv: &PersistentVolume,
    ) -> Result<(), crate::api::ApiError> {
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.metadata.name.clone().unwrap_or_default();
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let claim_ref = json!({"spec": {"claimRef": {
            "kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": ns, "name": name, "uid": claim.metadata.uid,
        }}, "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}}});
        self.api.patch_pv(&pv_name, claim_ref).await?;
        let volume = json!({"spec": {"volumeName": pv_name}, "metadata": {"annotations": {
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
        }}});
        self.api.patch_pvc(&ns, &name, volume).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fake::{Action, FakeApi};
    use crate::framework::Code;
    use crate::testing::{NodeBuilder, PodBuilder};
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimSpec,
        PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity,
        VolumeResourceRequirements,
    };
    use k8s_openapi::api::storage::v1::StorageClass;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::watcher::Event;

    fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(Into::into),
            uid: Some(format!("{name}-uid")),
            ..Default::default()
        }
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: meta(name, Some("default")),
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                volume_name: volume.map(Into::into),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_owned(), Quantity("1Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn local_pv(name: &str, host: &str, size: &str) -> PersistentVolume {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "kubernetes.io/hostname".into(),
                operator: "In".into(),
                values: Some(vec![host.into()]),
            }]),
            match_fields: None,
        };
        PersistentVolume {
            metadata: meta(name, None),
            spec: Some(PersistentVolumeSpec {
                storage_class_name: Some("local".into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                capacity: Some([("storage".to_owned(), Quantity(size.into()))].into()),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![term],
                    }),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        }
    }

    fn class(name: &str, mode: &str, provisioner: &str) -> StorageClass {
        StorageClass {
            metadata: meta(name, None),
            provisioner: provisioner.into(),
            volume_binding_mode: Some(mode.into()),
            ..Default::default()
        }
    }

    fn setup() -> (VolumeBinding, Arc<FakeApi>) {
        let (listers, mut w) = Listers::new();
        w.storage_classes.apply_watcher_event(&Event::Apply(class(
            "local",
            "WaitForFirstConsumer",
            NO_PROVISIONER,
        )));
        w.storage_classes.apply_watcher_event(&Event::Apply(class(
            "fast",
            "Immediate",
            "csi.example.com",
        )));
        w.storage_classes.apply_watcher_event(&Event::Apply(class(
            "dyn",
            "WaitForFirstConsumer",
            "csi.example.com",
        )));
        for c in [
            claim("data", "local", None),
            claim("imm", "fast", None),
            claim("bound", "local", Some("pv-a")),
            claim("grow", "dyn", None),
        ] {
            w.pvcs.apply_watcher_event(&Event::Apply(c));
        }
        w.pvs
            .apply_watcher_event(&Event::Apply(local_pv("pv-a", "a", "5Gi")));
        w.pvs
            .apply_watcher_event(&Event::Apply(local_pv("pv-b-small", "b", "512Mi")));
        w.pvs
            .apply_watcher_event(&Event::Apply(local_pv("pv-b", "b", "2Gi")));
        let api = Arc::new(FakeApi::default());
        (VolumeBinding::new(listers, api.clone()), api)
    }

    fn snapshot() -> Snapshot {
        Snapshot::from_nodes(["a", "b", "c"].map(|n| NodeBuilder::new(n).info()))
    }

    fn filter(plugin: &VolumeBinding, claim: &str) -> Result<Vec<Code>, Status> {
        let pod = PodBuilder::new("p").pvc(claim).info();
        let snap = snapshot();
        let mut state = CycleState::new();
        let (_, s) = plugin.pre_filter(&mut state, &pod, &snap);
        if !s.is_success() {
            return Err(s);
        }
        Ok(snap
            .iter()
            .map(|n| plugin.filter(&state, &pod, n).code)
            .collect())
    }

    #[test]
    fn claims_decide_where_the_pod_fits() {
        let (plugin, _) = setup();
        use Code::*;
        assert_eq!(
            filter(&plugin, "data"),
            Ok(vec![Success, Success, UnschedulableAndUnresolvable])
        );
        assert_eq!(filter(&plugin, "grow"), Ok(vec![Success, Success, Success]));
        let bound = filter(&plugin, "bound");
        assert_eq!(
            bound,
            Ok(vec![
                Success,
                UnschedulableAndUnresolvable,
                UnschedulableAndUnresolvable
            ])
        );
        let imm = filter(&plugin, "imm").err().map(|s| s.message());
        assert_eq!(imm.as_deref(), Some(ERR_UNBOUND_IMMEDIATE));
        let missing = filter(&plugin, "nope").err().map(|s| s.message());
        assert_eq!(
            missing.as_deref(),
            Some("persistentvolumeclaim \"nope\" not found")
        );
    }

    #[tokio::test]
    async fn reserve_and_pre_bind_bind_the_smallest_fitting_volume() {
        let (plugin, api) = setup();
        let pod = PodBuilder::new("p").pvc("data").info();
        let mut state = CycleState::new();
        plugin.pre_filter(&mut state, &pod, &snapshot());
        assert!(plugin.reserve(&mut state, &pod, "b").is_success());
        assert!(plugin.pre_bind(&state, &pod, "b").await.is_success());
        let actions = api.actions();
        assert!(
            matches!(&actions[0], Action::PatchPv(name, _) if name == "pv-b"),
            "{actions:?}"
        );
        assert!(
            matches!(&actions[1], Action::PatchPvc(name, p) if name == "default/data" && p["spec"]["volumeName"] == "pv-b")
        );
        // The volume stays reserved for this claim until unreserved.
        let other = PodBuilder::new("q").pvc("data").info();
        let mut s2 = CycleState::new();
        plugin.pre_filter(&mut s2, &other, &snapshot());
        plugin.unreserve(&mut state, &pod, "b");
        assert!(plugin.reserve(&mut s2, &other, "b").is_success());
    }
}
