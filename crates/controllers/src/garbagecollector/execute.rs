//! Performing the graph's actions against the API server.

use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};

use super::graph::{Action, Policy, Target};
use super::resources::Resource;

/// What a performed action reports back.
pub enum Outcome {
    /// No owner with this UID exists.
    Absent(String),
    /// Writing or looking up this UID failed: plan it again later.
    Failed(String),
}

/// The resource index an action is about.
pub fn resource_of(action: &Action) -> usize {
    match action {
        Action::Verify { res, .. } => *res,
        Action::Delete { target, .. }
        | Action::SetOwners { target, .. }
        | Action::SetFinalizers { target, .. } => target.res,
    }
}

fn api(client: &kube::Client, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = r.api_resource();
    match namespace {
        Some(ns) if r.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Performs one action on an object of `r`; reports a confirmed absent owner or a failure to
/// retry.
pub async fn execute(client: &kube::Client, r: &Resource, action: &Action) -> Option<Outcome> {
    let (target, result) = match action {
        Action::Verify {
            namespace,
            name,
            uid,
            ..
        } => return verify(client, r, namespace.as_deref(), name, uid).await,
        Action::Delete { target, policy } => (target, delete(client, r, target, *policy).await),
        Action::SetOwners { target, owners } => {
            let body = serde_json::json!({"metadata": {
                "ownerReferences": owners, "resourceVersion": target.resource_version}});
            (target, patch(client, r, target, body).await)
        }
        Action::SetFinalizers { target, finalizers } => {
            let body = serde_json::json!({"metadata": {
                "finalizers": finalizers, "resourceVersion": target.resource_version}});
            (target, patch(client, r, target, body).await)
        }
    };
    match result {
        Ok(()) => None,
        // Gone, or changed since it was seen: the watch brings the news.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => None,
        Err(err) => {
            tracing::warn!(%err, name = target.name, resource = r.group_resource(),
                "garbage collector: write failed; retrying");
            Some(Outcome::Failed(target.uid.clone()))
        }
    }
}

/// Looks an owner up by name; whether the object found has the reference's UID.
async fn verify(
    client: &kube::Client,
    r: &Resource,
    namespace: Option<&str>,
    name: &str,
    uid: &str,
) -> Option<Outcome> {
    match api(client, r, namespace).get_metadata_opt(name).await {
        Ok(Some(o)) if o.metadata.uid.as_deref() == Some(uid) => None,
        Ok(_) => Some(Outcome::Absent(uid.to_string())),
        Err(err) => {
            tracing::warn!(%err, name, resource = r.group_resource(),
                "garbage collector: looking up an owner failed");
            Some(Outcome::Failed(uid.to_string()))
        }
    }
}

async fn delete(
    client: &kube::Client,
    r: &Resource,
    t: &Target,
    policy: Policy,
) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        propagation_policy: Some(match policy {
            Policy::Background => PropagationPolicy::Background,
            Policy::Foreground => PropagationPolicy::Foreground,
            Policy::Orphan => PropagationPolicy::Orphan,
        }),
        preconditions: Some(Preconditions {
            uid: Some(t.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    tracing::debug!(
        name = t.name,
        resource = r.group_resource(),
        ?policy,
        "garbage collector: deleting a dependent"
    );
    api(client, r, t.namespace.as_deref())
        .delete(&t.name, &dp)
        .await
        .map(|_| ())
}

async fn patch(
    client: &kube::Client,
    r: &Resource,
    t: &Target,
    body: serde_json::Value,
) -> Result<(), kube::Error> {
    api(client, r, t.namespace.as_deref())
        .patch_metadata(&t.name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
}
