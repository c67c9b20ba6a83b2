//! The DNS server against a real (in-process) API server: records appear and disappear as
//! Services and EndpointSlices change, over UDP and TCP on loopback, and other names are
//! forwarded to a fake upstream resolver on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8rs_dns::{Catalog, DnsConfig};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
const FAKE_UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn query_bytes(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(&query_bytes(name, qtype)).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf))
        .await
        .expect("UDP answer in time")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let q = query_bytes(name, qtype);
    stream.write_u16(q.len() as u16).await.unwrap();
    stream.write_all(&q).await.unwrap();
    let read = async {
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .expect("TCP answer in time");
    Message::from_vec(&buf).unwrap()
}

fn a_records(msg: &Message) -> Vec<String> {
    let mut out: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// A fake upstream resolver on loopback: every A question gets 192.0.2.1.
async fn fake_upstream(shutdown: CancellationToken) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                r = socket.recv_from(&mut buf) => r.unwrap(),
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.metadata.recursion_available = true;
            resp.add_queries(req.queries.iter().cloned());
            if let Some(q) = req.queries.first()
                && q.query_type() == RecordType::A
            {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A(FAKE_UPSTREAM_ANSWER)),
                ));
            }
            let _ = socket.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

struct Setup {
    server: TestServer,
    dns: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start(resolv_conf: &str) -> Setup {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, resolv_conf).unwrap();
    let config = DnsConfig {
        bind: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        upstream_resolv_conf: path,
        upstream_timeout: Duration::from_secs(2),
        ..DnsConfig::default()
    };
    let bound = k8rs_dns::bind(config).await.unwrap();
    let dns = bound.local_addrs()[0];
    tokio::spawn(bound.serve(server.client(), server.shutdown_token()));
    Setup {
        server,
        dns,
        _dir: dir,
    }
}

async fn wait_for_a(dns: SocketAddr, name: &str, want: Vec<String>) {
    let what = format!("{name} -> {want:?}");
    eventually(&what, WAIT, || {
        let want = want.clone();
        async move {
            let got = a_records(&ask_udp(dns, name, RecordType::A).await);
            (got == want).then_some(())
        }
    })
    .await;
}

async fn wait_for_rcode(dns: SocketAddr, name: &str, rcode: ResponseCode) {
    eventually(&format!("{name} -> {rcode}"), WAIT, || async move {
        (ask_udp(dns, name, RecordType::A)
            .await
            .metadata
            .response_code
            == rcode)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn cluster_ip_service_appears_and_disappears_over_udp_and_tcp() {
    let setup = start("").await;
    let client = setup.server.client();
    let services: Api<Service> = Api::namespaced(client, "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .unwrap();
    let created = services.create(&PostParams::default(), &svc).await.unwrap();
    let ip = created.spec.unwrap().cluster_ip.unwrap();
    let name = "web.default.svc.cluster.local.";
    wait_for_a(setup.dns, name, vec![ip.clone()]).await;

    let tcp = ask_tcp(setup.dns, name, RecordType::A).await;
    assert_eq!(a_records(&tcp), std::slice::from_ref(&ip));
    assert!(tcp.metadata.authoritative);

    let srv = ask_tcp(
        setup.dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(srv.answers.len(), 1);
    assert!(
        srv.answers[0]
            .data
            .to_string()
            .ends_with(" 80 web.default.svc.cluster.local.")
    );

    let octets: Vec<&str> = ip.split('.').rev().collect();
    let ptr = ask_udp(
        setup.dns,
        &format!("{}.in-addr.arpa.", octets.join(".")),
        RecordType::PTR,
    )
    .await;
    assert_eq!(ptr.answers[0].data.to_string(), name);

    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_rcode(setup.dns, name, ResponseCode::NXDomain).await;
}

#[tokio::test]
async fn headless_service_follows_its_endpoint_slices() {
    let setup = start("").await;
    let client = setup.server.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let name = "db.default.svc.cluster.local.";
    wait_for_rcode(setup.dns, name, ResponseCode::NXDomain).await;

    let slice = |ready: bool| -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "db-abc", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.6"], "hostname": "db-1", "conditions": {"ready": ready}}
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]
        }))
        .unwrap()
    };
    slices
        .create(&PostParams::default(), &slice(true))
        .await
        .unwrap();
    wait_for_a(
        setup.dns,
        name,
        vec!["10.42.0.5".into(), "10.42.0.6".into()],
    )
    .await;
    wait_for_a(
        setup.dns,
        "db-1.db.default.svc.cluster.local.",
        vec!["10.42.0.6".into()],
    )
    .await;

    let srv = ask_udp(
        setup.dns,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    let mut targets: Vec<String> = srv.answers.iter().map(|r| r.data.to_string()).collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "0 50 5432 db-0.db.default.svc.cluster.local.",
            "0 50 5432 db-1.db.default.svc.cluster.local."
        ]
    );

    // An endpoint turning unready leaves the answers.
    let mut current = slices.get("db-abc").await.unwrap();
    current.endpoints[1].conditions.as_mut().unwrap().ready = Some(false);
    slices
        .replace("db-abc", &PostParams::default(), &current)
        .await
        .unwrap();
    wait_for_a(setup.dns, name, vec!["10.42.0.5".into()]).await;
    wait_for_rcode(
        setup.dns,
        "db-1.db.default.svc.cluster.local.",
        ResponseCode::NXDomain,
    )
    .await;

    slices
        .delete("db-abc", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_rcode(setup.dns, name, ResponseCode::NXDomain).await;
}

