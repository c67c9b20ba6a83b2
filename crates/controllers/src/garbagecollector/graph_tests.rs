use super::*;
use crate::garbagecollector::resources::Resource;

/// The resources of the tests' graphs.
fn kinds() -> Vec<Resource> {
    vec![
        Resource::new("", "v1", "Pod", "pods", true),
        Resource::new("", "v1", "ConfigMap", "configmaps", true),
        Resource::new("", "v1", "Secret", "secrets", true),
        Resource::new("apps", "v1", "ReplicaSet", "replicasets", true),
        Resource::new("apps", "v1", "Deployment", "deployments", true),
    ]
}

/// Builds graph items: `obj("ReplicaSet", "rs")` is uid `rs`, resourceVersion `1`.
struct B(Item);

fn obj(kind: &str, name: &str) -> B {
    let res = kinds().iter().position(|r| r.kind == kind).unwrap_or(0);
    B(Item {
        res,
        namespace: Some("default".into()),
        name: name.into(),
        uid: name.into(),
        resource_version: "1".into(),
        owners: Vec::new(),
        deleting: false,
        finalizers: Vec::new(),
    })
}

impl B {
    fn owned_by(mut self, kind: &str, name: &str, block: bool) -> B {
        let api_version = kinds()
            .iter()
            .find(|r| r.kind == kind)
            .map_or("v1".into(), |r| r.api_version());
        self.0.owners.push(OwnerReference {
            api_version,
            kind: kind.into(),
            name: name.into(),
            uid: name.into(),
            block_owner_deletion: Some(block),
            controller: Some(true),
        });
        self
    }
    fn deleting(mut self, finalizer: &str) -> B {
        self.0.deleting = true;
        self.0.finalizers.push(finalizer.into());
        self
    }
}

fn graph(items: Vec<B>) -> Graph {
    let mut g = Graph::new(Resources::new(kinds()));
    for b in items {
        g.upsert(b.0);
    }
    g
}

fn plan_all(g: &Graph) -> Vec<Action> {
    let mut uids: Vec<String> = g.items.keys().cloned().collect();
    uids.sort();
    g.plan(&uids)
}

fn target(g: &Graph, uid: &str) -> Target {
    g.get(uid).map(Item::target).expect("item")
}

#[test]
fn unseen_owner_is_looked_up_before_anything_is_deleted() {
    let g = graph(vec![obj("Pod", "p").owned_by("ReplicaSet", "rs", true)]);
    let res = g.resources().lookup("apps/v1", "ReplicaSet").expect("rs");
    assert_eq!(
        plan_all(&g),
        vec![Action::Verify {
            res,
            namespace: Some("default".into()),
            name: "rs".into(),
            uid: "rs".into()
        }]
    );
}

#[test]
fn background_dependents_of_an_absent_owner_are_deleted() {
    let mut g = graph(vec![
        obj("ReplicaSet", "rs"),
        obj("Pod", "p").owned_by("ReplicaSet", "rs", true),
    ]);
    assert_eq!(plan_all(&g), vec![]);
    let dirty = g.remove("rs");
    assert_eq!(
        g.plan(&dirty),
        vec![Action::Delete {
            target: target(&g, "p"),
            policy: Policy::Background
        }]
    );
}

#[test]
fn owner_uid_mismatch_counts_as_absent() {
    let mut g = graph(vec![obj("Pod", "p").owned_by(
        "ReplicaSet",
        "old-uid",
        false,
    )]);
    // The lookup found a ReplicaSet of that name with another UID.
    let dirty = g.confirm_absent("old-uid");
    assert_eq!(
        g.plan(&dirty),
        vec![Action::Delete {
            target: target(&g, "p"),
            policy: Policy::Background
        }]
    );
}

#[test]
fn a_dependent_with_another_live_owner_loses_only_the_dangling_reference() {
    let mut g = graph(vec![
        obj("ConfigMap", "a"),
        obj("ConfigMap", "b"),
        obj("Secret", "s")
            .owned_by("ConfigMap", "a", false)
            .owned_by("ConfigMap", "b", false),
    ]);
    let dirty = g.remove("a");
    let keep = g.get("s").expect("s").owners[1].clone();
    assert_eq!(
        g.plan(&dirty),
        vec![Action::SetOwners {
            target: target(&g, "s"),
            owners: vec![keep]
        }]
    );
}

#[test]
fn foreground_owner_waits_for_blocking_dependents_which_are_deleted() {
    let g = graph(vec![
        obj("ReplicaSet", "rs").deleting(FOREGROUND),
        obj("Pod", "p").owned_by("ReplicaSet", "rs", true),
    ]);
    assert_eq!(
        plan_all(&g),
        vec![Action::Delete {
            target: target(&g, "p"),
            policy: Policy::Background
        }]
    );
}

