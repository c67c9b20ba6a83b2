//! Joining a real API server with a join token. The server's certificate controller is not
//! running here: the test plays the signer (approve, then sign with the cluster CA), so what is
//! tested is the agent's side of the protocol and the server's token authentication.

use std::time::Duration;

use k8rs_agent::{Error, JoinConfig, bootstrap};
use k8rs_auth::CertKind;
use k8rs_auth::join::JoinToken;
use k8rs_testing::TestServer;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, ListParams, Patch, PatchParams};

/// Signs every pending CSR from a bootstrapper, as the approver and signer would.
async fn sign_pending(server: &TestServer) -> usize {
    let csrs: Api<CertificateSigningRequest> = Api::all(server.client());
    let mut signed = 0;
    for mut csr in csrs.list(&ListParams::default()).await.expect("list").items {
        let status = csr.status.clone().unwrap_or_default();
        if status.certificate.is_some() {
            continue;
        }
        let groups = csr.spec.groups.clone().unwrap_or_default();
        assert!(
            groups.iter().any(|g| g == "system:bootstrappers"),
            "the requester is recorded as a bootstrapper: {groups:?}"
        );
        let name = csr.metadata.name.clone().expect("name");
        let approve = serde_json::json!({"status": {"conditions": [{
            "type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": "approved by the test",
        }]}});
        csrs.patch_approval(&name, &PatchParams::default(), &Patch::Merge(&approve))
            .await
            .expect("approve");
        let cert = server
            .pki
            .sign_csr(
                &csr.spec.request.0,
                CertKind::Client,
                Duration::from_secs(3600 * 48),
            )
            .expect("sign");
        csr.status = None;
        let signed_status = serde_json::json!({"status": {"certificate": base64(cert.as_bytes())}});
        csrs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&signed_status),
        )
        .await
        .expect("write certificate");
        signed += 1;
    }
    signed
}

/// The subject of the client certificate in the kubeconfig at `path`, via openssl-free parsing.
fn kubeconfig_cert(path: &std::path::Path) -> String {
    use base64::Engine;
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let data = kubeconfig.auth_infos[0]
        .auth_info
        .as_ref()
        .and_then(|a| a.client_certificate_data.clone())
        .expect("client certificate");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    cert.subject().to_string()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn config(server: &TestServer, token: JoinToken, dir: &std::path::Path) -> JoinConfig {
    JoinConfig {
        server: server.url.clone(),
        token,
        node_name: "agent-1".into(),
        dir: dir.to_path_buf(),
    }
}

#[tokio::test]
async fn joins_with_the_token_and_rejoins_without_a_new_request() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&server, server.join_token.clone(), dir.path());
    let joining = tokio::spawn({
        let cfg = cfg.clone();
        async move { bootstrap(&cfg).await }
    });
    let mut signed = 0;
    for _ in 0..100 {
        signed += sign_pending(&server).await;
        if signed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(signed, 1, "one CSR was made");
    let path = tokio::time::timeout(Duration::from_secs(20), joining)
        .await
        .expect("joined in time")
        .expect("task")
        .expect("joined");

    // The written kubeconfig authenticates as the node.
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    nodes
        .list(&ListParams::default())
        .await
        .expect("the node's certificate authenticates");
    let cert = kubeconfig_cert(&path);
    assert!(cert.contains("system:node:agent-1"), "{cert}");

    // Joining again with the same name reuses the certificate: no new CSR.
    tokio::time::timeout(Duration::from_secs(10), bootstrap(&cfg))
        .await
        .expect("in time")
        .expect("re-joined");
    let csrs: Api<CertificateSigningRequest> = Api::all(server.client());
    assert_eq!(
        csrs.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn a_token_for_another_ca_or_with_a_wrong_secret_is_refused() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut other_ca = server.join_token.clone();
    other_ca.ca_hash = "0".repeat(64);
    let err = bootstrap(&config(&server, other_ca, dir.path()))
        .await
        .expect_err("another CA");
    assert!(matches!(err, Error::CaMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match the join token"));

    let mut wrong_secret = server.join_token.clone();
    wrong_secret.secret = "not-the-secret".into();
    let err = bootstrap(&config(&server, wrong_secret, dir.path()))
        .await
        .expect_err("wrong secret");
    assert!(matches!(err, Error::TokenRefused), "{err}");
}
