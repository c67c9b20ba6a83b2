//! Performs the kubelet's pod writes with bounded concurrency: a fixed number of lanes, each a
//! task writing in order; a pod always goes to the same lane, so its writes never overtake one
//! another. Responses are not decoded into objects (thousands of pods: the CPU matters).

use std::hash::{Hash, Hasher};

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::Request;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::kubelet::{PodKey, Write};

/// A write that failed; `pod_gone` when the pod no longer exists (or is another pod now).
#[derive(Debug)]
pub struct Failed {
    pub key: PodKey,
    pub uid: String,
    pub pod_gone: bool,
}

/// The lanes' senders.
pub struct Writer {
    lanes: Vec<mpsc::UnboundedSender<Write>>,
}

impl Writer {
    /// Starts `lanes` lane tasks in `tasks`; failures are reported on `failed`.
    pub fn spawn(
        client: &kube::Client,
        lanes: usize,
        failed: &mpsc::UnboundedSender<Failed>,
        tasks: &mut JoinSet<()>,
    ) -> Writer {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tasks.spawn(lane(client.clone(), rx, failed.clone()));
                tx
            })
            .collect();
        Writer { lanes }
    }

    /// Queues a write on its pod's lane.
    pub fn submit(&self, write: Write) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        write.key().hash(&mut h);
        let lane = (h.finish() % self.lanes.len() as u64) as usize;
        // A closed lane means shutdown: the write is dropped with it.
        let _ = self.lanes[lane].send(write);
    }
}

async fn lane(
    client: kube::Client,
    mut writes: mpsc::UnboundedReceiver<Write>,
    failed: mpsc::UnboundedSender<Failed>,
) {
    while let Some(write) = writes.recv().await {
        if let Err(err) = perform(&client, &write).await {
            let (key, uid) = match &write {
                Write::Status { key, uid, .. } | Write::Delete { key, uid } => (key, uid),
            };
            let code = match &err {
                kube::Error::Api(s) => s.code,
                _ => 0,
            };
            let pod_gone = matches!(code, 404 | 409);
            if !pod_gone {
                tracing::warn!(pod = %format!("{}/{}", key.0, key.1), %err, "hollow node: pod write failed; retrying");
            }
            let _ = failed.send(Failed {
                key: key.clone(),
                uid: uid.clone(),
                pod_gone,
            });
        }
    }
}

/// One write: a strategic merge patch of the pod's status, or a delete with grace 0.
pub async fn perform(client: &kube::Client, write: &Write) -> Result<(), kube::Error> {
    let request = match write {
        Write::Status { key, uid, status } => {
            let body = json!({"metadata": {"uid": uid}, "status": status});
            pods(key).patch_subresource(
                "status",
                &key.1,
                &PatchParams::default(),
                &Patch::Strategic(body),
            )
        }
        Write::Delete { key, uid } => {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            pods(key).delete(&key.1, &params)
        }
    };
    let request = request.map_err(kube::Error::BuildRequest)?;
    client.request::<IgnoredAny>(request).await.map(|_| ())
}

fn pods(key: &PodKey) -> Request {
    Request::new(format!("/api/v1/namespaces/{}/pods", key.0))
}
