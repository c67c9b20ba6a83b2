//! Which pods a Job controls, as upstream's `PodControllerRefManager.ClaimPods`: pods it owns
//! that its selector still matches are kept, those it owns that the selector no longer matches
//! are released, and orphans (no controller, not being deleted) that it matches are adopted.
//! The decision is pure; the Job module patches the pods and rechecks, with a fresh read, that
//! the Job is not being deleted before it adopts anything.

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::pods::TRACKING_FINALIZER;

/// The pods of one namespace split for a Job.
#[derive(Debug, Default, PartialEq)]
pub struct Claims<'a> {
    /// Controlled by the Job and still matched by its selector.
    pub owned: Vec<&'a Pod>,
    /// Orphans the selector matches: the Job takes control of them.
    pub adopt: Vec<&'a Pod>,
    /// Controlled by the Job but no longer matched: the Job lets go of them.
    pub release: Vec<&'a Pod>,
}

/// The Job's selector; `None` (no selector) matches nothing, as upstream's nil selector.
pub fn selector(job: &Job) -> Result<Selector, String> {
    let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
    Selector::from_optional_label_selector(selector)
        .map_err(|err| format!("couldn't convert Job selector: {err}"))
}

/// Whether `selector` matches the pod's labels.
pub fn matches(selector: &Selector, pod: &Pod) -> bool {
    selector.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()))
}

/// The controller reference of an object, if any.
pub fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Upstream's `ClaimPods` decision over the pods of the Job's namespace. A Job being deleted
/// neither adopts nor releases.
pub fn claim<'a>(job: &Job, selector: &Selector, pods: &[&'a Pod]) -> Claims<'a> {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let namespace = job.metadata.namespace.as_deref();
    let deleting = job.metadata.deletion_timestamp.is_some();
    let mut claims = Claims::default();
    for &pod in pods {
        if pod.metadata.namespace.as_deref() != namespace {
            continue;
        }
        match controller_of(pod) {
            Some(owner) if owner.uid != uid => {}
            Some(_) if matches(selector, pod) => claims.owned.push(pod),
            Some(_) if !deleting => claims.release.push(pod),
            Some(_) => {}
            None if deleting || !matches(selector, pod) => {}
            None if pod.metadata.deletion_timestamp.is_some() => {}
            None => claims.adopt.push(pod),
        }
    }
    claims
}

/// The strategic merge patch that makes `job` the pod's controller and adds the tracking
/// finalizer (upstream's `ownerRefControllerPatch`); the pod's UID makes it fail on a
/// recreated pod of the same name.
pub fn adopt_patch(job: &Job, pod: &Pod) -> Value {
    json!({"metadata": {
        "uid": pod.metadata.uid,
        "ownerReferences": [{
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job.metadata.name,
            "uid": job.metadata.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }],
        "finalizers": [TRACKING_FINALIZER],
    }})
}

/// The strategic merge patch that removes the Job's reference and the tracking finalizer
/// (upstream's `GenerateDeleteOwnerRefStrategicMergeBytes`).
pub fn release_patch(job: &Job, pod: &Pod) -> Value {
    json!({"metadata": {
        "uid": pod.metadata.uid,
        "ownerReferences": [{"$patch": "delete", "uid": job.metadata.uid}],
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
    }})
}

/// The pod as it is once adopted, for the rest of the sync that adopted it.
pub fn adopted(job: &Job, pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    let meta = &mut pod.metadata;
    meta.owner_references
        .get_or_insert_with(Vec::new)
        .push(OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: job.metadata.name.clone().unwrap_or_default(),
            uid: job.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{JobBuilder, PodBuilder};

    fn job() -> Job {
        JobBuilder::new("j")
            .spec("selector", json!({"matchLabels": {"app": "j"}}))
            .build()
    }

    fn pod(name: &str, labels: Value, owner: Option<&str>) -> Pod {
        let mut pod = PodBuilder::of(&job(), name).untracked().build();
        pod.metadata.labels = serde_json::from_value(labels).expect("labels");
        pod.metadata.owner_references = owner.map(|uid| {
            vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: "other".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]
        });
        pod
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    }

    #[test]
    fn adopts_matching_orphans_and_releases_unmatched_pods() {
        let job = job();
        let selector = selector(&job).expect("selector");
        let app = json!({"app": "j"});
        let owned = pod("owned", app.clone(), Some("uid-j"));
        let strayed = pod("strayed", json!({"app": "other"}), Some("uid-j"));
        let orphan = pod("orphan", app.clone(), None);
        let unmatched_orphan = pod("unmatched", json!({"app": "other"}), None);
        let others = pod("others", app.clone(), Some("uid-other"));
        let mut deleting = pod("deleting", app.clone(), None);
        deleting.metadata.deletion_timestamp = PodBuilder::of(&job, "x")
            .deleting()
            .build()
            .metadata
            .deletion_timestamp;
        let mut elsewhere = pod("elsewhere", app, None);
        elsewhere.metadata.namespace = Some("other".into());
        let all = [
            &owned,
            &strayed,
            &orphan,
            &unmatched_orphan,
            &others,
            &deleting,
            &elsewhere,
        ];
        let claims = claim(&job, &selector, &all);
        assert_eq!(names(&claims.owned), ["owned"]);
        assert_eq!(names(&claims.adopt), ["orphan"]);
        assert_eq!(names(&claims.release), ["strayed"]);
    }

    #[test]
    fn a_job_being_deleted_neither_adopts_nor_releases() {
        let mut job = job();
        job.metadata.deletion_timestamp = PodBuilder::of(&job, "x")
            .deleting()
            .build()
            .metadata
            .deletion_timestamp;
        let selector = selector(&job).expect("selector");
        let orphan = pod("orphan", json!({"app": "j"}), None);
        let strayed = pod("strayed", json!({"app": "other"}), Some("uid-j"));
        let claims = claim(&job, &selector, &[&orphan, &strayed]);
        assert_eq!(claims, Claims::default());
    }

    #[test]
    fn patches_set_and_remove_the_controller_reference() {
        let job = job();
        let orphan = pod("orphan", json!({"app": "j"}), None);
        let adopt = adopt_patch(&job, &orphan);
        assert_eq!(adopt["metadata"]["uid"], "uid-orphan");
        assert_eq!(adopt["metadata"]["ownerReferences"][0]["uid"], "uid-j");
        assert_eq!(adopt["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(adopt["metadata"]["finalizers"][0], TRACKING_FINALIZER);
        let release = release_patch(&job, &orphan);
        assert_eq!(
            release["metadata"]["ownerReferences"],
            json!([{"$patch": "delete", "uid": "uid-j"}])
        );
        let taken = adopted(&job, &orphan);
        assert!(crate::job::pods::owned_by(&taken, "uid-j"));
        assert_eq!(
            taken.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.into()])
        );
    }
}
