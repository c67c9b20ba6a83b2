//! The resolver over fixtures: every record kind, NXDOMAIN vs NODATA, PTR, SRV.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use crate::catalog::{Catalog, Kind};
use crate::resolve::{Outcome, Reply, Zone, resolve};

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn cluster_ip(ns: &str, name: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"port": 81, "protocol": "UDP"}
        ]}
    }))
    .unwrap()
}

fn headless(ns: &str, name: &str, publish_not_ready: bool) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": publish_not_ready,
                 "ports": [{"name": "http", "port": 80}]}
    }))
    .unwrap()
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ExternalName", "externalName": target}
    }))
    .unwrap()
}

/// A slice of `svc` with endpoints `(ip, hostname, ready)` and port `http` 8080/TCP.
fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    endpoints: &[(&str, Option<&str>, bool)],
) -> EndpointSlice {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(ip, host, ready)| {
            let mut ep = json!({"addresses": [ip], "conditions": {"ready": ready}});
            if let Some(h) = host {
                ep["hostname"] = json!(h);
            }
            ep
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
    .unwrap()
}

fn pod(ns: &str, name: &str, hostname: &str, subdomain: &str, ip: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hostname": hostname, "subdomain": subdomain, "containers": []},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    }))
    .unwrap()
}

fn fixture() -> Catalog {
    let cat = Catalog::new();
    for ns in ["default", "kube-system", "other"] {
        cat.apply_namespace(&namespace(ns));
    }
    cat.apply_service(&cluster_ip("default", "web", "10.43.0.20"));
    cat.apply_service(&cluster_ip("kube-system", "kube-dns", "10.43.0.10"));
    cat.apply_service(&headless("default", "db", false));
    cat.apply_endpoint_slice(&slice(
        "default",
        "db-1",
        "db",
        &[
            ("10.42.0.5", Some("db-0"), true),
            ("10.42.0.6", None, true),
            ("10.42.0.7", Some("db-2"), false),
        ],
    ));
    cat.apply_service(&headless("default", "empty", false));
    cat.apply_service(&external("default", "ext", "www.example.com."));
    cat.apply_service(&external(
        "default",
        "alias",
        "web.default.svc.cluster.local",
    ));
    cat
}

fn ask(cat: &Catalog, name: &str, qtype: RecordType) -> Outcome {
    let zone = Zone::new("cluster.local", 5);
    let inner = cat.read();
    resolve(&zone, &inner, &Name::from_ascii(name).unwrap(), qtype)
}

fn local(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Local(reply) => reply,
        other => panic!("expected a local answer, got {other:?}"),
    }
}

/// The answer section as `type data` strings, sorted.
fn answers(reply: &Reply) -> Vec<String> {
    let mut out: Vec<String> = reply
        .answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect();
    out.sort();
    out
}

fn assert_nxdomain(cat: &Catalog, name: &str, qtype: RecordType) {
    let reply = local(ask(cat, name, qtype));
    assert_eq!(reply.rcode, ResponseCode::NXDomain, "{name} {qtype}");
    assert!(reply.answers.is_empty());
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
}

