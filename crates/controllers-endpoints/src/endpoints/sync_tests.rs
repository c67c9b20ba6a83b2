use super::*;
use crate::testutil::{PodBuilder, ServiceBuilder};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::json;

fn snap<'a>(
    svc: Option<&'a Service>,
    pods: &'a [&'a Pod],
    current: Option<&'a Endpoints>,
) -> Snapshot<'a> {
    Snapshot {
        namespace: "default",
        name: "web",
        service: svc,
        pods,
        current,
        trigger: None,
    }
}

fn addr(ip: &str, pod: &str, node: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        hostname: None,
        node_name: Some(node.into()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(pod.into()),
            uid: Some(format!("uid-{pod}")),
            ..Default::default()
        }),
    }
}

fn http_port(port: i32) -> EndpointPort {
    EndpointPort {
        name: Some("http".into()),
        port,
        protocol: Some("TCP".into()),
        app_protocol: None,
    }
}

#[test]
fn creates_endpoints_with_ready_and_not_ready_addresses() {
    let svc = ServiceBuilder::new("web").label("tier", "front").build();
    let a = PodBuilder::new("a").ip("10.42.0.5").build();
    let b = PodBuilder::new("b")
        .ip("10.42.0.6")
        .not_ready()
        .node("node-2")
        .build();
    let gone = PodBuilder::new("c")
        .ip("10.42.0.7")
        .phase("Succeeded")
        .build();
    let other = PodBuilder::new("d").labels(&[("app", "db")]).build();
    let noip = PodBuilder::new("e").no_ip().build();
    let terminating = PodBuilder::new("f").ip("10.42.0.9").terminating().build();
    let pods = [&a, &b, &gone, &other, &noip, &terminating];
    let Some(Action::Create(ep)) = sync(&snap(Some(&svc), &pods, None)) else {
        panic!("expected a create");
    };
    assert_eq!(ep.metadata.name.as_deref(), Some("web"));
    assert_eq!(
        ep.metadata.labels.unwrap(),
        BTreeMap::from([("tier".to_string(), "front".to_string())])
    );
    assert_eq!(
        ep.subsets.unwrap(),
        vec![EndpointSubset {
            addresses: Some(vec![addr("10.42.0.5", "a", "node-1")]),
            not_ready_addresses: Some(vec![addr("10.42.0.6", "b", "node-2")]),
            ports: Some(vec![http_port(8080)]),
        }]
    );
}

#[test]
fn named_ports_resolve_per_pod_into_subsets() {
    let svc = ServiceBuilder::new("web").build();
    let a = PodBuilder::new("a").ip("10.42.0.5").build();
    let b = PodBuilder::new("b")
        .ip("10.42.0.6")
        .container_port("http", 9090)
        .build();
    let pods = [&a, &b];
    let subsets = subsets_for(&svc, &pods);
    assert_eq!(subsets.len(), 2);
    assert_eq!(subsets[0].ports, Some(vec![http_port(8080)]));
    assert_eq!(subsets[1].ports, Some(vec![http_port(9090)]));
}

#[test]
fn publish_not_ready_and_hostnames() {
    let svc = ServiceBuilder::new("web")
        .publish_not_ready()
        .headless()
        .build();
    let a = PodBuilder::new("a")
        .ip("10.42.0.5")
        .not_ready()
        .hostname("a", "web")
        .build();
    let b = PodBuilder::new("b")
        .ip("10.42.0.6")
        .terminating()
        .hostname("b", "other")
        .build();
    let pods = [&a, &b];
    let Some(Action::Create(ep)) = sync(&snap(Some(&svc), &pods, None)) else {
        panic!("expected a create");
    };
    let subsets = ep.subsets.unwrap();
    let addresses = subsets[0].addresses.clone().unwrap();
    assert_eq!(
        addresses.len(),
        2,
        "terminating and unready pods are published"
    );
    assert_eq!(addresses[0].hostname.as_deref(), Some("a"));
    assert_eq!(addresses[1].hostname, None, "subdomain is not the service");
    assert_eq!(
        ep.metadata
            .labels
            .unwrap()
            .get(HEADLESS_LABEL)
            .map(String::as_str),
        Some("")
    );
}

#[test]
fn headless_without_ports_lists_addresses() {
    let svc = ServiceBuilder::new("web")
        .headless()
        .ports(json!(null))
        .build();
    let a = PodBuilder::new("a").ip("10.42.0.5").build();
    let subsets = subsets_for(&svc, &[&a]);
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0].ports, None);
}

#[test]
fn no_write_when_unchanged_and_update_when_changed() {
    let svc = ServiceBuilder::new("web").build();
    let a = PodBuilder::new("a").ip("10.42.0.5").build();
    let pods = [&a];
    let Some(Action::Create(mut ep)) = sync(&snap(Some(&svc), &pods, None)) else {
        panic!("expected a create");
    };
    ep.metadata.resource_version = Some("7".into());
    assert_eq!(sync(&snap(Some(&svc), &pods, Some(&ep))), None);
    let b = PodBuilder::new("b").ip("10.42.0.6").build();
    let pods = [&a, &b];
    let mut s = snap(Some(&svc), &pods, Some(&ep));
    s.trigger = Some("2024-01-01T00:00:10Z".parse().unwrap());
    let Some(Action::Update(updated)) = sync(&s) else {
        panic!("expected an update");
    };
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(
        updated.metadata.annotations.unwrap()[LAST_CHANGE_TRIGGER_TIME],
        "2024-01-01T00:00:10Z"
    );
}

#[test]
fn deletes_when_service_is_gone_and_ignores_selectorless() {
    let ep = Endpoints::default();
    assert_eq!(
        sync(&snap(None, &[], Some(&ep))),
        Some(Action::Delete {
            namespace: "default".into(),
            name: "web".into()
        })
    );
    assert_eq!(sync(&snap(None, &[], None)), None);
    let svc = ServiceBuilder::new("web").no_selector().build();
    assert_eq!(sync(&snap(Some(&svc), &[], Some(&ep))), None);
}

#[test]
fn truncates_over_capacity_ready_first() {
    let svc = ServiceBuilder::new("web").build();
    let pods: Vec<Pod> = (0..1100)
        .map(|i| {
            let b = PodBuilder::new(&format!("p{i}")).ip(&format!("10.42.{}.{}", i / 250, i % 250));
            if i % 2 == 0 {
                b.build()
            } else {
                b.not_ready().build()
            }
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let Some(Action::Create(ep)) = sync(&snap(Some(&svc), &refs, None)) else {
        panic!("expected a create");
    };
    let subset = &ep.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap().len(), 550);
    assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 450);
    assert_eq!(ep.metadata.annotations.unwrap()[OVER_CAPACITY], "truncated");
}
