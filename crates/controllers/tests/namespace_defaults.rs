//! The service-account and root-CA publisher controllers against the real API server: every
//! namespace gets a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap, both restored
//! when deleted or changed.

use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers::rootcacert::{self, RootCaCertConfig};
use k8rs_controllers::serviceaccount;
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_its_account_and_ca_bundle() {
    let server = TestServer::start().await;
    let client = server.client();
    let ca = server.pki.ca_cert_pem().to_string();
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(serviceaccount::run(
        informers.clone(),
        server.shutdown_token(),
    ));
    tokio::spawn(rootcacert::run(
        informers,
        RootCaCertConfig { ca_pem: ca.clone() },
        server.shutdown_token(),
    ));
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team-a"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let bundle = |cm: ConfigMap| cm.data.and_then(|d| d.get("ca.crt").cloned());

    let first = eventually("default account", WAIT, || async {
        sas.get_opt("default").await.ok()?
    })
    .await;
    let pem = eventually("CA bundle", WAIT, || async {
        cms.get_opt("kube-root-ca.crt").await.ok()?.and_then(bundle)
    })
    .await;
    assert_eq!(pem, ca);
    // kube-system, created by the server, has them too.
    let system: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    eventually("kube-system bundle", WAIT, || async {
        system.get_opt("kube-root-ca.crt").await.ok()?
    })
    .await;

    sas.delete("default", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("default account recreated", WAIT, || async {
        let sa = sas.get_opt("default").await.ok()??;
        (sa.metadata.uid != first.metadata.uid).then_some(())
    })
    .await;

    let tamper = json!({"data": {"ca.crt": "not a CA"}});
    cms.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(&tamper),
    )
    .await
    .expect("tamper");
    eventually("bundle repaired", WAIT, || async {
        let pem = cms
            .get_opt("kube-root-ca.crt")
            .await
            .ok()?
            .and_then(bundle)?;
        (pem == ca).then_some(())
    })
    .await;
    cms.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("bundle recreated", WAIT, || async {
        cms.get_opt("kube-root-ca.crt").await.ok()?.and_then(bundle)
    })
    .await;
}
