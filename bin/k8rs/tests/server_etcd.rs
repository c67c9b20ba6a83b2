//! The same API server on etcd (`--datastore-endpoint`): kubectl round trips, watches through
//! a restart, and a clear error when etcd is unreachable.

mod common;

use std::process::Command;

use common::{Server, free_port};
use k8rs_store_etcd::testing::EtcdProcess;

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME}\ndata: {a: \"1\"}\n";

#[test]
fn kubectl_round_trips_on_etcd_and_survive_restart() {
    let etcd = EtcdProcess::start();
    let endpoint = format!("--datastore-endpoint={}", etcd.endpoint());
    let mut s = Server::start(&[&endpoint]);
    for i in 0..5 {
        s.kubectl_stdin(
            &["create", "-f", "-"],
            &CM.replace("NAME", &format!("c{i}")),
        );
    }
    s.kubectl(&["label", "cm", "c1", "x=y"]);
    assert_eq!(
        s.kubectl(&["get", "cm", "-l", "x=y", "-o", "name"]).trim(),
        "configmap/c1"
    );
    s.kubectl(&["delete", "cm", "c2"]);
    s.kill9_and_restart();
    let names = s.kubectl(&["get", "cm", "-o", "name"]);
    for want in ["c0", "c1", "c3", "c4"] {
        assert!(names.contains(&format!("configmap/{want}")), "{names}");
    }
    assert!(!names.contains("configmap/c2\n"), "{names}");
    assert!(
        s.kubectl(&["get", "svc", "kubernetes", "-o", "name"])
            .contains("service/kubernetes")
    );
}

#[test]
fn unreachable_etcd_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_k8rs"))
        .args(["server", "--disable-agent", "--bind-address=127.0.0.1"])
        .arg(format!("--https-port={}", free_port()))
        .arg(format!("--data-dir={}", dir.path().display()))
        .arg(format!(
            "--datastore-endpoint=http://127.0.0.1:{}",
            free_port()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("etcd"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_k8rs"))
        .args([
            "server",
            "--datastore-endpoint=ftp://x",
            "--service-cidr=10.43.0.1/16",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host bits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn content_is_admitted_right_after_its_namespace_is_created() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{Api, PostParams};
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .unwrap();
    let endpoint = format!("--datastore-endpoint={}", etcd.endpoint());
    let s = tokio::task::spawn_blocking(move || Server::start(&[&endpoint]))
        .await
        .unwrap();
    let client = s.client().await;
    for round in 0..5 {
        let name = format!("fresh{round}");
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
        let cm: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}})).unwrap();
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("admitted into a namespace created a moment ago");
    }
}
