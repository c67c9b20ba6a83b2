//! Tests of the pure parts: CRI configurations, environment expansion, helpers.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::json;

use super::env::{self, expand};
use super::spec::{self, ContainerParams, HostDns, ImageUser};
use super::{docker_auth, go_duration, log_tail};
use crate::KubeletConfig;
use k8s_cri::v1 as cri;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "labels": {"app": "web"}},
        "spec": spec
    }))
    .unwrap_or_default()
}

fn config() -> KubeletConfig {
    let mut c = KubeletConfig::new("n1", [10, 0, 0, 5].into(), "/x.sock", "/var/lib/k8rs");
    c.cluster_dns = vec![[10, 43, 0, 10].into()];
    c
}

#[test]
fn sandbox_config_carries_labels_logs_dns_ports_and_cgroup() {
    let p = pod(json!({"containers": [{"name": "c", "ports": [
        {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}],
        "resources": {"requests": {"cpu": "100m"}}}]}));
    let host = HostDns::parse("nameserver 1.1.1.1\nsearch example.com\n");
    let s = spec::sandbox_config(&p, 2, &config(), &host);
    let m = s.metadata.clone().unwrap_or_default();
    assert_eq!(
        (
            m.name.as_str(),
            m.namespace.as_str(),
            m.uid.as_str(),
            m.attempt
        ),
        ("web", "prod", "u1", 2)
    );
    assert_eq!(s.labels["io.kubernetes.pod.uid"], "u1");
    assert_eq!(s.labels["app"], "web");
    assert_eq!(s.log_directory, "/var/lib/k8rs/pod-logs/prod_web_u1");
    assert_eq!(s.hostname, "web");
    let dns = s.dns_config.clone().unwrap_or_default();
    assert_eq!(dns.servers, ["10.43.0.10"]);
    assert_eq!(
        dns.searches,
        [
            "prod.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "example.com"
        ]
    );
    assert_eq!(dns.options, ["ndots:5"]);
    assert_eq!(s.port_mappings.len(), 1);
    assert_eq!(
        (
            s.port_mappings[0].container_port,
            s.port_mappings[0].host_port
        ),
        (80, 8080)
    );
    let linux = s.linux.unwrap_or_default();
    assert_eq!(linux.cgroup_parent, "/kubepods/burstable/podu1");
    let ns = linux
        .security_context
        .unwrap_or_default()
        .namespace_options
        .unwrap_or_default();
    assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
}

#[test]
fn host_network_pods_use_the_node_namespace_and_host_dns() {
    let p = pod(json!({"hostNetwork": true, "containers": [{"name": "c"}]}));
    let host = HostDns::parse("nameserver 1.1.1.1\n");
    let s = spec::sandbox_config(&p, 0, &config(), &host);
    let ns = s
        .linux
        .and_then(|l| l.security_context)
        .and_then(|s| s.namespace_options)
        .unwrap_or_default();
    assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    assert_eq!(s.dns_config.unwrap_or_default().servers, ["1.1.1.1"]);
    assert_eq!(s.hostname, "");
}

fn container(p: &Pod) -> Container {
    p.spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .unwrap_or_default()
}

