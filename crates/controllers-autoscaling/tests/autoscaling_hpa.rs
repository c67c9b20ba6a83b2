//! The resource metrics path and the HPA end to end, on the real API server in-process: hollow
//! nodes serve `/metrics/resource` from their pods' usage annotations, the API server's scraper
//! reads them into `metrics.k8s.io`, `kubectl top` shows them, and an HPA made with
//! `kubectl autoscale` scales a Deployment through its scale subresource.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use k8rs_auth::pki::CertKind;
use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers_autoscaling::HpaConfig;
use k8rs_hollow::{HollowConfig, MetricsEndpoint, MetricsTls};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const NODE: &str = "metrics-0";

async fn cluster() -> TestServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "k8rs_controllers_autoscaling=info".into()),
        )
        .with_test_writer()
        .try_init();
    // The test server scrapes node agents every second (its `metrics_scraper` setting).
    let server = TestServer::start().await;
    let shutdown = server.shutdown_token();
    // The API server scrapes only endpoints whose serving certificate the cluster CA signed.
    let (csr, key_pem) =
        k8rs_hollow::serving::serving_request(NODE, Ipv4Addr::LOCALHOST).expect("a CSR");
    let cert_pem = server
        .pki
        .sign_csr(csr.as_bytes(), CertKind::Serving, Duration::from_secs(3600))
        .expect("a serving certificate");
    let hollow = HollowConfig {
        count: 1,
        name_prefix: "metrics-".into(),
        metrics: Some(MetricsEndpoint::default()),
        metrics_tls: MetricsTls::Provided { cert_pem, key_pem },
        ..HollowConfig::default()
    };
    tokio::spawn(k8rs_hollow::run(server.client(), hollow, shutdown));
    server
}

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return format!("ERROR {}", String::from_utf8_lossy(&out.stderr));
    }
    text
}

/// A hostNetwork pod of app=web on the hollow node, requesting 100m and reporting `cpu`.
async fn web_pod(client: &kube::Client, name: &str, cpu: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"},
                     "annotations": {"hollow.k8rs.io/cpu-usage": cpu,
                                     "hollow.k8rs.io/memory-usage": "64Mi"}},
        "spec": {"nodeName": NODE, "hostNetwork": true,
                 "containers": [{"name": "app", "image": "nginx:1.27",
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    }))
    .expect("a pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

/// The number before `unit` in the row of `name` in a kubectl table, column `col`.
fn column(table: &str, name: &str, col: usize, unit: &str) -> Option<i64> {
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))?;
    row.split_whitespace()
        .nth(col)?
        .strip_suffix(unit)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_shows_hollow_usage() {
    let server = cluster().await;
    web_pod(&server.client(), "web-1", "200m").await;
    let pods = eventually("kubectl top pods", WAIT, || async {
        let out = kubectl(&server, &["top", "pods", "-n", "default"]);
        let cpu = column(&out, "web-1", 1, "m")?;
        ((195..=205).contains(&cpu) && column(&out, "web-1", 2, "Mi") == Some(64)).then_some(out)
    })
    .await;
    assert!(pods.contains("CPU(cores)"), "{pods}");
    // The node: its pods plus a 50m / 128Mi base.
    eventually("kubectl top nodes", WAIT, || async {
        let out = kubectl(&server, &["top", "nodes"]);
        let cpu = column(&out, NODE, 1, "m")?;
        ((245..=255).contains(&cpu) && column(&out, NODE, 3, "Mi") == Some(192)).then_some(())
    })
    .await;
    // The raw API has metrics-server's shapes.
    let raw = kubectl(
        &server,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(v["kind"], "PodMetrics");
    assert_eq!(v["containers"][0]["name"], "app");
    assert_eq!(v["containers"][0]["usage"]["memory"], "64Mi");
    assert!(
        v["window"].as_str().is_some_and(|w| w.ends_with('s')),
        "{v}"
    );
    let missing = kubectl(
        &server,
        &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"],
    );
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
}

/// The usage of the one pod: 175% of its request against a 50% target asks for 3.5 -> 4
/// replicas. Not 200%: with one pod at 4.0x the target, any sample a hair above 200m (the
/// scraped rate jitters by a few millicores, more under load) makes the sync after the scale-up
/// ask for ceil(4.02 x 1) = 5, and the Deployment (whose other replicas nobody creates here)
/// went 1 -> 4 -> 5 within one sync period, so a poll for "4" could miss it altogether. At 175%
/// every sample from 151m to 200m gives 4, before and after the scale-up.
const WEB_CPU: &str = "175m";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_deployment_up_on_cpu() {
    let server = cluster().await;
    let client = server.client();
    let config = HpaConfig {
        sync_period: Duration::from_secs(1),
        retry_after: Duration::from_secs(1),
        ..HpaConfig::default()
    };
    let informers = SharedInformers::new(client.clone(), server.shutdown_token());
    tokio::spawn(k8rs_controllers_autoscaling::run(
        informers,
        config,
        server.shutdown_token(),
    ));
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                                       "resources": {"requests": {"cpu": "100m"}}}]}}},
    }))
    .expect("a deployment");
    let deployments = Api::<Deployment>::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    // No Deployment controller runs here: the test plays it for the one replica.
    web_pod(&client, "web-1", WEB_CPU).await;
    let out = kubectl(
        &server,
        &[
            "autoscale",
            "deploy",
            "web",
            "--cpu-percent=50",
            "--min=1",
            "--max=5",
        ],
    );
    assert!(out.contains("autoscaled"), "{out}");
    // 175% of the request against a 50% target: 4 replicas (within the doubling limit of 4),
    // and 4 again on every later sync.
    eventually("the HPA to scale the deployment to 4", WAIT, || async {
        let d = deployments.get("web").await.ok()?;
        (d.spec?.replicas == Some(4)).then_some(())
    })
    .await;
    let hpa = eventually("kubectl get hpa to show the target", WAIT, || async {
        let out = kubectl(&server, &["get", "hpa", "web"]);
        let at = out.find("cpu: ")?;
        let value: i64 = out[at + 5..].split('%').next()?.parse().ok()?;
        ((170..=180).contains(&value) && out.contains("%/50%")).then_some(out)
    })
    .await;
    assert!(hpa.contains("web"), "{hpa}");
    let events = kubectl(&server, &["get", "events", "-n", "default"]);
    assert!(
        events.contains(
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
}
