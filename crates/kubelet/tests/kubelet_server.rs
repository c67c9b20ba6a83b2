//! End to end: the kubelet's HTTPS API on a real containerd serves container logs and resource
//! metrics to admins only, and `kubectl logs` reaches it through the API server's `pods/log`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;

use common::IMAGE;
use k8rs_testing::eventually;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `curl` to the kubelet with an optional client certificate: (HTTP code, body).
fn curl(port: u16, path: &str, cert: Option<(&Path, &Path)>) -> anyhow::Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn logs_pod(node: &str) -> anyhow::Result<Pod> {
    let c = |name: &str, script: &str| {
        json!({"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
               "command": ["sh", "-c", script]})
    };
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "logs", "namespace": "default", "labels": {"app": "logs"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
            c("lines", "echo one; echo two; echo three; exec sleep 3600"),
            c("ticker", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"),
            c("crasher", "echo crashed; exit 1"),
        ]}
    }))?)
}

fn restarts(p: &Pod, name: &str) -> i32 {
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses
        .into_iter()
        .flatten()
        .find(|c| c.name == name)
        .map_or(-1, |c| c.restart_count)
}

/// Starts `kubectl logs -f`, reads `n` lines (bounded), then kills it.
async fn follow_lines(kubeconfig: &Path, args: &[&str], n: usize) -> anyhow::Result<Vec<String>> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let lines = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        while got.len() < n {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => got.push(l),
                Err(_) => break,
            }
        }
        got
    })
    .await?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_api_serves_logs_and_metrics_to_admins_and_kubectl() -> anyhow::Result<()> {
    let port = free_port()?;
    // The kubelet's API starts once the CA is known (the test server's): restart with it, as
    // its node, with a signer: the API server only trusts an issued serving certificate.
    let mut node = common::Node::start_with(21, |c| {
        c.server_port = 0;
        c.serving_csr_timeout = Duration::from_secs(2);
    })
    .await?;
    node.stop_kubelet().await;
    node.config.server_port = port;
    node.config.client_ca_pem = Some(node.server.pki.ca_cert_pem().to_string());
    node.start_signer()?;
    node.start_kubelet_as_node();

    let client = node.server.client();
    let name = node.config.node_name.clone();
    let dir = tempfile::tempdir()?;
    let (admin_crt, admin_key) = (dir.path().join("admin.crt"), dir.path().join("admin.key"));
    std::fs::write(&admin_crt, &node.server.pki.admin_client().cert_pem)?;
    std::fs::write(&admin_key, &node.server.pki.admin_client().key_pem)?;
    let other = node.server.pki.issue_client_cert(
        "system:node:other",
        &["system:nodes".to_string()],
        Duration::from_secs(3600),
    )?;
    let (other_crt, other_key) = (dir.path().join("o.crt"), dir.path().join("o.key"));
    std::fs::write(&other_crt, &other.cert_pem)?;
    std::fs::write(&other_key, &other.key_pem)?;
    let admin = Some((admin_crt.as_path(), admin_key.as_path()));

    // The Node advertises the port.
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("node advertises the kubelet port", WAIT, || async {
        let n = nodes.get_opt(&name).await.ok().flatten()?;
        let ep = n.status?.daemon_endpoints?.kubelet_endpoint?;
        (ep.port == i32::from(port)).then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &logs_pod(&name)?)
        .await?;
    eventually("lines logged and crasher restarted", WAIT, || async {
        let p = pods.get_opt("logs").await.ok().flatten()?;
        let (code, body) = curl(port, "/containerLogs/default/logs/lines", admin).ok()?;
        (code == 200 && body == "one\ntwo\nthree\n" && restarts(&p, "crasher") >= 1).then_some(())
    })
    .await;

    // Authentication and authorization.
    assert_eq!(
        curl(port, "/containerLogs/default/logs/lines", None)?.0,
        401
    );
    let forbidden = curl(
        port,
        "/containerLogs/default/logs/lines",
        Some((other_crt.as_path(), other_key.as_path())),
    )?;
    assert_eq!(forbidden.0, 403, "{forbidden:?}");
    assert_eq!(curl(port, "/healthz", admin)?, (200, "ok".to_string()));
    let tail = curl(port, "/containerLogs/default/logs/lines?tailLines=1", admin)?;
    assert_eq!(tail, (200, "three\n".to_string()));

    // Resource metrics and the Summary API.
    let series =
        "container_cpu_usage_seconds_total{container=\"lines\",namespace=\"default\",pod=\"logs\"}";
    let metrics = eventually("resource metrics of the pod", WAIT, || async {
        let (code, body) = curl(port, "/metrics/resource", admin).ok()?;
        (code == 200 && body.contains(series)).then_some(body)
    })
    .await;
    assert!(
        metrics.contains("\nnode_cpu_usage_seconds_total "),
        "{metrics}"
    );
    assert!(metrics.contains("pod_memory_working_set_bytes{namespace=\"default\",pod=\"logs\"}"));
    let (code, summary) = curl(port, "/stats/summary", admin)?;
    assert_eq!(code, 200);
    let summary: serde_json::Value = serde_json::from_str(&summary)?;
    assert_eq!(summary["node"]["nodeName"], name.as_str());
    let pods_json = summary["pods"].as_array().cloned().unwrap_or_default();
    assert!(
        pods_json.iter().any(|p| p["podRef"]["name"] == "logs"),
        "{summary}"
    );

    // kubectl logs through the API server.
    let kc = node.server.kubeconfig.clone();
    // ... and the API server's metrics scraper reads the same endpoint: kubectl top works.
    eventually("kubectl top pod", WAIT, || async {
        let (ok, out, _) = kubectl(&kc, &["top", "pod", "logs", "--containers"]).ok()?;
        (ok && out.contains("lines")).then_some(())
    })
    .await;
    let (ok, out, err) = kubectl(&kc, &["top", "node"])?;
    assert!(ok && out.contains(&name), "{out}{err}");
    let (ok, out, err) = kubectl(&kc, &["logs", "logs", "-c", "lines"])?;
    assert!(ok, "{err}");
    assert_eq!(out, "one\ntwo\nthree\n");
    // kubectl picks the first container itself; the API server asks for one.
    let (ok, out, err) = kubectl(&kc, &["logs", "logs"])?;
    assert!(ok && out == "one\ntwo\nthree\n", "{err}");
    let raw = "/api/v1/namespaces/default/pods/logs/log";
    let (ok, _, err) = kubectl(&kc, &["get", "--raw", raw])?;
    assert!(!ok);
    assert!(
        err.contains(
            "a container name must be specified for pod logs, choose one of: [lines ticker crasher]"
        ),
        "{err}"
    );
    let (_, out, err) = kubectl(&kc, &["logs", "logs", "-c", "lines", "--tail=2"])?;
    assert_eq!(out, "two\nthree\n", "{err}");
    let (_, out, _) = kubectl(&kc, &["logs", "logs", "-c", "lines", "--timestamps"])?;
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("20") && first.ends_with(" one"), "{out}");
    let (_, out, _) = kubectl(&kc, &["logs", "logs", "-c", "lines", "--limit-bytes=6"])?;
    assert_eq!(out, "one\ntw");
    let (_, out, _) = kubectl(&kc, &["logs", "logs", "-c", "lines", "--since=1h"])?;
    assert_eq!(out, "one\ntwo\nthree\n");
    let (ok, out, err) = kubectl(&kc, &["logs", "logs", "-c", "crasher", "--previous"])?;
    assert!(ok, "{err}");
    assert_eq!(out, "crashed\n");
    let (ok, _, err) = kubectl(&kc, &["logs", "logs", "-c", "lines", "--previous"])?;
    assert!(
        !ok && err.contains("previous terminated container"),
        "{err}"
    );

    // Following streams: two ticks arrive one after the other.
    let ticks = follow_lines(&kc, &["logs", "-f", "logs", "-c", "ticker", "--tail=1"], 2).await?;
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    assert!(ticks.iter().all(|t| t.starts_with("tick ")), "{ticks:?}");
    assert_ne!(ticks[0], ticks[1]);

    // logs deploy/NAME picks a pod of the Deployment's selector.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "logs"}},
                 "template": {"metadata": {"labels": {"app": "logs"}},
                              "spec": {"containers": [{"name": "lines", "image": IMAGE}]}}}
    }))?;
    deploys.create(&PostParams::default(), &d).await?;
    let (ok, out, err) = kubectl(&kc, &["logs", "deploy/web", "-c", "lines"])?;
    assert!(ok, "{err}");
    assert_eq!(out, "one\ntwo\nthree\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_certificate_is_issued_through_a_csr() -> anyhow::Result<()> {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

    let port = free_port()?;
    let mut node = common::Node::start_with(22, |c| c.server_port = 0).await?;
    node.stop_kubelet().await;
    node.config.server_port = port;
    node.config.client_ca_pem = Some(node.server.pki.ca_cert_pem().to_string());
    node.start_signer()?;
    node.start_kubelet_as_node();
    let name = node.config.node_name.clone();

    let dir = tempfile::tempdir()?;
    let (ca, crt, key) = (
        dir.path().join("ca.crt"),
        dir.path().join("a.crt"),
        dir.path().join("a.key"),
    );
    std::fs::write(&ca, node.server.pki.ca_cert_pem())?;
    std::fs::write(&crt, &node.server.pki.admin_client().cert_pem)?;
    std::fs::write(&key, &node.server.pki.admin_client().key_pem)?;
    // Verified against the cluster CA (no -k): only an issued certificate passes.
    let verified = || {
        Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .arg("--cert")
            .arg(&crt)
            .arg("--key")
            .arg(&key)
            .arg(format!("https://127.0.0.1:{port}/healthz"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    eventually("the kubelet serves an issued certificate", WAIT, || async {
        (verified() == "ok").then_some(())
    })
    .await;
    let csrs: Api<CertificateSigningRequest> = Api::all(node.server.client());
    let list = csrs.list(&Default::default()).await?;
    assert!(
        list.items
            .iter()
            .any(|c| c.spec.signer_name == "kubernetes.io/kubelet-serving"
                && c.spec.username.as_deref() == Some(&format!("system:node:{name}"))),
    );
    assert!(
        node.config
            .data_dir
            .join("pki/kubelet-server-current.pem")
            .exists()
    );
    Ok(())
}
