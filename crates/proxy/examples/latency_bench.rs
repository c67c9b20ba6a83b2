//! Benchmark (issue 6 item 7): network programming latency and first-packet latency of the
//! service proxy, with N Services (5 endpoints each) loaded through a real API server.
//!
//! `cargo run --release -p k8rs-proxy --example latency_bench -- [services] [changes] [gap_ms]`
//! (root; defaults 1000 Services, 50 changes, 100 ms between a change going live and the next
//! write). Creates namespaces `k8rs-proxy-lat-<pid>-*` (no route out; the network-safety
//! guard is loaded first) and deletes them at the end.
//!
//! - Programming latency: one Service's only endpoint is switched between two pods by writing
//!   its EndpointSlice to the API server; the time until a new connection through the
//!   ClusterIP reaches the new pod (a prober inside the namespace connects every ~1 ms).
//!   Measured with `min_sync_period` 1 s (the default), 100 ms and 0.
//! - First-packet latency: TCP connect time from a client pod through a ClusterIP and straight
//!   to a pod IP, alternating, over the same node.
//!
//! The binary also runs its own helpers inside the namespaces (`serve`, `probe`, `connect`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{ChildStdin, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8rs_testing::netguard;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;
use support::{ApiServer, Lab, proxy_config, quiet, self_in, service, slice, start_proxy};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const POD1: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 11);
const POD2: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 12);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 13);
const PROBE_VIP: &str = "10.43.200.1";
const WEB_VIP: &str = "10.43.200.2";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).map(String::as_str).unwrap_or("pod")),
        Some("probe") => probe(),
        Some("connect") => connect(&args[1..]),
        _ => {
            let num = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
            let (services, changes, gap) = (num(0, 1000), num(1, 50), num(2, 100));
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(bench(services as u32, changes as usize, gap))
        }
    }
}

// ---- helpers run inside the namespaces ----

/// A TCP server on 8080 answering every connection with `reply`.
fn serve(reply: &str) -> Result<(), BoxError> {
    let listener = TcpListener::bind(("0.0.0.0", 8080))?;
    for mut stream in listener.incoming().flatten() {
        let _ = stream.write_all(reply.as_bytes());
    }
    Ok(())
}

/// Reads `ADDR EXPECT` lines; for each, connects to ADDR every ~1 ms until the reply is
/// EXPECT, then prints `ok` (or `timeout` after 20 s).
fn probe() -> Result<(), BoxError> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let Some((addr, expect)) = line.split_once(' ') else {
            continue;
        };
        let addr: SocketAddr = addr.parse()?;
        let started = Instant::now();
        let mut result = "timeout";
        while started.elapsed() < Duration::from_secs(20) {
            if ask(addr).as_deref() == Some(expect) {
                result = "ok";
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        writeln!(out, "{result}")?;
        out.flush()?;
    }
    Ok(())
}

fn ask(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// `connect N ADDR...`: N rounds of one TCP connect to each ADDR in turn; prints
/// `ADDR MICROS` per connect.
fn connect(args: &[String]) -> Result<(), BoxError> {
    let rounds: usize = args.first().ok_or("connect N ADDR...")?.parse()?;
    let addrs: Vec<SocketAddr> = args[1..]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let mut out = std::io::stdout().lock();
    for _ in 0..rounds {
        for addr in &addrs {
            let t = Instant::now();
            let stream = TcpStream::connect_timeout(addr, Duration::from_secs(2))?;
            let micros = t.elapsed().as_secs_f64() * 1e6;
            drop(stream);
            writeln!(out, "{addr} {micros:.1}")?;
        }
    }
    Ok(())
}

// ---- API objects ----

/// Service `i` of the load: ClusterIP 10.43.0.16 + i, endpoints 10.42.1.0 + 5i .. (no pods).
async fn load_one(
    services: &Api<Service>,
    slices: &Api<EndpointSlice>,
    i: u32,
) -> kube::Result<()> {
    let pp = PostParams::default();
    let name = format!("svc-{i}");
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 0, 16)) + i);
    let eps: Vec<Ipv4Addr> = (0..5)
        .map(|e| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 1, 0)) + i * 5 + e))
        .collect();
    services
        .create(&pp, &service(&name, &vip.to_string(), "TCP", 80, 8080))
        .await?;
    slices.create(&pp, &slice(&name, "TCP", 8080, &eps)).await?;
    Ok(())
}

// ---- the benchmark ----

struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
        v.get(i).copied().unwrap_or(f64::NAN)
    };
    Stats {
        n: v.len(),
        p50: at(0.5),
        p99: at(0.99),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

/// The prober in the node namespace: commands in, `(arrival, line)` out.
struct Prober {
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<(Instant, String)>,
}

impl Prober {
    fn start(lab: &mut Lab, node: &str) -> Result<Prober, BoxError> {
        let mut cmd = self_in(node, &["probe"])?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let child = lab.spawn(cmd)?;
        let stdin = child.stdin.take().ok_or("probe stdin")?;
        let stdout = child.stdout.take().ok_or("probe stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Ok(Prober { stdin, lines })
    }

    fn expect(&mut self, vip: &str, reply: &str) -> Result<(), BoxError> {
        writeln!(self.stdin, "{vip}:80 {reply}")?;
        Ok(self.stdin.flush()?)
    }

    async fn done(&mut self) -> Result<Instant, BoxError> {
        match self.lines.recv().await {
            Some((at, line)) if line == "ok" => Ok(at),
            other => Err(format!("prober: {other:?}").into()),
        }
    }
}

async fn bench(n: u32, changes: usize, gap_ms: u64) -> Result<(), BoxError> {
    netguard::ensure()?;
    let mut lab = Lab::new("proxy-lat");
    let node = lab.node()?;
    let pod1 = lab.pod(&node, POD1)?;
    let pod2 = lab.pod(&node, POD2)?;
    let client_ns = lab.pod(&node, CLIENT)?.ns;
    // The node's route for the Service range (its default route on a real node) stays inside.
    lab.route(&node, "10.43.0.0/16", &pod1.veth)?;
    lab.spawn(quiet(self_in(&pod1.ns, &["serve", "pod1"])?))?;
    lab.spawn(quiet(self_in(&pod2.ns, &["serve", "pod2"])?))?;

    let api = ApiServer::start().await;
    let (client, services, slices) = (api.client(), &api.services, &api.slices);
    let pp = PostParams::default();
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| load_one(services, slices, i))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    services
        .create(&pp, &service("probe", PROBE_VIP, "TCP", 80, 8080))
        .await?;
    let probe = slice("probe", "TCP", 8080, &[POD1]);
    let mut probe_slice = slices.create(&pp, &probe).await?;
    services
        .create(&pp, &service("web", WEB_VIP, "TCP", 80, 8080))
        .await?;
    slices
        .create(&pp, &slice("web", "TCP", 8080, &[POD1, POD2]))
        .await?;
    eprintln!(
        "loaded {n} Services with 5 endpoints each in {:.1?}",
        t.elapsed()
    );

    let mut config = proxy_config(&node, Duration::from_secs(1));
    let mut prober = Prober::start(&mut lab, &node)?;
    let mut programming = Vec::new();
    let mut current = "pod1";
    for msp in [1000u64, 100, 0] {
        config.min_sync_period = Duration::from_millis(msp);
        let proxy = start_proxy(client.clone(), config.clone());
        let t = Instant::now();
        prober.expect(PROBE_VIP, current)?;
        prober.done().await?;
        eprintln!(
            "min_sync_period {msp} ms: first sync live after {:.1?}",
            t.elapsed()
        );
        let mut samples = Vec::with_capacity(changes);
        for _ in 0..changes {
            tokio::time::sleep(Duration::from_millis(gap_ms)).await;
            let (next, ip) = if current == "pod1" {
                ("pod2", POD2)
            } else {
                ("pod1", POD1)
            };
            prober.expect(PROBE_VIP, next)?;
            let mut s = slice("probe", "TCP", 8080, &[ip]);
            s.metadata.resource_version = probe_slice.metadata.resource_version.clone();
            let written = Instant::now();
            probe_slice = slices.replace("probe-1", &pp, &s).await?;
            let live = prober.done().await?;
            samples.push(live.duration_since(written).as_secs_f64() * 1000.0);
            current = next;
        }
        programming.push((msp, stats(samples)));
        if msp != 0 {
            proxy.cancel();
            tokio::time::sleep(Duration::from_millis(300)).await;
        } else {
            // Keep the last proxy running for the first-packet measurement.
            first_packet(&client_ns, n, &programming, changes, gap_ms).await?;
            proxy.cancel();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    k8rs_proxy::cleanup(&config)?;
    Ok(())
}

async fn first_packet(
    client_ns: &str,
    n: u32,
    programming: &[(u64, Stats)],
    changes: usize,
    gap_ms: u64,
) -> Result<(), BoxError> {
    let vip = format!("{WEB_VIP}:80");
    let direct = format!("{POD1}:8080");
    let out = self_in(client_ns, &["connect", "200", &vip, &direct])?.output()?;
    if !out.status.success() {
        return Err(format!("connect: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut by_addr: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((addr, micros)) = line.split_once(' ')
            && let Ok(m) = micros.parse::<f64>()
        {
            by_addr
                .entry(addr.to_string())
                .or_default()
                .push(m / 1000.0);
        }
    }
    println!(
        "\n{n} Services x 5 endpoints; {changes} endpoint changes per setting, {gap_ms} ms apart\n"
    );
    println!("| network programming latency | changes | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (msp, s) in programming {
        println!(
            "| min_sync_period {msp} ms | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            s.n, s.p50, s.p99, s.max
        );
    }
    println!("\n| first-packet latency (TCP connect, client pod) | connections | p50 | p99 |");
    println!("|---|---|---|---|");
    let via = stats(by_addr.remove(&vip).unwrap_or_default());
    let straight = stats(by_addr.remove(&direct).unwrap_or_default());
    for (what, s) in [
        ("through the ClusterIP", &via),
        ("straight to the pod IP", &straight),
    ] {
        println!("| {what} | {} | {:.3} ms | {:.3} ms |", s.n, s.p50, s.p99);
    }
    println!(
        "| difference | | {:+.3} ms | {:+.3} ms |",
        via.p50 - straight.p50,
        via.p99 - straight.p99
    );
    Ok(())
}