#[test]
fn foreground_owner_loses_its_finalizer_once_no_dependent_blocks() {
    let mut g = graph(vec![
        obj("ReplicaSet", "rs").deleting(FOREGROUND),
        obj("Pod", "p").owned_by("ReplicaSet", "rs", true),
    ]);
    let dirty = g.remove("p");
    assert_eq!(
        g.plan(&dirty),
        vec![Action::SetFinalizers {
            target: target(&g, "rs"),
            finalizers: vec![]
        }]
    );
    // A non-blocking dependent does not hold the owner.
    let g = graph(vec![
        obj("ReplicaSet", "rs").deleting(FOREGROUND),
        obj("Pod", "p")
            .owned_by("ReplicaSet", "rs", false)
            .deleting("x"),
    ]);
    assert_eq!(
        plan_all(&g),
        vec![Action::SetFinalizers {
            target: target(&g, "rs"),
            finalizers: vec![]
        }]
    );
}

#[test]
fn a_waiting_owners_dependent_with_dependents_is_deleted_in_the_foreground() {
    let g = graph(vec![
        obj("Deployment", "d").deleting(FOREGROUND),
        obj("ReplicaSet", "rs").owned_by("Deployment", "d", false),
        obj("Pod", "p").owned_by("ReplicaSet", "rs", true),
    ]);
    let actions = g.plan(&vec!["rs".to_string()]);
    assert_eq!(
        actions,
        vec![Action::Delete {
            target: target(&g, "rs"),
            policy: Policy::Foreground
        }]
    );
}

#[test]
fn cycles_do_not_block_a_foreground_deletion() {
    let g = graph(vec![
        obj("ConfigMap", "a")
            .owned_by("ConfigMap", "b", true)
            .deleting(FOREGROUND),
        obj("ConfigMap", "b").owned_by("ConfigMap", "a", true),
    ]);
    let b = g.get("b").expect("b");
    let mut unblocked = b.owners[0].clone();
    unblocked.block_owner_deletion = Some(false);
    // b unblocks a first, then is deleted in the foreground.
    assert_eq!(
        g.plan(&vec!["b".to_string()]),
        vec![Action::SetOwners {
            target: target(&g, "b"),
            owners: vec![unblocked.clone()]
        }]
    );
    let mut b2 = b.clone();
    b2.owners = vec![unblocked];
    let mut g = g;
    g.upsert(b2);
    assert_eq!(
        plan_all(&g),
        vec![
            Action::SetFinalizers {
                target: target(&g, "a"),
                finalizers: vec![]
            },
            Action::Delete {
                target: target(&g, "b"),
                policy: Policy::Foreground
            }
        ]
    );
}

#[test]
fn orphaning_removes_references_then_the_finalizer() {
    let mut g = graph(vec![
        obj("ReplicaSet", "rs").deleting(ORPHAN),
        obj("Pod", "p").owned_by("ReplicaSet", "rs", true),
    ]);
    assert_eq!(
        plan_all(&g),
        vec![Action::SetOwners {
            target: target(&g, "p"),
            owners: vec![]
        }]
    );
    let mut p = g.get("p").cloned().expect("p");
    p.owners.clear();
    let dirty = g.upsert(p);
    assert_eq!(
        g.plan(&dirty),
        vec![Action::SetFinalizers {
            target: target(&g, "rs"),
            finalizers: vec![]
        }]
    );
}

#[test]
fn objects_being_deleted_without_finalizers_of_ours_are_left_alone() {
    let g = graph(vec![
        obj("Pod", "p")
            .owned_by("ReplicaSet", "rs", true)
            .deleting("example.com/x"),
    ]);
    assert_eq!(plan_all(&g), vec![]);
}

#[test]
fn owners_of_unwatched_kinds_are_kept() {
    let mut b = obj("ConfigMap", "c");
    b.0.owners.push(OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "w".into(),
        uid: "w".into(),
        ..Default::default()
    });
    assert_eq!(plan_all(&graph(vec![b])), vec![]);
}

#[test]
fn owners_of_a_kind_discovered_later_are_looked_up() {
    let mut b = obj("ConfigMap", "c");
    b.0.owners.push(OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "w".into(),
        uid: "w".into(),
        ..Default::default()
    });
    let mut g = graph(vec![b]);
    let mut all = kinds();
    all.push(Resource::new(
        "example.com",
        "v1",
        "Widget",
        "widgets",
        true,
    ));
    let changes = g.resources_mut().update(all);
    assert_eq!(changes.added, vec![5]);
    assert_eq!(
        g.plan(&g.owned()),
        vec![Action::Verify {
            res: 5,
            namespace: Some("default".into()),
            name: "w".into(),
            uid: "w".into()
        }]
    );
}

#[test]
fn objects_of_a_resource_no_longer_served_are_forgotten_not_absent() {
    let mut g = graph(vec![
        obj("ReplicaSet", "rs"),
        obj("Pod", "p").owned_by("ReplicaSet", "rs", true),
    ]);
    let res = g.get("rs").map(|i| i.res).expect("rs");
    g.resources_mut().update(
        kinds()
            .into_iter()
            .filter(|r| r.kind != "ReplicaSet")
            .collect(),
    );
    let dirty = g.forget_resource(res);
    assert!(g.get("rs").is_none());
    // The pod's owner is of a kind no longer known: it is kept.
    assert_eq!(g.plan(&dirty), vec![]);
}