#[test]
fn resources_map_to_shares_quota_and_memory_limit() {
    let p = pod(json!({"containers": [{"name": "c", "resources": {
        "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}]}));
    let r = spec::resources(&p, &container(&p), 1 << 30);
    assert_eq!(r.cpu_shares, 256);
    assert_eq!(r.cpu_quota, 50_000);
    assert_eq!(r.cpu_period, 100_000);
    assert_eq!(r.memory_limit_in_bytes, 128 << 20);
    let g = pod(
        json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
    );
    assert_eq!(
        spec::resources(&g, &container(&g), 1 << 30).oom_score_adj,
        -997
    );
    assert_eq!(spec::cgroup_parent(&config(), &g), "/kubepods/podu1");
    let be = pod(json!({"containers": [{"name": "c"}]}));
    let r = spec::resources(&be, &container(&be), 1 << 30);
    assert_eq!((r.cpu_shares, r.cpu_quota, r.oom_score_adj), (2, 0, 1000));
}

#[test]
fn security_context_and_run_as_non_root() {
    let p = pod(
        json!({"securityContext": {"runAsNonRoot": true, "fsGroup": 2000},
        "containers": [{"name": "c", "securityContext": {"readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "seccompProfile": {"type": "RuntimeDefault"}}}]}),
    );
    let c = container(&p);
    let root = ContainerParams {
        image_user: ImageUser {
            uid: Some(0),
            username: String::new(),
        },
        ..Default::default()
    };
    let e = spec::container_config(&p, &c, &root)
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    assert!(
        e.starts_with("container has runAsNonRoot and image will run as root"),
        "{e}"
    );
    let named = ContainerParams {
        image_user: ImageUser {
            uid: None,
            username: "app".into(),
        },
        ..Default::default()
    };
    let e = spec::container_config(&p, &c, &named)
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    assert!(e.contains("non-numeric user (app)"), "{e}");
    let ok = ContainerParams {
        image_user: ImageUser {
            uid: Some(1000),
            username: String::new(),
        },
        ..Default::default()
    };
    let cfg = spec::container_config(&p, &c, &ok).unwrap_or_default();
    let sc = cfg
        .linux
        .and_then(|l| l.security_context)
        .unwrap_or_default();
    assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
    assert_eq!(sc.supplemental_groups, [2000]);
    let caps = sc.capabilities.unwrap_or_default();
    assert_eq!(
        (caps.add_capabilities, caps.drop_capabilities),
        (
            vec!["NET_BIND_SERVICE".to_string()],
            vec!["ALL".to_string()]
        )
    );
    let seccomp = sc.seccomp.unwrap_or_default();
    assert_eq!(
        seccomp.profile_type,
        cri::security_profile::ProfileType::RuntimeDefault as i32
    );
    assert!(!sc.masked_paths.is_empty());
}

#[test]
fn container_config_expands_command_and_places_the_log() {
    let p = pod(
        json!({"containers": [{"name": "c", "command": ["echo", "$(A)"], "args": ["$$(A)", "$(B)"],
        "workingDir": "/w"}]}),
    );
    let params = ContainerParams {
        attempt: 3,
        env: vec![("A".into(), "x".into())],
        image: "img".into(),
        ..Default::default()
    };
    let cfg = spec::container_config(&p, &container(&p), &params).unwrap_or_default();
    assert_eq!(cfg.command, ["echo", "x"]);
    assert_eq!(cfg.args, ["$(A)", "$(B)"]);
    assert_eq!(cfg.working_dir, "/w");
    assert_eq!(cfg.log_path, "c/3.log");
    assert_eq!(cfg.labels["io.kubernetes.container.name"], "c");
    assert_eq!(cfg.metadata.unwrap_or_default().attempt, 3);
}

#[test]
fn expansion_follows_upstream() {
    let lookup = |n: &str| (n == "X").then(|| "1".to_string());
    assert_eq!(expand("a$(X)b", &lookup), "a1b");
    assert_eq!(expand("$$(X)", &lookup), "$(X)");
    assert_eq!(expand("$(Y)", &lookup), "$(Y)");
    assert_eq!(expand("$X $(X", &lookup), "$X $(X");
    assert_eq!(expand("$$", &lookup), "$");
}

#[test]
fn service_links_follow_enable_service_links() {
    let svc = |ns: &str, name: &str, ip: &str| -> k8s_openapi::api::core::v1::Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}}))
        .unwrap_or_default()
    };
    let services = vec![
        svc("default", "kubernetes", "10.43.0.1"),
        svc("prod", "my-db", "10.43.0.7"),
        svc("prod", "headless", "None"),
        svc("other", "x", "10.43.0.8"),
    ];
    let p = pod(json!({"containers": [{"name": "c"}]}));
    let env: std::collections::HashMap<_, _> =
        env::service_env(&p, &services).into_iter().collect();
    assert_eq!(env["MY_DB_SERVICE_HOST"], "10.43.0.7");
    assert_eq!(env["MY_DB_SERVICE_PORT_HTTP"], "80");
    assert_eq!(env["MY_DB_PORT_80_TCP_ADDR"], "10.43.0.7");
    assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
    assert!(!env.contains_key("HEADLESS_SERVICE_HOST") && !env.contains_key("X_SERVICE_HOST"));
    let off = pod(json!({"enableServiceLinks": false, "containers": [{"name": "c"}]}));
    let env: std::collections::HashMap<_, _> =
        env::service_env(&off, &services).into_iter().collect();
    assert!(env.contains_key("KUBERNETES_SERVICE_HOST") && !env.contains_key("MY_DB_SERVICE_HOST"));
}

#[test]
fn resource_field_refs_use_limits_or_node_allocatable() {
    let p = pod(
        json!({"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}},
        "env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}]}),
    );
    let facts = env::Facts {
        node_milli_cpu: 2000,
        node_memory: 1 << 30,
        ..Default::default()
    };
    let got: std::collections::HashMap<_, _> =
        env::container_env(&p, &container(&p), &env::Refs::default(), &facts)
            .unwrap_or_default()
            .into_iter()
            .collect();
    assert_eq!(got["MEM"], "64");
    assert_eq!(got["CPU"], "2");
}

#[test]
fn helpers() {
    assert_eq!(go_duration(std::time::Duration::from_secs(10)), "10s");
    assert_eq!(go_duration(std::time::Duration::from_secs(80)), "1m20s");
    assert_eq!(go_duration(std::time::Duration::from_secs(300)), "5m0s");
    let log = "2026-01-01T00:00:00Z stdout F one\n2026-01-01T00:00:01Z stderr F two\n";
    assert_eq!(log_tail(log, 80, 2048), "one\ntwo");
    assert_eq!(log_tail(log, 1, 2048), "two");
    let cfg = br#"{"auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}}"#;
    let a = docker_auth(cfg, "127.0.0.1:5000").unwrap_or_default();
    assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
    assert!(docker_auth(cfg, "docker.io").is_none());
}
