//! End to end: volumes on a real containerd for an in-process API server: configMap and secret
//! (and their updates reaching the running pod within seconds, through watches), secrets and
//! tokens on tmpfs mounts that pod teardown removes, an emptyDir shared by two containers, and
//! the service-account token of `kube-api-access-*` authenticating against the API server.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use common::IMAGE;
use k8rs_kubelet::cri::Cri;
use k8rs_testing::eventually;

const WAIT: Duration = Duration::from_secs(30);
/// How soon a changed ConfigMap or Secret must be in the pod (the periodic re-sync is 60 s).
const PROMPT: Duration = Duration::from_secs(5);

/// The mount points at or under `dir` with their filesystem types, from mountinfo.
fn mounts_under(dir: &std::path::Path) -> Vec<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| {
            let (fields, rest) = l.split_once(" - ")?;
            let point = fields.split(' ').nth(4)?;
            let fs = rest.split(' ').next()?;
            point
                .starts_with(&dir)
                .then(|| (point.to_string(), fs.to_string()))
        })
        .collect()
}

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

fn container_id(p: &Pod, name: &str) -> Option<String> {
    let cs = p.status.as_ref()?.container_statuses.as_ref()?;
    let c = cs.iter().find(|c| c.name == name)?;
    c.state.as_ref()?.running.as_ref()?;
    Some(c.container_id.as_ref()?.split("://").nth(1)?.to_string())
}

/// `cat path` in the container (stdout, or `None` when it fails).
async fn cat(cri: &dyn Cri, id: &str, path: &str) -> Option<String> {
    let cmd = vec!["cat".to_string(), path.to_string()];
    let out = cri.exec_sync(id, cmd, 5).await.ok()?;
    (out.exit_code == 0).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn objects(client: &kube::Client) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &pp,
        &from(json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hello"}}))?,
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &pp,
            &from(json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}}))?,
        )
        .await?;
    // The pod's service account may read pods, so its token can prove itself.
    let roles: Api<Role> = Api::namespaced(client.clone(), "default");
    roles
        .create(
            &pp,
            &from(json!({"metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}))?,
        )
        .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "default");
    bindings
        .create(
            &pp,
            &from(json!({"metadata": {"name": "pod-reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}))?,
        )
        .await?;
    Ok(())
}

fn volume_pod(node: &str) -> anyhow::Result<Pod> {
    let c = |name: &str, script: &str, mounts: serde_json::Value| {
        json!({"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
               "command": ["sh", "-c", script], "volumeMounts": mounts})
    };
    from(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vols", "namespace": "default"},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [
                c("writer", "echo shared > /cache/x && exec sleep 3600", json!([
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "creds", "mountPath": "/etc/creds"}])),
                c("reader", "exec sleep 3600", json!([{"name": "cache", "mountPath": "/cache"}]))
            ],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}}
            ]
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_reach_containers_and_configmap_updates_reach_running_pods() -> anyhow::Result<()> {
    let node = common::Node::start(14).await?;
    let client = node.server.client();
    let cri = node.cri();
    objects(&client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &volume_pod(&node.config.node_name)?)
        .await?;
    let (writer, reader) = eventually("both containers running", WAIT, || async {
        let p = pods.get_opt("vols").await.ok().flatten()?;
        Some((container_id(&p, "writer")?, container_id(&p, "reader")?))
    })
    .await;

    // An emptyDir shared by two containers; configMap and secret files.
    let shared = eventually("the shared emptyDir", WAIT, || async {
        cat(cri.as_ref(), &reader, "/cache/x").await
    })
    .await;
    assert_eq!(shared.trim(), "shared");
    assert_eq!(
        cat(cri.as_ref(), &writer, "/etc/cfg/greeting")
            .await
            .as_deref(),
        Some("hello")
    );
    assert_eq!(
        cat(cri.as_ref(), &writer, "/etc/creds/password")
            .await
            .as_deref(),
        Some("hunter2")
    );

    // The service-account token (from the admission-added kube-api-access volume)
    // authenticates as the pod's service account.
    let sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let token = cat(cri.as_ref(), &writer, &format!("{sa_dir}/token"))
        .await
        .unwrap_or_default();
    assert!(token.len() > 20, "token: {token:?}");
    let ns = cat(cri.as_ref(), &writer, &format!("{sa_dir}/namespace")).await;
    assert_eq!(ns.as_deref(), Some("default"));
    let ca = cat(cri.as_ref(), &writer, &format!("{sa_dir}/ca.crt")).await;
    assert_eq!(ca.as_deref(), Some(node.server.pki.ca_cert_pem()));
    let mut config = kube::Config::new(node.server.url.parse()?);
    config.accept_invalid_certs = true;
    config.auth_info.token = Some(token.into());
    let as_pod = kube::Client::try_from(config)?;
    let seen: Api<Pod> = Api::namespaced(as_pod, "default");
    let me = seen.get("vols").await?;
    assert_eq!(me.metadata.name.as_deref(), Some("vols"));

    // Secrets and tokens live on tmpfs; configMaps on disk.
    let uid = pods.get("vols").await?.metadata.uid.unwrap_or_default();
    let pod_dir = node.config.data_dir.join("pods").join(&uid);
    let vols = pod_dir.join("volumes");
    let mounts = mounts_under(&vols);
    let fs_of = |rel: &str| {
        let path = vols.join(rel).to_string_lossy().into_owned();
        mounts
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, f)| f.clone())
    };
    assert_eq!(
        fs_of("kubernetes.io~secret/creds").as_deref(),
        Some("tmpfs"),
        "{mounts:?}"
    );
    let projected = mounts
        .iter()
        .any(|(p, f)| p.contains("kubernetes.io~projected/kube-api-access-") && f == "tmpfs");
    assert!(projected, "{mounts:?}");
    assert_eq!(fs_of("kubernetes.io~configmap/cfg"), None, "{mounts:?}");

    // A changed ConfigMap or Secret reaches the running pod promptly (watched).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let patch = json!({"data": {"greeting": "bye"}});
    cms.patch("cfg", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    eventually("the updated ConfigMap in the pod", PROMPT, || async {
        let v = cat(cri.as_ref(), &writer, "/etc/cfg/greeting").await?;
        (v == "bye").then_some(())
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let patch = json!({"stringData": {"password": "swordfish"}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    eventually("the updated Secret in the pod", PROMPT, || async {
        let v = cat(cri.as_ref(), &writer, "/etc/creds/password").await?;
        (v == "swordfish").then_some(())
    })
    .await;

    // Teardown leaves no mount behind.
    pods.delete("vols", &DeleteParams::default()).await?;
    eventually("the pod gone", WAIT, || async {
        matches!(pods.get_opt("vols").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(mounts_under(&pod_dir), vec![]);
    assert!(!pod_dir.exists());
    Ok(())
}
