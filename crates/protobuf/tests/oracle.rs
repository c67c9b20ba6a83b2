//! Byte-level checks against upstream's wire format: hand-derived bytes, and the prost structs
//! of k8s-pb (generated from upstream's .proto files) as an independent decoder and encoder.

mod common;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

/// The `raw` of a protobuf body, checked to carry `api_version`/`kind`.
fn raw_of(body: &[u8], api_version: &str, kind: &str) -> Vec<u8> {
    assert_eq!(&body[..4], b"k8s\0");
    let unknown = Unknown::decode(&body[4..]).expect("envelope decodes with prost");
    let tm = unknown.type_meta.unwrap_or_default();
    assert_eq!(tm.api_version.as_deref(), Some(api_version));
    assert_eq!(tm.kind.as_deref(), Some(kind));
    assert_eq!(unknown.content_encoding.as_deref(), Some(""));
    assert_eq!(unknown.content_type.as_deref(), Some(""));
    unknown.raw.unwrap_or_default()
}

/// A body as upstream's serializer writes it around `raw`.
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
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn tiny_config_map_bytes() {
    let obj = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "ns"},
        "data": {"k": "v"}
    });
    let body = common::codec().encode(&obj).expect("encodes");
    #[rustfmt::skip]
    let expected: Vec<u8> = [
        &b"k8s\0"[..],
        // 1: typeMeta {1: "v1", 2: "ConfigMap"}
        &[0x0a, 0x0f, 0x0a, 0x02], b"v1", &[0x12, 0x09], b"ConfigMap",
        // 2: raw = ConfigMap {1: metadata {1: "cfg", 3: "ns"}, 2: data entry {1: "k", 2: "v"}}
        &[0x12, 0x13],
        &[0x0a, 0x09, 0x0a, 0x03], b"cfg", &[0x1a, 0x02], b"ns",
        &[0x12, 0x06, 0x0a, 0x01], b"k", &[0x12, 0x01], b"v",
        // 3: contentEncoding "", 4: contentType ""
        &[0x1a, 0x00, 0x22, 0x00],
    ]
    .concat();
    assert_eq!(body, expected);

    let cm = core::ConfigMap::decode(raw_of(&body, "v1", "ConfigMap").as_slice())
        .expect("prost decodes");
    let md = cm.metadata.unwrap_or_default();
    assert_eq!(md.name.as_deref(), Some("cfg"));
    assert_eq!(md.namespace.as_deref(), Some("ns"));
    assert_eq!(cm.data.get("k").map(String::as_str), Some("v"));
}

#[test]
fn decodes_upstreams_bytes_of_a_tiny_config_map() {
    // What client-go's generated marshaller writes for the same ConfigMap: every non-pointer
    // ObjectMeta field, empty ones included (generation 0, creationTimestamp an empty message).
    #[rustfmt::skip]
    let body: Vec<u8> = [
        &b"k8s\0"[..],
        &[0x0a, 0x0f, 0x0a, 0x02], b"v1", &[0x12, 0x09], b"ConfigMap",
        &[0x12, 0x1f],
        &[0x0a, 0x15, 0x0a, 0x03], b"cfg", &[0x12, 0x00, 0x1a, 0x02], b"ns",
        &[0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00],
        &[0x12, 0x06, 0x0a, 0x01], b"k", &[0x12, 0x01], b"v",
        &[0x1a, 0x00, 0x22, 0x00],
    ]
    .concat();
    let cm = core::ConfigMap::decode(raw_of(&body, "v1", "ConfigMap").as_slice())
        .expect("prost decodes");
    assert_eq!(cm.metadata.and_then(|m| m.generation), Some(0));
    assert_eq!(
        common::codec().decode(&body),
        Ok(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "ns"},
            "data": {"k": "v"}
        }))
    );
}

#[test]
fn prost_reads_what_we_write() {
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": "2024-05-01T12:00:00Z", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{
                "name": "web", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "500m"}},
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}}
            }]}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}
        }
    });
    let body = common::codec().encode(&obj).expect("encodes");
    let d = apps::Deployment::decode(raw_of(&body, "apps/v1", "Deployment").as_slice())
        .expect("prost decodes");
    let md = d.metadata.unwrap_or_default();
    assert_eq!(
        md.creation_timestamp.and_then(|t| t.seconds),
        Some(1_714_564_800)
    );
    let spec = d.spec.unwrap_or_default();
    assert_eq!(spec.replicas, Some(0));
    let ru = spec
        .strategy
        .unwrap_or_default()
        .rolling_update
        .unwrap_or_default();
    assert_eq!(
        ru.max_surge,
        Some(IntOrString {
            r#type: Some(0),
            int_val: Some(1),
            str_val: Some(String::new())
        })
    );
    assert_eq!(
        ru.max_unavailable.and_then(|m| m.str_val).as_deref(),
        Some("25%")
    );
    let c = &spec
        .template
        .unwrap_or_default()
        .spec
        .unwrap_or_default()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx"));
    assert_eq!(c.ports[0].container_port, Some(80));
    let limits = &c.resources.clone().unwrap_or_default().limits;
    assert_eq!(
        limits.get("cpu").and_then(|q| q.string.clone()).as_deref(),
        Some("500m")
    );
    let probe = c.readiness_probe.clone().unwrap_or_default();
    let get = probe
        .handler
        .unwrap_or_default()
        .http_get
        .unwrap_or_default();
    assert_eq!(get.port.and_then(|p| p.str_val).as_deref(), Some("http"));
}

