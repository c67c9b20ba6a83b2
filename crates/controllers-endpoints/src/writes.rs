//! Carrying out a slice [`Plan`]: the only IO of the slice controllers' syncs.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};

use crate::Error;
use crate::slices::Plan;
use crate::tracker::SliceTracker;

/// Deletes, updates, then creates, recording each write in `tracker` under `owner`.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    owner: &str,
    plan: Plan,
    tracker: &SliceTracker,
) -> Result<(), Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let fail = |verb, source| Error::Write {
        verb,
        kind: "EndpointSlice",
        key: owner.to_string(),
        source,
    };
    for slice in plan.delete {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracker.deleted(owner, &name),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(fail("delete", err)),
        }
    }
    for slice in plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let written = api
            .replace(&name, &PostParams::default(), &slice)
            .await
            .map_err(|e| fail("update", e))?;
        tracker.written(owner, &written);
    }
    for slice in plan.create {
        let written = api
            .create(&PostParams::default(), &slice)
            .await
            .map_err(|e| fail("create", e))?;
        tracker.written(owner, &written);
    }
    Ok(())
}
