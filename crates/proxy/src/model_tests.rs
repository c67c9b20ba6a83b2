use super::*;
use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn svc(name: &str, spec: ServiceSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn port(name: &str, port: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> SliceEndpoint {
    SliceEndpoint {
        addresses: vec![ip.into()],
        node_name: Some(node.into()),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        ..Default::default()
    }
}

fn slice(svc: &str, endpoints: Vec<SliceEndpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{svc}-abc")),
            namespace: Some("ns".into()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

fn info(internal_local: bool, external_local: bool, node_port: Option<u16>) -> ServicePortInfo {
    let name = ServicePortName {
        service: ServiceName {
            namespace: "ns".into(),
            name: "web".into(),
        },
        port: "http".into(),
        protocol: Proto::Tcp,
    };
    ServicePortInfo {
        node_port,
        internal_local,
        external_local,
        ..ServicePortInfo::cluster_ip(name, Ipv4Addr::new(10, 43, 0, 5), 80)
    }
}

fn endpoint(last: u8, local: bool, ready: bool, terminating: bool) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::new(10, 42, 0, last),
        port: 8080,
        ready,
        serving: ready || terminating,
        terminating,
        local,
    }
}

#[test]
fn service_ports_skip_headless_and_external_name() {
    let headless = svc(
        "h",
        ServiceSpec {
            cluster_ip: Some("None".into()),
            ports: Some(vec![port("http", 80, "TCP")]),
            ..Default::default()
        },
    );
    assert!(service_ports(&headless).is_empty());
    let ext = svc(
        "e",
        ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("example.com".into()),
            ..Default::default()
        },
    );
    assert!(service_ports(&ext).is_empty());
}

#[test]
fn service_ports_carry_nodeport_affinity_and_policies() {
    let s = svc(
        "web",
        ServiceSpec {
            type_: Some("NodePort".into()),
            cluster_ip: Some("10.43.0.5".into()),
            ports: Some(vec![ServicePort {
                node_port: Some(30080),
                ..port("http", 80, "TCP")
            }]),
            session_affinity: Some("ClientIP".into()),
            external_traffic_policy: Some("Local".into()),
            health_check_node_port: Some(32000),
            ..Default::default()
        },
    );
    let ports = service_ports(&s);
    assert_eq!(ports.len(), 1);
    let p = &ports[0];
    assert_eq!(p.node_port, Some(30080));
    assert_eq!(p.affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
    assert!(p.external_local);
    assert_eq!(p.health_check_node_port, Some(32000));
    assert_eq!(p.name.chain_base(), "ns/web/tcp/http");
}

#[test]
fn slices_merge_into_endpoints_marking_local_ones() {
    let a = slice(
        "web",
        vec![
            ep("10.42.0.1", "n1", true, true, false),
            ep("10.42.0.2", "n2", false, false, false),
        ],
    );
    let eps = slice_endpoints([&a], "n1");
    let list = &eps[&("http".to_string(), Proto::Tcp)];
    assert_eq!(list.len(), 2);
    assert!(list[0].local && list[0].ready);
    assert!(!list[1].local && !list[1].ready);
    assert_eq!(
        slice_service(&a).map(|s| s.to_string()),
        Some("ns/web".into())
    );
}

#[test]
fn ready_endpoints_win_over_terminating_ones() {
    let eps = vec![
        endpoint(1, false, true, false),
        endpoint(2, false, false, true),
    ];
    let cat = categorize(&info(false, false, None), &eps);
    assert_eq!(cat.cluster, vec![eps[0].clone()]);
    assert_eq!(cat.reachable, vec![eps[0].clone()]);
    assert!(cat.has_any);
}

#[test]
fn serving_terminating_endpoints_are_used_when_none_is_ready() {
    let eps = vec![
        endpoint(1, false, false, false),
        endpoint(2, false, false, true),
    ];
    let cat = categorize(&info(false, false, None), &eps);
    assert_eq!(cat.cluster, vec![eps[1].clone()]);
    assert!(cat.has_any);
    let none = categorize(&info(false, false, None), &eps[..1]);
    assert!(none.cluster.is_empty() && !none.has_any);
}

#[test]
fn internal_local_policy_uses_only_local_endpoints() {
    let eps = vec![
        endpoint(1, false, true, false),
        endpoint(2, true, true, false),
    ];
    let cat = categorize(&info(true, false, None), &eps);
    assert!(cat.cluster.is_empty());
    assert_eq!(cat.local, vec![eps[1].clone()]);
    assert_eq!(cat.reachable, vec![eps[1].clone()]);
    let remote_only = categorize(&info(true, false, None), &eps[..1]);
    assert!(remote_only.local.is_empty());
    assert!(
        remote_only.has_any,
        "endpoints exist elsewhere: drop, not reject"
    );
}

#[test]
fn external_local_policy_keeps_cluster_endpoints_for_internal_traffic() {
    let eps = vec![
        endpoint(1, false, true, false),
        endpoint(2, true, true, false),
    ];
    let cat = categorize(&info(false, true, Some(30080)), &eps);
    assert_eq!(cat.cluster.len(), 2);
    assert_eq!(cat.local, vec![eps[1].clone()]);
    assert_eq!(cat.reachable.len(), 2);
}
