//! Benchmark: time to program N Services with 5 endpoints each into a fresh network
//! namespace, and the time of single changes at that size (one endpoint replaced and back,
//! an endpoint added and removed, a Service added and removed) and of a full resync.
//!
//! `cargo run --release -p k8rs-proxy --example program_bench -- 1000 10000`
//! (root; creates and deletes namespace `k8rs-proxy-bench-<pid>`).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use k8rs_proxy::dataplane::Dataplane;
use k8rs_proxy::model::{Endpoint, ServiceName, ServicePortInfo, ServicePortName};
use k8rs_proxy::nft::Proto;
use k8rs_proxy::render::{RenderContext, service_fragment, skeleton};
use k8rs_proxy::state::TableState;
use k8rs_proxy::{Cidr, ProxyConfig};

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        if std::env::var_os("K8RS_BENCH_KEEP").is_some() {
            eprintln!("kept namespace {}", self.0);
            return;
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn service(i: u32) -> ServicePortInfo {
    let name = ServicePortName {
        service: ServiceName {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
        },
        port: "http".into(),
        protocol: Proto::Tcp,
    };
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 0, 10)) + i);
    ServicePortInfo::cluster_ip(name, ip, 80)
}

fn endpoints(i: u32, generation: u32) -> Vec<Endpoint> {
    (0..5)
        .map(|e| Endpoint {
            ip: Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 42, 0, 0)) + i * 5 + e + generation * 7919,
            ),
            port: 8080,
            ready: true,
            serving: true,
            terminating: false,
            local: false,
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10000]
    } else {
        sizes
    };
    for n in sizes {
        let ns = Netns(format!("k8rs-proxy-bench-{}-{n}", std::process::id()));
        let status = Command::new("ip").args(["netns", "add", &ns.0]).status()?;
        if !status.success() {
            return Err("ip netns add failed".into());
        }
        let mut config = ProxyConfig::new("bench", Ipv4Addr::new(10, 42, 255, 1));
        config.service_cidr = Some(Cidr::new(Ipv4Addr::new(10, 43, 0, 0), 16));
        let ctx = RenderContext::new(&config, &[]);
        let dp = Dataplane::new(&[
            "ip".into(),
            "netns".into(),
            "exec".into(),
            ns.0.clone(),
            "nft".into(),
        ]);

        let t0 = Instant::now();
        let mut state = TableState::new(skeleton(&config, &config.nodeport_ips(&[])));
        let changes = (0..n)
            .map(|i| {
                let svc = service(i);
                (
                    svc.name.clone(),
                    Some(service_fragment(&ctx, &svc, &endpoints(i, 0))),
                )
            })
            .collect();
        state.update(changes);
        let ops = state.full(&dp.existing()?);
        let render = t0.elapsed();
        dp.apply(&ops)?;
        let full = t0.elapsed();

        // One endpoint of one Service changes.
        let t1 = Instant::now();
        let i = n / 2;
        let svc = service(i);
        let mut eps = endpoints(i, 0);
        eps[2] = endpoints(i, 1)[2].clone();
        let ops_inc = state.update(vec![(
            svc.name.clone(),
            Some(service_fragment(&ctx, &svc, &eps)),
        )]);
        let diff = t1.elapsed();
        dp.apply(&ops_inc)?;
        let inc = t1.elapsed();
        // The same change back.
        let t1b = Instant::now();
        let ops_back = state.update(vec![(
            svc.name.clone(),
            Some(service_fragment(&ctx, &svc, &endpoints(i, 0))),
        )]);
        dp.apply(&ops_back)?;
        let inc_back = t1b.elapsed();
        // A sixth endpoint (a new shared chain lb-6), then back to five (lb-6 deleted).
        let t1c = Instant::now();
        let mut six = endpoints(i, 0);
        six.push(endpoints(i, 1)[0].clone());
        dp.apply(&state.update(vec![(
            svc.name.clone(),
            Some(service_fragment(&ctx, &svc, &six)),
        )]))?;
        let grown = t1c.elapsed();
        let t1s = Instant::now();
        dp.apply(&state.update(vec![(
            svc.name.clone(),
            Some(service_fragment(&ctx, &svc, &endpoints(i, 0))),
        )]))?;
        let shrunk = t1s.elapsed();
        // A new Service with 5 endpoints, then its removal.
        let t1n = Instant::now();
        let extra = service(n);
        let add = state.update(vec![(
            extra.name.clone(),
            Some(service_fragment(&ctx, &extra, &endpoints(n, 0))),
        )]);
        dp.apply(&add)?;
        let added = t1n.elapsed();
        let t1r = Instant::now();
        dp.apply(&state.update(vec![(extra.name.clone(), None)]))?;
        let removed = t1r.elapsed();

        // A restart: the whole table replaced again.
        let t2 = Instant::now();
        dp.apply(&state.full(&dp.existing()?))?;
        let resync = t2.elapsed();
        println!(
            "services={n} endpoints={} full_ops={} full_sync={:.3}s (render {:.3}s) \
             one_endpoint_change_ops={} one_endpoint_change={:.1}ms (diff {:.3}ms; back {:.1}ms) \
             count_change={:.1}ms/{:.1}ms add_service={:.1}ms remove_service={:.1}ms \
             full_resync={:.3}s",
            n * 5,
            ops.len(),
            full.as_secs_f64(),
            render.as_secs_f64(),
            ops_inc.len(),
            inc.as_secs_f64() * 1000.0,
            diff.as_secs_f64() * 1000.0,
            inc_back.as_secs_f64() * 1000.0,
            grown.as_secs_f64() * 1000.0,
            shrunk.as_secs_f64() * 1000.0,
            added.as_secs_f64() * 1000.0,
            removed.as_secs_f64() * 1000.0,
            resync.as_secs_f64()
        );
    }
    Ok(())
}
