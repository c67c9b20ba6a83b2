//! The CSR approver and signer against the real API server: a node's bootstrap client
//! certificate request is approved and issued by the cluster CA, as `kubectl get csr` shows;
//! an approved request breaking its signer's rules fails.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers::certificates::{self, CertificatesConfig};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn csr_pem(cn: &str, orgs: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn request(name: &str, signer: &str, pem: &str) -> CertificateSigningRequest {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"signerName": signer, "request": encoded, "expirationSeconds": 3600,
                 "usages": ["digital signature", "key encipherment", "client auth"]},
    }))
    .expect("csr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_requests_are_approved_and_issued() {
    let server = TestServer::start().await;
    let pki = k8rs_auth::pki::ClusterPki::load_or_create(
        &server.kubeconfig.parent().expect("dir").join("tls"),
        &k8rs_auth::pki::PkiOptions {
            service_ip: "10.43.0.1".parse().expect("ip"),
            extra_sans: vec![],
            host_ips: Some(vec![]),
        },
    )
    .expect("the server's PKI");
    tokio::spawn(certificates::run(
        SharedInformers::new(server.client(), server.shutdown_token()),
        CertificatesConfig::new(Arc::new(pki)),
        server.shutdown_token(),
    ));
    let bootstrap = server.client_as("system:bootstrap:abcdef", &["system:bootstrappers"]);
    let pem = csr_pem("system:node:worker-1", &["system:nodes"]);
    Api::<CertificateSigningRequest>::all(bootstrap)
        .create(
            &PostParams::default(),
            &request(
                "node-csr-1",
                "kubernetes.io/kube-apiserver-client-kubelet",
                &pem,
            ),
        )
        .await
        .expect("bootstrap identity creates its CSR");
    let csrs: Api<CertificateSigningRequest> = Api::all(server.client());
    let issued = eventually("certificate issued", WAIT, || async {
        let c = csrs.get("node-csr-1").await.ok()?;
        let cert = c.status?.certificate?;
        (!cert.0.is_empty()).then_some(cert.0)
    })
    .await;
    let (_, block) = x509_parser::pem::parse_x509_pem(&issued).expect("PEM certificate");
    let cert = block.parse_x509().expect("certificate");
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok()),
        Some("system:node:worker-1")
    );
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["get", "csr", "node-csr-1"])
        .output()
        .expect("kubectl");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("Approved,Issued"), "{table}");

    // Approved by an admin but not a node's subject: the kubelet signer refuses it.
    let bad = csr_pem("alice", &["devs"]);
    csrs.create(
        &PostParams::default(),
        &request("bad", "kubernetes.io/kube-apiserver-client-kubelet", &bad),
    )
    .await
    .expect("create");
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["certificate", "approve", "bad"])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("bad request failed", WAIT, || async {
        let c = csrs.get("bad").await.ok()?;
        let conds = c.status?.conditions?;
        conds
            .iter()
            .find(|c| c.type_ == "Failed")
            .filter(|c| c.reason.as_deref() == Some("SignerValidationFailure"))
            .map(|_| ())
    })
    .await;
}
