//! The API server driven by a real client library (kube-rs): list, watch and reflector, every
//! patch type, pagination, service-account tokens, and bad input answered with a `Status`.

mod common;

use std::time::Duration;

use common::Server;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "t"}},
        "data": {"v": value},
    }))
    .unwrap()
}

/// Sends a raw request and returns (status, body as JSON).
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    ctype: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ctype)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util_collect(resp).await;
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn http_body_util_collect(resp: http::Response<kube::client::Body>) -> Vec<u8> {
    use http_body_util::BodyExt;
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default()
}

#[tokio::test]
async fn list_watch_and_reflector() {
    let s = Server::start(&["--disable-controllers=root-ca-cert-publisher"]);
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store();
    let rf = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let rf_task = tokio::spawn(async move { rf.try_for_each(|_| async { Ok(()) }).await });
    let mut watch = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), "1"))
            .await
            .unwrap();
    }
    api.replace("c0", &PostParams::default(), &{
        let mut c = api.get("c0").await.unwrap();
        c.data.as_mut().unwrap().insert("v".into(), "2".into());
        c
    })
    .await
    .unwrap();
    api.delete("c1", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch event in time")
            .unwrap()
            .unwrap();
        seen.push(match ev {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap()),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "ADDED c0",
            "ADDED c1",
            "ADDED c2",
            "ADDED c3",
            "ADDED c4",
            "MODIFIED c0",
            "DELETED c1"
        ]
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reader.state().len() != 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector has {} objects",
            reader.state().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rf_task.abort();
    // Label selectors and pagination: one resourceVersion for all pages.
    let page1 = api
        .list(&ListParams::default().labels("app=t").limit(2))
        .await
        .unwrap();
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().expect("continue token");
    api.create(&PostParams::default(), &cm("c9", "1"))
        .await
        .unwrap();
    let page2 = api
        .list(
            &ListParams::default()
                .labels("app=t")
                .limit(10)
                .continue_token(&token),
        )
        .await
        .unwrap();
    let names: Vec<_> = page2
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["c3", "c4"],
        "later pages are the first page's snapshot"
    );
    assert_eq!(
        page2.metadata.resource_version,
        page1.metadata.resource_version
    );
    let none = api
        .list(&ListParams::default().labels("app notin (t)"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let by_field = api
        .list(&ListParams::default().fields("metadata.name=c2"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
}

#[tokio::test]
async fn patches_of_every_kind() {
    let s = Server::start(&[]);
    let client = s.client().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "a", "image": "img:1"}, {"name": "b", "image": "img:1"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    // Strategic: containers merge by name.
    let p =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "img:2"}]}}}});
    let got = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(p))
        .await
        .unwrap();
    let images: Vec<_> = got
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .iter()
        .map(|c| format!("{}={}", c.name, c.image.clone().unwrap()))
        .collect();
    assert_eq!(images, ["a=img:1", "b=img:2"]);
    // Merge: lists are replaced.
    let p =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:3"}]}}}});
    let got = api
        .patch("web", &PatchParams::default(), &Patch::Merge(p))
        .await
        .unwrap();
    assert_eq!(got.spec.unwrap().template.spec.unwrap().containers.len(), 1);
    // JSON patch, with a failing test op answered as 422 and nothing changed.
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/spec/replicas", "value": 5}]))
            .unwrap();
    let got = api
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap();
    assert_eq!(got.spec.unwrap().replicas, Some(5));
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 1}]))
            .unwrap();
    let err = api
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 422),
        "{err:?}"
    );
    // Status writes ignore spec; main writes ignore status.
    let p = json!({"status": {"replicas": 7}, "spec": {"replicas": 1}});
    let got = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(p))
        .await
        .unwrap();
    assert_eq!(
        (got.spec.unwrap().replicas, got.status.unwrap().replicas),
        (Some(5), Some(7))
    );
    // Scale subresource.
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    // Apply (server-side apply creates when missing).
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let applied = cms
        .patch("applied", &PatchParams::apply("test"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "b"}})))
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["a"], "b");
}

