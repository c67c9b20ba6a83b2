//! The worker's side of the pod's volumes: set up (or re-sync) them before containers start,
//! with FailedMount events for the ones that fail.

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;

use super::worker::Worker;

impl Worker {
    /// Sets up or re-syncs the pod's volumes when due; whether all are ready for containers.
    pub(super) async fn mount_volumes(&mut self, pod: &Pod) -> bool {
        if self.volumes.due(pod, Instant::now()) {
            let failed = self
                .volumes
                .sync(&self.client, &self.config.data_dir, pod)
                .await;
            for (volume, msg) in failed {
                tracing::info!(pod = ?pod.metadata.name, %volume, %msg, "volume set-up failed");
                let note = format!("MountVolume.SetUp failed for volume \"{volume}\" : {msg}");
                self.events.warning(pod, None, "FailedMount", note);
            }
        }
        self.volumes.ready(pod)
    }
}
