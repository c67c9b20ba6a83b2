//! The garbage collector against the real API server, driven by `kubectl delete --cascade=...`:
//! background deletion removes dependents once the owner is gone, foreground deletion removes
//! the blocking dependents before the owner, orphaning strips the references and keeps the
//! dependents, and a dependent with another live owner survives its first owner. Resources the
//! collector knows only from discovery (custom resources included) are collected both ways.

use std::process::Command;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers::garbagecollector::{self, GarbageCollectorConfig};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::{GroupVersionKind, PartialObjectMeta};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn create(api: &Api<ConfigMap>, name: &str, owners: &[(&ConfigMap, bool)]) -> ConfigMap {
    let refs: Vec<serde_json::Value> = owners
        .iter()
        .map(|(o, block)| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
                   "uid": o.metadata.uid, "blockOwnerDeletion": block})
        })
        .collect();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": refs, "finalizers": if name.ends_with("-held") {
            json!(["example.com/hold"]) } else { json!([]) }},
        "data": {"k": "v"},
    }))
    .expect("a configmap");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create")
}

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    eventually(&format!("{name} deleted"), WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

fn owner_names(cm: &ConfigMap) -> Vec<String> {
    let refs = cm.metadata.owner_references.iter().flatten();
    refs.map(|r| r.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascades_through_the_collector() {
    let server = TestServer::start().await;
    let client = server.client();
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(garbagecollector::run(
        informers,
        GarbageCollectorConfig::default(),
        server.shutdown_token(),
    ));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Background: the dependents go after the owner.
    let owner = create(&cms, "bg-owner", &[]).await;
    create(&cms, "bg-a", &[(&owner, false)]).await;
    create(&cms, "bg-b", &[(&owner, true)]).await;
    kubectl(
        &server,
        &["delete", "configmap", "bg-owner", "--cascade=background"],
    );
    gone(&cms, "bg-a").await;
    gone(&cms, "bg-b").await;

    // A dependent with another live owner survives, losing the dangling reference.
    let first = create(&cms, "two-first", &[]).await;
    let second = create(&cms, "two-second", &[]).await;
    create(&cms, "two-dep", &[(&first, false), (&second, false)]).await;
    kubectl(&server, &["delete", "configmap", "two-first"]);
    eventually("two-dep keeps only its live owner", WAIT, || async {
        let dep = cms.get("two-dep").await.ok()?;
        (owner_names(&dep) == ["two-second"]).then_some(())
    })
    .await;

    // Foreground: the owner stays (with its finalizer) while a blocking dependent stays.
    let owner = create(&cms, "fg-owner", &[]).await;
    create(&cms, "fg-dep-held", &[(&owner, true)]).await;
    kubectl(
        &server,
        &[
            "delete",
            "configmap",
            "fg-owner",
            "--cascade=foreground",
            "--wait=false",
        ],
    );
    eventually("fg-dep-held marked for deletion", WAIT, || async {
        let dep = cms.get("fg-dep-held").await.ok()?;
        dep.metadata.deletion_timestamp.is_some().then_some(())
    })
    .await;
    let held = cms
        .get("fg-owner")
        .await
        .expect("owner waits for its dependent");
    let fins = held.metadata.finalizers.unwrap_or_default();
    assert_eq!(fins, ["foregroundDeletion"]);
    kubectl(
        &server,
        &[
            "patch",
            "configmap",
            "fg-dep-held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    gone(&cms, "fg-dep-held").await;
    gone(&cms, "fg-owner").await;

    // Orphan: the dependents stay without the reference.
    let owner = create(&cms, "or-owner", &[]).await;
    create(&cms, "or-dep", &[(&owner, true)]).await;
    kubectl(
        &server,
        &["delete", "configmap", "or-owner", "--cascade=orphan"],
    );
    gone(&cms, "or-owner").await;
    let dep = cms.get("or-dep").await.expect("orphan survives");
    assert!(owner_names(&dep).is_empty());
}

/// An ownerReference to `owner` (its `apiVersion`, `kind`, name and UID).
fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> serde_json::Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid})
}

/// Creates an object of `ar` in `default` from `body` with the given ownerReferences.
async fn create_dynamic(
    client: &kube::Client,
    ar: &ApiResource,
    name: &str,
    body: serde_json::Value,
    owners: Vec<serde_json::Value>,
) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", ar);
    let mut obj = body;
    obj["apiVersion"] = json!(ar.api_version);
    obj["kind"] = json!(ar.kind);
    obj["metadata"] = json!({"name": name, "ownerReferences": owners});
    let obj: DynamicObject = serde_json::from_value(obj).expect("an object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create")
}

async fn gone_dynamic(client: &kube::Client, ar: &ApiResource, name: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", ar);
    eventually(&format!("{} {name} deleted", ar.kind), WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Objects of a kind owned by, or owning, ConfigMaps are collected both ways; `ar` is a
/// resource the collector only knows from discovery.
async fn collects_both_ways(client: &kube::Client, ar: &ApiResource, body: serde_json::Value) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let uid = |meta: &kube::api::ObjectMeta| meta.uid.clone().unwrap_or_default();

    // Owned by a ConfigMap.
    let owner = create(&cms, "cm-owner", &[]).await;
    let by_cm = owner_ref("v1", "ConfigMap", "cm-owner", &uid(&owner.metadata));
    create_dynamic(client, ar, "dep-of-cm", body.clone(), vec![by_cm]).await;
    cms.delete("cm-owner", &Default::default())
        .await
        .expect("delete the owner");
    gone_dynamic(client, ar, "dep-of-cm").await;

    // Owning a ConfigMap.
    let owner = create_dynamic(client, ar, "owner-of-cm", body, vec![]).await;
    let by_obj = owner_ref(
        &ar.api_version,
        &ar.kind,
        "owner-of-cm",
        &uid(&owner.metadata),
    );
    let dep: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cm-dep", "ownerReferences": [by_obj]}}))
    .expect("a configmap");
    cms.create(&PostParams::default(), &dep)
        .await
        .expect("create the dependent");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", ar);
    api.delete("owner-of-cm", &Default::default())
        .await
        .expect("delete the owner");
    gone(&cms, "cm-dep").await;
}

/// The API server lists `ar` as PartialObjectMetadata when asked (what the collector's watches
/// ask for).
async fn serves_partial_metadata(client: &kube::Client, ar: &ApiResource) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), ar);
    let list = api.list(&Default::default()).await.expect("metadata list");
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_resources_are_collected() {
    let server = TestServer::start().await;
    let client = server.client();
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(garbagecollector::run(
        informers,
        GarbageCollectorConfig::default(),
        server.shutdown_token(),
    ));
    // Roles were never in the collector's old fixed list: it knows them from discovery.
    let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role");
    let roles = ApiResource::from_gvk_with_plural(&gvk, "roles");
    serves_partial_metadata(&client, &roles).await;
    collects_both_ways(&client, &roles, json!({"rules": []})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_collected() {
    let server = TestServer::start().await;
    let client = server.client();
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(garbagecollector::run(
        informers,
        GarbageCollectorConfig::default(),
        server.shutdown_token(),
    ));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    }))
    .expect("a CRD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create the CRD");
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let widgets = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &widgets);
    eventually("widgets served", WAIT, || async {
        api.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
    serves_partial_metadata(&client, &widgets).await;
    collects_both_ways(&client, &widgets, json!({"spec": {"size": 1}})).await;
}