#[tokio::test]
async fn service_account_tokens_authenticate() {
    let s = Server::start(&[]);
    let client = s.client().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let body = serde_json::to_vec(
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
    )
    .unwrap();
    let (code, resp) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        "application/json",
        body,
    )
    .await;
    assert_eq!(code, 201, "{resp}");
    let token = resp["status"]["token"].as_str().expect("token").to_string();
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .args([
            "--user=",
            &format!("--token={token}"),
            "get",
            "ns",
            "default",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A token of a deleted account is refused.
    sas.delete("robot", &DeleteParams::default()).await.unwrap();
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .args([
            "--user=",
            &format!("--token={token}"),
            "get",
            "ns",
            "default",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn anonymous_requests_only_reach_health_and_version() {
    let s = Server::start(&[]);
    let port = s.port;
    let kubeconfig = s.kubeconfig();
    let ca = std::fs::read_to_string(s.data_dir().join("tls/server-ca.crt")).unwrap();
    let _ = kubeconfig;
    for (path, want) in [
        ("/healthz", "200"),
        ("/readyz", "200"),
        ("/livez", "200"),
        ("/version", "200"),
        ("/api", "401"),
        ("/api/v1/namespaces", "401"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca).unwrap();
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                ca_file.to_str().unwrap(),
                &format!("https://127.0.0.1:{port}{path}"),
            ])
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{path}");
    }
}

#[tokio::test]
async fn bad_input_gets_a_status_and_stores_nothing() {
    let s = Server::start(&[]);
    let client = s.client().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let cases: Vec<(&str, Vec<u8>, &str, u16)> = vec![
        (
            "malformed JSON",
            b"{\"apiVersion\": \"v1\", ".to_vec(),
            "application/json",
            400,
        ),
        (
            "malformed YAML",
            b"apiVersion: v1\nkind: [unclosed".to_vec(),
            "application/yaml",
            400,
        ),
        (
            "wrong apiVersion",
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
            "application/json",
            400,
        ),
        (
            "wrong kind",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(),
            "application/json",
            400,
        ),
        (
            "wrong type",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":[1,2]}"#
                .to_vec(),
            "application/json",
            400,
        ),
        (
            "not an object",
            b"[1,2,3]".to_vec(),
            "application/json",
            400,
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "application/json",
            400,
        ),
        (
            "huge body",
            {
                let mut v = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":""#.to_vec();
                v.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
                v.extend(br#""}}"#);
                v
            },
            "application/json",
            413,
        ),
        ("wrong content type", b"hello".to_vec(), "text/plain", 415),
    ];
    for (what, body, ctype, want) in cases {
        let (code, status) = raw(&client, "POST", path, ctype, body).await;
        assert_eq!(code, want, "{what}: {status}");
        assert_eq!(status["kind"], "Status", "{what}: {status}");
        assert_eq!(status["code"], want, "{what}: {status}");
    }
    let (code, status) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/widgets",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    let (code, status) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/none",
        "application/merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (404, Some("NotFound")),
        "{status}"
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stored = api.list(&ListParams::default()).await.unwrap();
    assert!(
        stored
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() == Some("kube-root-ca.crt"))
            || stored.items.is_empty()
    );
    // A patch that does not apply leaves the object as it was.
    api.create(&PostParams::default(), &cm("keep", "1"))
        .await
        .unwrap();
    let (code, _) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/keep",
        "application/json-patch+json",
        br#"[{"op":"remove","path":"/data/nothere"}]"#.to_vec(),
    )
    .await;
    assert_eq!(code, 422);
    let (code, _) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/keep",
        "application/strategic-merge-patch+json",
        b"{\"data\": ".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(api.get("keep").await.unwrap().data.unwrap()["v"], "1");
    // A stale resourceVersion conflicts.
    let mut old = api.get("keep").await.unwrap();
    api.patch(
        "keep",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    old.data.as_mut().unwrap().insert("v".into(), "3".into());
    let err = api
        .replace("keep", &PostParams::default(), &old)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409 && e.reason == "Conflict"),
        "{err:?}"
    );
}

#[tokio::test]
async fn compacted_continue_tokens_expire() {
    let s = Server::start(&["--etcd-compaction-interval=1s"]);
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), "1"))
            .await
            .unwrap();
    }
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = page.metadata.continue_.unwrap();
    for i in 0..3 {
        api.patch(
            &format!("c{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "x"}})),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let err = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 410 && e.reason == "Expired"),
        "{err:?}"
    );
    // A watch from a compacted revision gets 410 as an ERROR event.
    let req = http::Request::get(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2&timeoutSeconds=1",
    )
    .body(Vec::new())
    .unwrap();
    let text = s.client().await.request_text(req).await.unwrap();
    let event: Value = serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["object"]["code"].as_i64()),
        (Some("ERROR"), Some(410)),
        "{text}"
    );
}

/// Protobuf bodies and responses, checked with an encoder and decoder that are not ours: the
/// prost types of the Kubernetes protos (k8s-pb).
mod protobuf {
    use super::*;
    use k8s_pb::api::core::v1 as pb;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message;

