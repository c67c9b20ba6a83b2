//! Shared informers against the real API server: one store per type, late subscribers replayed,
//! deletes delivered.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};

const WAIT: Duration = Duration::from_secs(10);

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm
}

/// Records the names a handler saw added and deleted.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<(BTreeSet<String>, BTreeSet<String>)>>);

impl Seen {
    fn handler(&self) -> impl Fn((Option<&ConfigMap>, Option<&ConfigMap>)) + Send + 'static {
        let seen = self.clone();
        move |(old, new)| {
            let mut s = seen.0.lock().unwrap();
            match (old, new) {
                (None, Some(cm)) => s.0.insert(cm.metadata.name.clone().unwrap_or_default()),
                (Some(cm), None) => s.1.insert(cm.metadata.name.clone().unwrap_or_default()),
                _ => false,
            };
        }
    }

    fn added(&self, name: &str) -> bool {
        self.0.lock().unwrap().0.contains(name)
    }

    fn deleted(&self, name: &str) -> bool {
        self.0.lock().unwrap().1.contains(name)
    }
}

#[tokio::test]
async fn one_store_per_type_and_late_subscribers_are_replayed() {
    let server = TestServer::start().await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &config_map("before"))
        .await
        .unwrap();
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    let early = Seen::default();
    let store = informers.subscribe(early.handler());
    store.wait_until_ready().await.unwrap();
    eventually(
        "the early subscriber sees the existing object",
        WAIT,
        || async { early.added("before").then_some(()) },
    )
    .await;

    // A subscriber after the first list gets the cached objects, from the same store.
    let late = Seen::default();
    let late_store = informers.subscribe(late.handler());
    assert!(late.added("before"), "replayed at once");
    assert_eq!(store.state().len(), late_store.state().len());
    let ours = |s: &kube::runtime::reflector::Store<ConfigMap>| {
        s.get(&kube::runtime::reflector::ObjectRef::new("before").within("default"))
    };
    assert!(
        Arc::ptr_eq(&ours(&store).unwrap(), &ours(&late_store).unwrap()),
        "one copy of each object"
    );

    cms.create(&PostParams::default(), &config_map("after"))
        .await
        .unwrap();
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    for seen in [&early, &late] {
        eventually("both see the add and the delete", WAIT, || async {
            (seen.added("after") && seen.deleted("before")).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn change_streams_fire_on_changes() {
    use futures::StreamExt;
    let server = TestServer::start().await;
    let client = server.client();
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    let (store, mut changes) = informers.changes::<ConfigMap>();
    store.wait_until_ready().await.unwrap();
    // Drain what the initial list produced.
    while tokio::time::timeout(Duration::from_millis(200), changes.next())
        .await
        .is_ok()
    {}
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &config_map("x"))
        .await
        .unwrap();
    let fired = tokio::time::timeout(WAIT, changes.next()).await;
    assert!(matches!(fired, Ok(Some(()))), "a change is reported");
}

#[tokio::test]
async fn the_controller_index_follows_adoption_release_and_deletion() {
    use k8rs_controller_runtime::orphan_key;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::{Patch, PatchParams};

    let server = TestServer::start().await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    let owner_uid = owner.metadata.uid.clone().unwrap();
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &config_map(name))
            .await
            .unwrap();
    }
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    // Registered before the first list: built when it completes.
    let index = informers.by_controller::<ConfigMap>();
    informers
        .store::<ConfigMap>()
        .wait_until_ready()
        .await
        .unwrap();
    let names = |key: &str| {
        let mut names: Vec<String> = index
            .get(key)
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        names.sort();
        names
    };
    eventually("the orphans are indexed", WAIT, || async {
        (names(&orphan_key("default")) == ["a", "b", "owner"]).then_some(())
    })
    .await;

    let controller = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner_uid.clone(),
        controller: Some(true),
        ..OwnerReference::default()
    };
    let adopt = serde_json::json!({"metadata": {"ownerReferences": [controller]}});
    cms.patch("a", &PatchParams::default(), &Patch::Merge(&adopt))
        .await
        .unwrap();
    eventually(
        "an adopted object moves to its owner's key",
        WAIT,
        || async {
            (names(&owner_uid) == ["a"] && names(&orphan_key("default")) == ["b", "owner"])
                .then_some(())
        },
    )
    .await;
    // A second handle on the same index sees the same contents.
    let again = informers.by_controller::<ConfigMap>();
    assert_eq!(again.claimable("default", &owner_uid).len(), 3);

    let release = serde_json::json!({"metadata": {"ownerReferences": null}});
    cms.patch("a", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    eventually(
        "released and deleted objects move and leave",
        WAIT,
        || async {
            (names(&owner_uid).is_empty() && names(&orphan_key("default")) == ["a", "owner"])
                .then_some(())
        },
    )
    .await;
}
