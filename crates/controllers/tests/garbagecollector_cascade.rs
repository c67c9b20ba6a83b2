//! The garbage collector against the real API server, driven by `kubectl delete --cascade=...`:
//! background deletion removes dependents once the owner is gone, foreground deletion removes
//! the blocking dependents before the owner, orphaning strips the references and keeps the
//! dependents, and a dependent with another live owner survives its first owner.

use std::process::Command;
use std::time::Duration;

use k8rs_controllers::garbagecollector::{self, GarbageCollectorConfig};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
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
    tokio::spawn(garbagecollector::run(
        client.clone(),
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
