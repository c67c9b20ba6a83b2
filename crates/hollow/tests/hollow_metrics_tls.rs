//! The API server trusts hollow nodes' metrics endpoints only with a serving certificate the
//! cluster issued, on the real API server in-process: one issued through a `kubelet-serving`
//! CSR (signed by the certificates controller) or given by the caller is scraped and proxied
//! to; one from another CA is skipped by the scraper and refused for `pods/log`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8rs_auth::pki::{CertKind, ClusterPki, PkiOptions};
use k8rs_hollow::{HollowConfig, MetricsEndpoint, MetricsTls};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, LogParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn pki_options() -> PkiOptions {
    PkiOptions {
        service_ip: "10.43.0.1".parse().expect("an IP"),
        extra_sans: vec![],
        host_ips: Some(vec![]),
    }
}

/// A serving certificate for `node` at 127.0.0.1 signed by `pki`'s CA.
fn issued_by(pki: &ClusterPki, node: &str) -> MetricsTls {
    let (csr, key_pem) =
        k8rs_hollow::serving::serving_request(node, Ipv4Addr::LOCALHOST).expect("a CSR");
    let cert_pem = pki
        .sign_csr(csr.as_bytes(), CertKind::Serving, Duration::from_secs(3600))
        .expect("signed");
    MetricsTls::Provided { cert_pem, key_pem }
}

fn hollow(server: &TestServer, prefix: &str, tls: MetricsTls) {
    let config = HollowConfig {
        count: 1,
        name_prefix: prefix.into(),
        metrics: Some(MetricsEndpoint::default()),
        metrics_tls: tls,
        ..HollowConfig::default()
    };
    tokio::spawn(k8rs_hollow::run(
        server.client(),
        config,
        server.shutdown_token(),
    ));
}

fn node_metrics(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "NodeMetrics".into(),
        plural: "nodes".into(),
    };
    Api::all_with(client.clone(), &ar)
}

async fn pod_on(client: &kube::Client, name: &str, node: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "hostNetwork": true,
                 "containers": [{"name": "app", "image": "nginx:1.27"}]},
    }))
    .expect("a pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_gets_its_certificate_through_a_kubelet_serving_csr() {
    let server = TestServer::start().await;
    let pki = ClusterPki::load_or_create(server.pki.dir(), &pki_options()).expect("the PKI");
    tokio::spawn(k8rs_controllers::certificates::run(
        k8rs_controller_runtime::SharedInformers::new(server.client(), server.shutdown_token()),
        k8rs_controllers::certificates::CertificatesConfig::new(Arc::new(pki)),
        server.shutdown_token(),
    ));
    hollow(&server, "csr-", MetricsTls::Csr);
    let client = server.client();
    let metrics = node_metrics(&client);
    eventually("csr-0 scraped", WAIT, || async {
        metrics.get_opt("csr-0").await.ok().flatten()
    })
    .await;
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let list = csrs.list(&Default::default()).await.expect("CSRs");
    let issued = list.items.iter().any(|c| {
        c.spec.signer_name == "kubernetes.io/kubelet-serving"
            && c.status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .is_some()
    });
    assert!(issued, "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_with_another_cas_certificate_are_refused() {
    let server = TestServer::start().await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = ClusterPki::load_or_create(other_dir.path(), &pki_options()).expect("a PKI");
    hollow(&server, "good-", issued_by(&server.pki, "good-0"));
    hollow(&server, "bad-", issued_by(&other, "bad-0"));
    let client = server.client();
    let metrics = node_metrics(&client);
    eventually("good-0 scraped", WAIT, || async {
        metrics.get_opt("good-0").await.ok().flatten()
    })
    .await;
    // The scraper reads every endpoint each second: the untrusted one stays out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(metrics.get_opt("bad-0").await, Ok(None)));

    // pods/log: a trusted endpoint is asked (a hollow node has no logs: 404); an untrusted
    // one is refused with an error Status saying why.
    pod_on(&client, "on-good", "good-0").await;
    pod_on(&client, "on-bad", "bad-0").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    match pods.logs("on-good", &LogParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404, "{s:?}"),
        other => panic!("the hollow node answers 404, got {other:?}"),
    }
    match pods.logs("on-bad", &LogParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 500, "{s:?}");
            assert!(
                s.message
                    .contains("the kubelet's serving certificate is not trusted"),
                "{s:?}"
            );
        }
        other => panic!("an untrusted kubelet is refused, got {other:?}"),
    }
}
