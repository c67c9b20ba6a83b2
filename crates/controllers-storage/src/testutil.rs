//! Test builders for claims, volumes and classes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

fn storage(size: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("storage".to_owned(), Quantity(size.into()))])
}

/// A claim `default/<name>` (uid `<name>-uid`, 1Gi, ReadWriteOnce, Pending).
pub struct ClaimBuilder(PersistentVolumeClaim);

impl ClaimBuilder {
    pub fn new(name: &str) -> Self {
        ClaimBuilder(PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(storage("1Gi")),
                    ..Default::default()
                }),
                volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        })
    }

    fn spec(&mut self) -> &mut PersistentVolumeClaimSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    pub fn class(mut self, class: &str) -> Self {
        self.spec().storage_class_name = Some(class.into());
        self
    }

    pub fn request(mut self, size: &str) -> Self {
        self.spec().resources = Some(VolumeResourceRequirements {
            requests: Some(storage(size)),
            ..Default::default()
        });
        self
    }

    pub fn modes(mut self, modes: &[&str]) -> Self {
        self.spec().access_modes = Some(modes.iter().map(|m| (*m).to_owned()).collect());
        self
    }

    pub fn volume(mut self, volume: &str) -> Self {
        self.spec().volume_name = Some(volume.into());
        self
    }

    pub fn selector(mut self, key: &str, value: &str) -> Self {
        self.spec().selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
            match_expressions: None,
        });
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// Bound to `volume` by the controller, with its status.
    pub fn bound(self, volume: &str, size: &str) -> Self {
        let mut b = self
            .volume(volume)
            .annotation(crate::volume::ANN_BIND_COMPLETED, "yes")
            .annotation(crate::volume::ANN_BOUND_BY_CONTROLLER, "yes")
            .phase("Bound");
        let st = b.0.status.get_or_insert_with(Default::default);
        st.capacity = Some(storage(size));
        st.access_modes = Some(vec!["ReadWriteOnce".into()]);
        b
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        self
    }

    pub fn build(self) -> PersistentVolumeClaim {
        self.0
    }
}

/// A volume `<name>` (ReadWriteOnce, Retain, Available, no class).
pub struct VolumeBuilder(PersistentVolume);

impl VolumeBuilder {
    pub fn new(name: &str, size: &str) -> Self {
        VolumeBuilder(PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("{name}-uid")),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                capacity: Some(storage(size)),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        })
    }

    fn spec(&mut self) -> &mut PersistentVolumeSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    pub fn class(mut self, class: &str) -> Self {
        self.spec().storage_class_name = Some(class.into());
        self
    }

    pub fn modes(mut self, modes: &[&str]) -> Self {
        self.spec().access_modes = Some(modes.iter().map(|m| (*m).to_owned()).collect());
        self
    }

    pub fn policy(mut self, policy: &str) -> Self {
        self.spec().persistent_volume_reclaim_policy = Some(policy.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// `claimRef` to `default/<claim>` with uid `uid` (`None`: pre-bound by name only).
    pub fn claim(mut self, claim: &str, uid: Option<&str>) -> Self {
        self.spec().claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some("default".into()),
            name: Some(claim.into()),
            uid: uid.map(Into::into),
            ..Default::default()
        });
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        self
    }

    pub fn build(self) -> PersistentVolume {
        self.0
    }

    pub fn arc(self) -> Arc<PersistentVolume> {
        Arc::new(self.0)
    }
}

/// A class with `provisioner` and binding `mode`.
pub fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(mode.into()),
        ..Default::default()
    }
}