/// What kubectl (client-go's generated marshallers) sends for `kubectl create deployment`: every
/// non-pointer field written, empty or not.
fn upstream_style_deployment() -> apps::Deployment {
    let s = |v: &str| Some(v.to_string());
    let empty_meta = meta::ObjectMeta {
        name: s(""),
        generate_name: s(""),
        namespace: s(""),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    };
    let container = core::Container {
        name: s("nginx"),
        image: s("nginx"),
        working_dir: s(""),
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: s(""),
        termination_message_policy: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s(""),
            host_ip: s(""),
        }],
        ..Default::default()
    };
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("nginx"),
            labels: [("app".to_string(), "nginx".to_string())].into(),
            ..empty_meta.clone()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(1),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "nginx".to_string())].into(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: [("app".to_string(), "nginx".to_string())].into(),
                    ..empty_meta.clone()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    dns_policy: s(""),
                    service_account_name: s(""),
                    service_account: s(""),
                    node_name: s(""),
                    host_network: Some(false),
                    host_pid: Some(false),
                    host_ipc: Some(false),
                    hostname: s(""),
                    subdomain: s(""),
                    scheduler_name: s(""),
                    priority_class_name: s(""),
                    security_context: Some(core::PodSecurityContext::default()),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s(""),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    }
}

#[test]
fn upstream_zero_fields_decode_as_unset() {
    let body = envelope(
        "apps/v1",
        "Deployment",
        upstream_style_deployment().encode_to_vec(),
    );
    let got = common::codec().decode(&body).expect("decodes");
    let expected = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{"name": "nginx", "image": "nginx", "resources": {},
                        "ports": [{"containerPort": 80}]}],
                    "securityContext": {}
                }
            },
            "strategy": {}
        },
        "status": {}
    });
    assert_eq!(got, expected);
}

#[test]
fn prost_written_objects_decode_like_their_json() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_714_564_800),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                resources: Some(core::ResourceRequirements {
                    requests: [(
                        "memory".to_string(),
                        Quantity {
                            string: Some("64Mi".into()),
                        },
                    )]
                    .into(),
                    ..Default::default()
                }),
                security_context: Some(core::SecurityContext {
                    run_as_user: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    };
    let body = envelope("v1", "Pod", pod.encode_to_vec());
    let got = common::codec().decode(&body).expect("decodes");
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": "2024-05-01T12:00:00Z"},
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"memory": "64Mi"}},
                    "securityContext": {"runAsUser": 0}}],
                "terminationGracePeriodSeconds": 0
            }
        })
    );
    // and back: prost reads our encoding of the same JSON into an equal struct
    let again = common::codec().encode(&got).expect("encodes");
    let back = core::Pod::decode(raw_of(&again, "v1", "Pod").as_slice()).expect("prost decodes");
    let mut expected = pod.clone();
    if let Some(t) = expected
        .metadata
        .as_mut()
        .and_then(|m| m.creation_timestamp.as_mut())
    {
        t.nanos = Some(0);
    }
    assert_eq!(back, expected);
}

#[test]
fn watch_frames_are_upstreams() {
    let codec = common::codec();
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}});
    let frame = codec.encode_watch_event("ADDED", &obj).expect("encodes");
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4);
    let event = meta::WatchEvent::decode(&frame[4..]).expect("a bare WatchEvent");
    assert_eq!(event.r#type.as_deref(), Some("ADDED"));
    let raw = event.object.and_then(|o| o.raw).unwrap_or_default();
    assert_eq!(raw, codec.encode(&obj).expect("encodes"));
    assert_eq!(
        codec.decode_watch_event(&frame),
        Ok(("ADDED".to_string(), obj))
    );
}

#[test]
fn list_items_may_be_nested_envelopes_or_json() {
    let codec = common::codec();
    let item = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
    let nested = codec.encode(&item).expect("encodes");
    let list = meta::List {
        metadata: Some(meta::ListMeta {
            resource_version: Some("7".into()),
            ..Default::default()
        }),
        items: vec![
            k8s_pb::apimachinery::pkg::runtime::RawExtension { raw: Some(nested) },
            k8s_pb::apimachinery::pkg::runtime::RawExtension {
                raw: Some(serde_json::to_vec(&item).unwrap_or_default()),
            },
        ],
    };
    let got = codec
        .decode(&envelope("v1", "List", list.encode_to_vec()))
        .expect("decodes");
    assert_eq!(got["items"], json!([item.clone(), item]));
    assert_eq!(got["metadata"], json!({"resourceVersion": "7"}));
}

#[test]
fn the_codec_is_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<k8rs_protobuf::Codec>();
}
