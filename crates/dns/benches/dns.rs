//! DNS queries per second and latency over UDP on loopback, for a ClusterIP name, with 1,000
//! Services loaded.
//!
//! `cargo bench -p k8rs-dns --bench dns` (env `DNS_BENCH_QUERIES`, `DNS_BENCH_CLIENTS`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8rs_dns::{Catalog, DnsConfig};
use k8s_openapi::api::core::v1::{Namespace, Service};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 1000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn catalog() -> Catalog {
    let cat = Catalog::new();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    cat.apply_namespace(&ns);
    for i in 0..SERVICES {
        let ip = format!("10.43.{}.{}", i / 250 + 1, i % 250 + 1);
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
            "spec": {"clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap();
        cat.apply_service(&svc);
    }
    cat
}

/// One client: sequential queries, each latency recorded.
async fn client(server: SocketAddr, queries: usize, id: usize) -> Vec<Duration> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    socket.connect(server).await.unwrap();
    let mut latencies = Vec::with_capacity(queries);
    let mut buf = vec![0u8; 1500];
    for i in 0..queries {
        let name = format!("svc-{}.default.svc.cluster.local.", (i * 7 + id) % SERVICES);
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(
            Name::from_ascii(&name).unwrap(),
            RecordType::A,
        ));
        let bytes = msg.to_vec().unwrap();
        let start = Instant::now();
        socket.send(&bytes).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .expect("answer within 2 s")
            .unwrap();
        latencies.push(start.elapsed());
        assert!(n > 12);
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let queries = env_or("DNS_BENCH_QUERIES", 50_000);
    let clients = env_or("DNS_BENCH_CLIENTS", 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = DnsConfig {
            bind: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            upstream_resolv_conf: "/nonexistent".into(),
            ..DnsConfig::default()
        };
        let bound = k8rs_dns::bind(config).await.unwrap();
        let server = bound.local_addrs()[0];
        let shutdown = CancellationToken::new();
        tokio::spawn(bound.serve_catalog(catalog(), shutdown.clone()));
        // Warm-up.
        client(server, 1000, 0).await;

        let per_client = queries / clients;
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|id| tokio::spawn(client(server, per_client, id)))
            .collect();
        let mut all = Vec::with_capacity(queries);
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = start.elapsed();
        all.sort();
        println!(
            "dns: {SERVICES} services, {} queries over UDP from {clients} clients in {:.2?}: {:.0} qps, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            all.len(),
            elapsed,
            all.len() as f64 / elapsed.as_secs_f64(),
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            all[all.len() - 1],
        );
        shutdown.cancel();
    });
}