    const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = b"k8s\0".to_vec();
        out.extend(unknown.encode_to_vec());
        out
    }

    fn open(body: &[u8]) -> Unknown {
        assert_eq!(&body[..4], b"k8s\0", "protobuf magic");
        Unknown::decode(&body[4..]).expect("an Unknown envelope")
    }

    async fn send(
        client: &kube::Client,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", PROTOBUF)
            .header("accept", format!("{PROTOBUF}, application/json"))
            .body(body)
            .unwrap();
        let resp = client
            .send(req.map(kube::client::Body::from))
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (code, ctype, http_body_util_collect(resp).await)
    }

    #[tokio::test]
    async fn protobuf_create_get_list_and_watch() {
        let s = Server::start(&["--disable-controllers=root-ca-cert-publisher"]);
        let client = s.client().await;
        let cm = pb::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: Some("pb".into()),
                ..Default::default()
            }),
            data: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        let (code, ctype, body) = send(
            &client,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            envelope("v1", "ConfigMap", cm.encode_to_vec()),
        )
        .await;
        assert_eq!(
            (code, ctype.as_str()),
            (201, PROTOBUF),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let created = pb::ConfigMap::decode(open(&body).raw()).unwrap();
        assert_eq!(created.data["a"], "b");
        assert!(created.metadata.as_ref().unwrap().uid.is_some());
        let (code, _, body) = send(
            &client,
            "GET",
            "/api/v1/namespaces/default/configmaps/pb",
            vec![],
        )
        .await;
        assert_eq!(code, 200);
        let env = open(&body);
        assert_eq!(env.type_meta.as_ref().unwrap().kind(), "ConfigMap");
        let got = pb::ConfigMap::decode(env.raw()).unwrap();
        assert_eq!(got.metadata.unwrap().name(), "pb");
        let (code, _, body) = send(
            &client,
            "GET",
            "/api/v1/namespaces/default/configmaps",
            vec![],
        )
        .await;
        assert_eq!(code, 200);
        let list = pb::ConfigMapList::decode(open(&body).raw()).unwrap();
        assert!(
            list.items
                .iter()
                .any(|c| c.metadata.as_ref().unwrap().name() == "pb")
        );
        // A protobuf watch: length-prefixed WatchEvent frames.
        let (code, ctype, body) = send(
            &client,
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&timeoutSeconds=1",
            vec![],
        )
        .await;
        assert_eq!(
            (code, ctype.as_str()),
            (200, "application/vnd.kubernetes.protobuf;stream=watch")
        );
        let len = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        let event = meta::WatchEvent::decode(&body[4..4 + len]).unwrap();
        assert_eq!(event.r#type(), "ADDED");
        let obj = pb::ConfigMap::decode(open(event.object.unwrap().raw()).raw()).unwrap();
        assert_eq!(obj.metadata.unwrap().name(), "pb");
        // Garbage is a 400 Status, not a crash.
        let (code, _, body) = send(
            &client,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b"k8s\0\xff\xff\xff".to_vec(),
        )
        .await;
        assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
        // The OpenAPI v2 document in gnostic's protobuf, as kubectl asks for it.
        let req = http::Request::get("/openapi/v2")
            .header(
                "accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )
            .body(Vec::new())
            .unwrap();
        let resp = client
            .send(req.map(kube::client::Body::from))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(http_body_util_collect(resp).await.len() > 100_000);
    }
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let s = Server::start(&["--disable-controllers=root-ca-cert-publisher"]);
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("s{i}"), "1"))
            .await
            .unwrap();
    }
    // kube-rs starts streaming lists at resourceVersion "0", which (as upstream) is served from
    // the watch cache with no freshness promise: a consistent list first makes the cache hold
    // the creates (under load it may otherwise lag them by a moment).
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
    // kube-rs' streaming-list watcher: sendInitialEvents with the initial-events-end bookmark.
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().streaming_lists();
    let mut stream = reflector(writer, watcher(api.clone(), config)).boxed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("streaming list in time")
            .unwrap()
            .unwrap();
        if matches!(ev, watcher::Event::InitDone) {
            break;
        }
    }
    assert_eq!(reader.state().len(), 3);
    let req = http::Request::get("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[3]["type"], "BOOKMARK");
    assert_eq!(
        lines[3]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn binding_and_eviction_subresources() {
    use k8s_openapi::api::core::v1::Pod;
    // The test binds by hand: no scheduler racing it.
    let s = Server::start(&["--disable-scheduler"]);
    let client = s.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "img"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let binding = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}})).unwrap();
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods/p/binding",
        "application/json",
        binding.clone(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    let scheduled = bound.status.unwrap().conditions.unwrap();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods/p/binding",
        "application/json",
        binding,
    )
    .await;
    assert_eq!(code, 409, "a bound pod cannot be bound again: {body}");
    // A PodDisruptionBudget that allows no disruption blocks the eviction with 429.
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), "default");
    let pdb = serde_json::from_value(json!({"metadata": {"name": "b"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let eviction = serde_json::to_vec(
        &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}),
    )
    .unwrap();
    // (kube-rs retries 429s with backoff, so this one request goes through curl.)
    let tls = s.data_dir().join("tls");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
        ])
        .arg("--cacert")
        .arg(tls.join("server-ca.crt"))
        .arg("--cert")
        .arg(tls.join("client-admin.crt"))
        .arg("--key")
        .arg(tls.join("client-admin.key"))
        .arg("--data-binary")
        .arg(String::from_utf8(eviction.clone()).unwrap())
        .arg(format!(
            "https://127.0.0.1:{}/api/v1/namespaces/default/pods/p/eviction",
            s.port
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (code, body["reason"].as_str()),
        ("429", Some("TooManyRequests")),
        "{body}"
    );
    pdbs.delete("b", &DeleteParams::default()).await.unwrap();
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        "application/json",
        eviction,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    // Bound to a node, the pod ends gracefully.
    let gone = pods.get("p").await.unwrap();
    assert!(gone.metadata.deletion_timestamp.is_some());
}