fn assert_nodata(cat: &Catalog, name: &str, qtype: RecordType) {
    let reply = local(ask(cat, name, qtype));
    assert_eq!(reply.rcode, ResponseCode::NoError, "{name} {qtype}");
    assert!(reply.answers.is_empty(), "{name}: {:?}", reply.answers);
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn cluster_ip_service_a_record_case_insensitive_with_ttl() {
    let cat = fixture();
    let reply = local(ask(&cat, "Web.Default.SVC.cluster.local.", RecordType::A));
    assert_eq!(answers(&reply), ["A 10.43.0.20"]);
    assert_eq!(reply.answers[0].ttl, 5);
    assert_eq!(
        reply.answers[0].name.to_ascii(),
        "Web.Default.SVC.cluster.local."
    );
}

#[test]
fn cluster_ip_srv_for_named_port_only() {
    let cat = fixture();
    let reply = local(ask(
        &cat,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_eq!(
        answers(&reply),
        ["SRV 0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(reply.additionals.len(), 1);
    assert_nxdomain(
        &cat,
        "_http._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_nxdomain(
        &cat,
        "_nope._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
}

#[test]
fn headless_a_records_are_ready_endpoints() {
    let cat = fixture();
    let reply = local(ask(&cat, "db.default.svc.cluster.local.", RecordType::A));
    assert_eq!(answers(&reply), ["A 10.42.0.5", "A 10.42.0.6"]);
}

#[test]
fn headless_publish_not_ready_includes_unready() {
    let cat = fixture();
    cat.apply_service(&headless("default", "db", true));
    let reply = local(ask(&cat, "db.default.svc.cluster.local.", RecordType::A));
    assert_eq!(
        answers(&reply),
        ["A 10.42.0.5", "A 10.42.0.6", "A 10.42.0.7"]
    );
}

#[test]
fn headless_without_ready_endpoints_is_nxdomain() {
    let cat = fixture();
    assert_nxdomain(&cat, "empty.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn endpoint_hostname_records() {
    let cat = fixture();
    let reply = local(ask(
        &cat,
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(answers(&reply), ["A 10.42.0.5"]);
    // No hostname: the dashed address names the endpoint.
    let reply = local(ask(
        &cat,
        "10-42-0-6.db.default.svc.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(answers(&reply), ["A 10.42.0.6"]);
    // Not ready: no record.
    assert_nxdomain(&cat, "db-2.db.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn pod_hostname_and_subdomain_records() {
    let cat = fixture();
    cat.apply_pod(&pod("default", "p1", "box", "db", "10.42.1.9", true));
    cat.apply_pod(&pod("default", "p2", "slow", "db", "10.42.1.10", false));
    let reply = local(ask(
        &cat,
        "box.db.default.svc.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(answers(&reply), ["A 10.42.1.9"]);
    assert_nxdomain(&cat, "slow.db.default.svc.cluster.local.", RecordType::A);
    cat.delete(Kind::Pod, "default", "p1");
    assert_nxdomain(&cat, "box.db.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn headless_srv_one_per_endpoint() {
    let cat = fixture();
    let reply = local(ask(
        &cat,
        "_http._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_eq!(
        answers(&reply),
        [
            "SRV 0 50 8080 10-42-0-6.db.default.svc.cluster.local.",
            "SRV 0 50 8080 db-0.db.default.svc.cluster.local.",
        ]
    );
    assert_eq!(reply.additionals.len(), 2);
}

#[test]
fn pod_a_records() {
    let cat = fixture();
    let reply = local(ask(
        &cat,
        "1-2-3-4.default.pod.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(answers(&reply), ["A 1.2.3.4"]);
    assert_nodata(&cat, "1-2-3-4.default.pod.cluster.local.", RecordType::AAAA);
    assert_nxdomain(&cat, "1-2-3-4.missing.pod.cluster.local.", RecordType::A);
    assert_nxdomain(&cat, "not-an-ip.default.pod.cluster.local.", RecordType::A);
}

#[test]
fn external_name_is_a_cname_chased_upstream() {
    let cat = fixture();
    match ask(&cat, "ext.default.svc.cluster.local.", RecordType::A) {
        Outcome::Chase(reply, target) => {
            assert_eq!(answers(&reply), ["CNAME www.example.com."]);
            assert_eq!(target.to_ascii(), "www.example.com.");
        }
        other => panic!("expected a chase, got {other:?}"),
    }
    let reply = local(ask(
        &cat,
        "ext.default.svc.cluster.local.",
        RecordType::CNAME,
    ));
    assert_eq!(answers(&reply), ["CNAME www.example.com."]);
}

#[test]
fn external_name_inside_the_zone_is_followed_locally() {
    let cat = fixture();
    let reply = local(ask(&cat, "alias.default.svc.cluster.local.", RecordType::A));
    assert_eq!(
        answers(&reply),
        ["A 10.43.0.20", "CNAME web.default.svc.cluster.local."]
    );
}

#[test]
fn ptr_for_cluster_ips_and_headless_endpoints() {
    let cat = fixture();
    let reply = local(ask(&cat, "20.0.43.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(answers(&reply), ["PTR web.default.svc.cluster.local."]);
    let reply = local(ask(&cat, "5.0.42.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(answers(&reply), ["PTR db-0.db.default.svc.cluster.local."]);
    let reply = local(ask(&cat, "6.0.42.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(
        answers(&reply),
        ["PTR 10-42-0-6.db.default.svc.cluster.local."]
    );
    // Unknown addresses go upstream.
    assert_eq!(
        ask(&cat, "9.9.9.9.in-addr.arpa.", RecordType::PTR),
        Outcome::Forward
    );
    // Records follow the objects.
    cat.delete(Kind::Service, "default", "web");
    assert_eq!(
        ask(&cat, "20.0.43.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Forward
    );
    cat.delete(Kind::EndpointSlice, "default", "db-1");
    assert_eq!(
        ask(&cat, "5.0.42.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Forward
    );
}

#[test]
fn dns_version_txt() {
    let cat = fixture();
    let reply = local(ask(&cat, "dns-version.cluster.local.", RecordType::TXT));
    assert_eq!(answers(&reply), ["TXT 1.1.0"]);
    assert_nodata(&cat, "dns-version.cluster.local.", RecordType::A);
}

#[test]
fn nxdomain_versus_nodata() {
    let cat = fixture();
    // Names that exist without records of the type asked: NODATA.
    assert_nodata(&cat, "web.default.svc.cluster.local.", RecordType::AAAA);
    assert_nodata(&cat, "web.default.svc.cluster.local.", RecordType::TXT);
    assert_nodata(&cat, "cluster.local.", RecordType::A);
    assert_nodata(&cat, "svc.cluster.local.", RecordType::A);
    assert_nodata(&cat, "default.svc.cluster.local.", RecordType::A);
    assert_nodata(&cat, "pod.cluster.local.", RecordType::A);
    assert_nodata(&cat, "default.pod.cluster.local.", RecordType::A);
    // Names that do not exist: NXDOMAIN.
    assert_nxdomain(&cat, "missing.default.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&cat, "web.missing.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&cat, "missing.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&cat, "x.web.default.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&cat, "a.b.c.d.e.f.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&cat, "random.cluster.local.", RecordType::A);
}

#[test]
fn apex_soa_and_ns() {
    let cat = fixture();
    let reply = local(ask(&cat, "cluster.local.", RecordType::SOA));
    assert_eq!(reply.answers[0].record_type(), RecordType::SOA);
    let reply = local(ask(&cat, "cluster.local.", RecordType::NS));
    assert_eq!(answers(&reply), ["NS ns.dns.cluster.local."]);
    assert!(matches!(reply.additionals[0].data, RData::A(a) if a.0.to_string() == "10.43.0.10"));
}

#[test]
fn outside_the_zone_is_forwarded() {
    let cat = fixture();
    assert_eq!(ask(&cat, "example.com.", RecordType::A), Outcome::Forward);
    assert_eq!(ask(&cat, "local.", RecordType::A), Outcome::Forward);
}

#[test]
fn relist_drops_objects_not_listed_again() {
    let cat = fixture();
    let keep = [("default".to_owned(), "db".to_owned())]
        .into_iter()
        .collect();
    cat.retain(Kind::Service, &keep);
    assert_nxdomain(&cat, "web.default.svc.cluster.local.", RecordType::A);
    let reply = local(ask(&cat, "db.default.svc.cluster.local.", RecordType::A));
    assert_eq!(reply.answers.len(), 2);
}

#[test]
fn slice_moving_between_services_updates_both() {
    let cat = fixture();
    cat.apply_service(&headless("default", "db2", false));
    cat.apply_endpoint_slice(&slice(
        "default",
        "db-1",
        "db2",
        &[("10.42.0.8", None, true)],
    ));
    assert_nxdomain(&cat, "db.default.svc.cluster.local.", RecordType::A);
    let reply = local(ask(&cat, "db2.default.svc.cluster.local.", RecordType::A));
    assert_eq!(answers(&reply), ["A 10.42.0.8"]);
    let reply = local(ask(&cat, "8.0.42.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(
        answers(&reply),
        ["PTR 10-42-0-8.db2.default.svc.cluster.local."]
    );
}
