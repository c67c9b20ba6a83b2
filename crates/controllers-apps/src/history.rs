//! ControllerRevision history shared by the DaemonSet and StatefulSet controllers, as
//! upstream's `pkg/controller/history`: revisions named `PARENT-HASH`, hashed over their data
//! and collision count, numbered in order, and found again when a template returns (which is
//! how `kubectl rollout undo` works for these kinds).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Resource;

use crate::pods;

/// The label carrying a revision's hash on the revision and on pods.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// Upstream's `HashControllerRevision`: fnv32a over the data then the collision count.
pub fn hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Upstream's `ControllerRevisionName`: `PREFIX-HASH`, the prefix cut to 223 characters.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let prefix: String = prefix.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// A new revision of `parent` holding `data`, labelled with the template's labels and the hash.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    parent: &K,
    data: serde_json::Value,
    template_labels: &BTreeMap<String, String>,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let h = hash(&data, collision_count);
    let mut labels = template_labels.clone();
    labels.insert(REVISION_HASH_LABEL.into(), h.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                &parent.meta().name.clone().unwrap_or_default(),
                &h,
            )),
            namespace: parent.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![pods::owner_ref(parent)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Whether two revisions hold the same data.
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// The revisions among `existing` equal to `wanted`, highest revision last.
pub fn find_equal<'a>(
    existing: &'a [ControllerRevision],
    wanted: &ControllerRevision,
) -> Vec<&'a ControllerRevision> {
    let mut found: Vec<_> = existing.iter().filter(|r| equal(r, wanted)).collect();
    found.sort_by_key(|r| r.revision);
    found
}

/// The number the next revision gets: one more than the highest.
pub fn next_revision(existing: &[ControllerRevision]) -> i64 {
    existing.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// What to do so that a revision equal to `wanted` is the newest (upstream's
/// `getStatefulSetRevisions` / `constructHistory`).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The newest revision already holds the data.
    Keep(ControllerRevision),
    /// An older revision holds it (a rollback): renumber it to this revision.
    Renumber(ControllerRevision, i64),
    /// No revision holds it: create `wanted`.
    Create(ControllerRevision),
}

/// Decides the [`Step`] for `wanted` (numbered [`next_revision`]) among `existing`.
pub fn step(existing: &[ControllerRevision], wanted: ControllerRevision) -> Step {
    let next = next_revision(existing);
    match find_equal(existing, &wanted).last() {
        Some(found) if found.revision + 1 == next => Step::Keep((*found).clone()),
        Some(found) => Step::Renumber((*found).clone(), next),
        None => Step::Create(wanted),
    }
}

/// Sorts revisions oldest (lowest number) first, ties by name.
pub fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The revisions to delete to keep at most `limit` besides those `in_use` (names), oldest
/// first, as upstream's `truncateHistory`.
pub fn to_truncate(revisions: &[ControllerRevision], in_use: &[&str], limit: i32) -> Vec<String> {
    let mut idle: Vec<ControllerRevision> = revisions
        .iter()
        .filter(|r| !in_use.contains(&r.metadata.name.as_deref().unwrap_or_default()))
        .cloned()
        .collect();
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    if idle.len() <= limit {
        return Vec::new();
    }
    sort(&mut idle);
    let excess = idle.len() - limit;
    idle.into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rev(name: &str, n: i64, data: serde_json::Value) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision: n,
        }
    }

    #[test]
    fn revisions_are_named_by_a_stable_hash_and_truncated_oldest_first() {
        let data = json!({"spec": {"template": {"$patch": "replace"}}});
        assert_eq!(hash(&data, None), hash(&data.clone(), None));
        assert_ne!(hash(&data, None), hash(&data, Some(1)));
        assert_eq!(revision_name("ds", "abc"), "ds-abc");
        let revs = vec![
            rev("a", 1, json!(1)),
            rev("b", 2, json!(2)),
            rev("c", 3, json!(3)),
            rev("d", 4, json!(1)),
        ];
        assert_eq!(next_revision(&revs), 5);
        let found: Vec<_> = find_equal(&revs, &rev("x", 0, json!(1)))
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(found, [1, 4]);
        assert_eq!(to_truncate(&revs, &["d"], 1), ["a", "b"]);
        assert_eq!(
            step(&revs, rev("w", 5, json!(1))),
            Step::Keep(revs[3].clone())
        );
        assert_eq!(
            step(&revs, rev("w", 5, json!(2))),
            Step::Renumber(revs[1].clone(), 5),
            "a rollback renumbers the old revision"
        );
        assert_eq!(
            step(&revs, rev("w", 5, json!(9))),
            Step::Create(rev("w", 5, json!(9)))
        );
        assert!(to_truncate(&revs, &["d"], 10).is_empty());
    }
}