#[tokio::test]
async fn pods_and_fixed_records() {
    let setup = start("").await;
    let client = setup.server.client();
    // Pod A records need only the namespace.
    let got = ask_udp(
        setup.dns,
        "10-42-1-7.default.pod.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(a_records(&got), ["10.42.1.7"]);
    let txt = ask_udp(setup.dns, "dns-version.cluster.local.", RecordType::TXT).await;
    assert_eq!(txt.answers[0].data.to_string(), "1.1.0");
    // NODATA: the name exists.
    let nodata = ask_udp(setup.dns, "default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);

    // A pod with hostname and subdomain, once it has an address and is ready.
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "box"},
        "spec": {"hostname": "box", "subdomain": "sub",
                 "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let services: Api<Service> = Api::namespaced(setup.server.client(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "sub"}, "spec": {"clusterIP": "None"}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let mut current = pods.get("box").await.unwrap();
    current.status = Some(
        serde_json::from_value(json!({
            "phase": "Running", "podIP": "10.42.3.3", "podIPs": [{"ip": "10.42.3.3"}],
            "conditions": [{"type": "Ready", "status": "True"}]
        }))
        .unwrap(),
    );
    pods.replace_status("box", &PostParams::default(), &current)
        .await
        .unwrap();
    wait_for_a(
        setup.dns,
        "box.sub.default.svc.cluster.local.",
        vec!["10.42.3.3".into()],
    )
    .await;
}

#[tokio::test]
async fn other_names_are_forwarded_upstream_and_external_names_chased() {
    let token = CancellationToken::new();
    let upstream = fake_upstream(token.clone()).await;
    let setup = start(&format!("nameserver {upstream}\n")).await;
    let got = ask_udp(setup.dns, "example.com.", RecordType::A).await;
    assert_eq!(a_records(&got), [FAKE_UPSTREAM_ANSWER.to_string()]);
    let got = ask_tcp(setup.dns, "example.org.", RecordType::A).await;
    assert_eq!(a_records(&got), [FAKE_UPSTREAM_ANSWER.to_string()]);

    let services: Api<Service> = Api::namespaced(setup.server.client(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "www.example.com"}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    eventually("ext CNAME", WAIT, || async {
        let got = ask_udp(setup.dns, "ext.default.svc.cluster.local.", RecordType::A).await;
        let kinds: Vec<RecordType> = got.answers.iter().map(Record::record_type).collect();
        (kinds == [RecordType::CNAME, RecordType::A]).then_some(())
    })
    .await;
    token.cancel();
}

#[tokio::test]
async fn no_upstream_resolvers_is_servfail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, "# nothing\n").unwrap();
    let config = DnsConfig {
        bind: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        upstream_resolv_conf: path,
        ..DnsConfig::default()
    };
    let bound = k8rs_dns::bind(config).await.unwrap();
    let dns = bound.local_addrs()[0];
    let token = CancellationToken::new();
    let task = tokio::spawn(bound.serve_catalog(Catalog::new(), token.clone()));
    let got = ask_udp(dns, "example.com.", RecordType::A).await;
    assert_eq!(got.metadata.response_code, ResponseCode::ServFail);

    // With EDNS the reason travels as an RFC 8914 extended error.
    let mut msg = Message::query();
    msg.add_query(Query::query(
        Name::from_ascii("example.com.").unwrap(),
        RecordType::A,
    ));
    msg.set_edns(Edns::new());
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    socket.send_to(&msg.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let got = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(got.metadata.response_code, ResponseCode::ServFail);
    let edns = got.edns.expect("OPT record");
    let Some(EdnsOption::Unknown(15, data)) = edns.options().get(EdnsCode::from(15)) else {
        panic!("no extended DNS error in {edns:?}");
    };
    let text = String::from_utf8_lossy(&data[2..]);
    assert!(text.contains("no upstream resolvers"), "{text}");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}
