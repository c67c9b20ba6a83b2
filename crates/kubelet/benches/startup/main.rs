//! Pod startup latency through k8rs beside the same pods started with bare CRI calls, in the
//! same run and interleaved, so that both sides see the same machine state; plus the phases of
//! a k8rs pod's startup, node Ready time, and the process's RSS and CPU with 20 running pods.
//!
//! Run: `cargo bench -p k8rs-kubelet --bench startup` (root; containerd, runc, CNI plugins,
//! umoci and skopeo installed). Prints a markdown report on stdout. No traffic leaves the
//! process but loopback (API server) and the unix socket of a containerd of its own; the pods
//! sit on that containerd's bridge `k8rst31` (10.42.31.0/24) and send nothing.
//!
//! **k8rs side**, timed from the start of the API `create` call until the bench's own watcher
//! of the namespace sees `phase: Running`: the API write and admission (service-account
//! volume), watch delivery to the kubelet, its pod worker (runtime read, volumes with a
//! TokenRequest, pod cgroup, RunPodSandbox, PodSandboxStatus, ImageStatus, API reads for the
//! environment, CreateContainer, StartContainer, runtime read), the status PATCH and watch
//! delivery back. The kubelet runs with upstream's defaults (relist 1 s, status update 10 s).
//! It and the watcher use the in-process API client (no TLS or HTTP), so a kubelet on another
//! machine also pays the network round trips of its four API calls on the path (TokenRequest,
//! ConfigMap, Services list, status PATCH). Everything shares one 2-thread tokio runtime.
//!
//! **Bare side**, timed from the first step until ContainerStatus says Running: the node-local
//! work a kubelet must do for the same pod, with the same CRI configurations the kubelet sends
//! (rebuilt with the kubelet's own `spec` functions and checked equal for a warm-up pod; see
//! `bare.rs`): pod cgroup and log directory, RunPodSandbox (same CNI network), PodSandboxStatus,
//! ImageStatus, termination-message file, CreateContainer, StartContainer, then ContainerStatus
//! right away and every 5 ms until Running (the kubelet reads the runtime right after its
//! start calls, in the same sync, so that is the cadence it effectively has).
//!
//! **Interleaving**: one at a time, `PAIRS` pairs, alternately k8rs-then-bare and
//! bare-then-k8rs; each pod is torn down (and the teardown waited for) before the next starts.
//! Bursts: `BURSTS` pairs of `BURST` pods created at once, alternating the same way. The
//! overhead is reported per pair (k8rs / bare), as the median and p90 of those ratios.
//!
//! **Where the time goes**: both sides' CRI clients record each call's start and end (see
//! `timed.rs`; the kubelet runs over that client through `run_with_cri`), which splits each
//! pod's latency into phases. The five calls both sides make (RunPodSandbox, PodSandboxStatus,
//! ImageStatus, CreateContainer, StartContainer) vary by tens of percent from pod to pod; the
//! rest is each side's own work, and k8rs's own work minus the bare side's, over the bare
//! median, is a second, much less noisy estimate of the overhead. The CPU this process (API
//! server, kubelet, bench) uses during each burst is printed beside it.

#[path = "../../tests/common/mod.rs"]
mod common;

mod bare;
mod k8rs;
mod report;
mod timed;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8rs_kubelet::cri::Cri;
use k8rs_kubelet::pods::spec::ImageUser;

use bare::Plan;
use k8rs::{K8rs, Sample};
use report::{ms, pct, rounded};
use timed::Timed;

const NET: u8 = 31;
const PAIRS: usize = 100;
const BURST: usize = 20;
/// Pairs of bursts (even, so that each order comes first equally often).
const BURSTS: usize = 10;
const IDLE: Duration = Duration::from_secs(20);
/// Left after each teardown for the runtime's and the kubelet's asynchronous leftovers.
const SETTLE: Duration = Duration::from_millis(100);

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench())
}

/// A bare pod's timings: started, Running, UID.
type BareSample = (Instant, Instant, String);

struct Bench {
    k: K8rs,
    plan: Plan,
    bare: Timed,
    kubelet: Timed,
}

impl Bench {
    async fn k8rs_one(&self, name: &str) -> anyhow::Result<Sample> {
        let s = self.k.start(name).await?;
        self.k.remove(&[(name.to_string(), s.clone())]).await?;
        tokio::time::sleep(SETTLE).await;
        Ok(s)
    }

    async fn bare_one(&self, name: &str) -> anyhow::Result<BareSample> {
        let t0 = Instant::now();
        let p = self.plan.start(&self.bare, name).await?;
        let end = Instant::now();
        self.plan.remove(&self.bare, &p).await?;
        tokio::time::sleep(SETTLE).await;
        Ok((t0, end, p.uid))
    }

    /// `BURST` k8rs pods at once; removed unless `keep`.
    async fn k8rs_burst(&self, b: usize, keep: bool) -> anyhow::Result<Vec<Sample>> {
        let names: Vec<String> = (0..BURST).map(|i| format!("k-burst-{b}-{i}")).collect();
        let runs = names.iter().map(|n| self.k.start(n));
        let samples: Vec<Sample> = futures::future::try_join_all(runs).await?;
        if !keep {
            let named: Vec<(String, Sample)> = names.into_iter().zip(samples.clone()).collect();
            self.k.remove(&named).await?;
            tokio::time::sleep(SETTLE).await;
        }
        Ok(samples)
    }

    async fn bare_burst(&self, b: usize) -> anyhow::Result<Vec<BareSample>> {
        let runs = (0..BURST).map(|i| async move {
            let t0 = Instant::now();
            let p = self
                .plan
                .start(&self.bare, &format!("b-burst-{b}-{i}"))
                .await?;
            anyhow::Ok((t0, Instant::now(), p))
        });
        let started = futures::future::try_join_all(runs).await?;
        let removes = started
            .iter()
            .map(|(_, _, p)| self.plan.remove(&self.bare, p));
        futures::future::try_join_all(removes).await?;
        tokio::time::sleep(SETTLE).await;
        Ok(started
            .into_iter()
            .map(|(t0, end, p)| (t0, end, p.uid))
            .collect())
    }
}

fn kubelet_config(containerd: &common::Containerd) -> anyhow::Result<k8rs_kubelet::KubeletConfig> {
    let mut config = k8rs_kubelet::KubeletConfig::new(
        format!("node-{NET}"),
        "127.0.0.1".parse()?,
        &containerd.socket,
        containerd.dir.path().join("kubelet"),
    );
    config.cgroup_root = format!("/k8rs-bench-{NET}");
    config.pinned_images = vec![common::PAUSE.to_string()];
    config.eviction = false;
    config.image_gc_high_percent = 100;
    config.server_port = 0;
    Ok(config)
}

/// Starts a warm-up k8rs pod, builds the bare side's plan from what the kubelet sent for it,
/// starts one bare pod, and removes both.
async fn warm_up(
    k: &K8rs,
    kubelet: &Timed,
    bare: &Timed,
    node: &common::Node,
) -> anyhow::Result<Plan> {
    let s = k.start("warm").await?;
    let stored = k.pods.get("warm").await?;
    let (sandbox, container) = kubelet.configs(&s.uid);
    let (Some(sandbox), Some(container)) = (sandbox, container) else {
        anyhow::bail!("the kubelet's configurations for the warm-up pod were not recorded");
    };
    let image = bare
        .image_status(common::IMAGE)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no image {}", common::IMAGE))?;
    let user = ImageUser {
        uid: image.uid.as_ref().map(|u| u.value),
        username: image.username.clone(),
    };
    let dir = node.containerd.dir.path().join("bare");
    let plan = Plan::new(stored, (&sandbox, &container), &node.config, user, &dir)?;
    k.remove(&[("warm".to_string(), s)]).await?;
    let p = plan.start(bare, "bare-warm").await?;
    plan.remove(bare, &p).await?;
    bare.stop_capture();
    kubelet.take_calls();
    bare.take_calls();
    Ok(plan)
}

struct OneAtATime {
    k: Vec<Sample>,
    b: Vec<BareSample>,
}

async fn one_at_a_time(b: &Bench) -> anyhow::Result<OneAtATime> {
    let mut out = OneAtATime {
        k: Vec::new(),
        b: Vec::new(),
    };
    for i in 0..PAIRS {
        let (kn, bn) = (format!("k-seq-{i}"), format!("b-seq-{i}"));
        if i % 2 == 0 {
            out.k.push(b.k8rs_one(&kn).await?);
            out.b.push(b.bare_one(&bn).await?);
        } else {
            out.b.push(b.bare_one(&bn).await?);
            out.k.push(b.k8rs_one(&kn).await?);
        }
    }
    Ok(out)
}

struct Bursts {
    k: Vec<Vec<Sample>>,
    b: Vec<Vec<BareSample>>,
    /// CPU ticks this process (API server, kubelet, bench) used during each burst.
    k_ticks: Vec<u64>,
    b_ticks: Vec<u64>,
}

/// Alternating bursts.
async fn bursts(b: &Bench) -> anyhow::Result<Bursts> {
    let mut out = Bursts {
        k: Vec::new(),
        b: Vec::new(),
        k_ticks: Vec::new(),
        b_ticks: Vec::new(),
    };
    for i in 0..BURSTS {
        for k_side in [i % 2 == 1, i % 2 == 0] {
            let t = cpu_ticks()?;
            if k_side {
                out.k.push(b.k8rs_burst(i, false).await?);
                out.k_ticks.push(cpu_ticks()?.saturating_sub(t));
            } else {
                out.b.push(b.bare_burst(i).await?);
                out.b_ticks.push(cpu_ticks()?.saturating_sub(t));
            }
        }
    }
    Ok(out)
}

async fn bench() -> anyhow::Result<()> {
    let bench_start = Instant::now();
    let containerd = common::Containerd::start(NET).await?;
    let server = k8rs_testing::TestServer::start().await;
    common::cluster_defaults(&server).await?;
    let config = kubelet_config(&containerd)?;
    let kubelet = Timed::new(containerd.cri()?);
    let bare = Timed::new(containerd.cri()?);
    let client = server.client();
    let k = K8rs::new(client.clone(), &config.node_name, containerd.cri()?);
    let rss_before = status_kib("VmRSS");

    let started = Instant::now();
    let token = server.shutdown_token();
    let (c, cfg, t, cri) = (
        client.clone(),
        config.clone(),
        token.clone(),
        kubelet.clone(),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = k8rs_kubelet::run_with_cri(c, cfg, Arc::new(cri), t).await {
            panic!("kubelet stopped: {e}");
        }
    });
    let node = common::Node {
        server,
        containerd,
        config,
        kubelet: Some((token, task)),
    };
    k8rs::wait_node_ready(&client, &node.config.node_name).await?;
    let ready = started.elapsed();

    let plan = warm_up(&k, &kubelet, &bare, &node).await?;
    let b = Bench {
        k,
        plan,
        bare,
        kubelet,
    };
    let t = Instant::now();
    let seq = one_at_a_time(&b).await?;
    let seq_time = t.elapsed();
    let kp = k8rs_phases(&seq.k, &b.kubelet.take_calls());
    let bp = bare_phases(&seq.b, &b.bare.take_calls());
    let t = Instant::now();
    let burst = bursts(&b).await?;
    let burst_time = t.elapsed();
    let kbp = k8rs_phases(burst.k.iter().flatten(), &b.kubelet.take_calls());
    let bbp = bare_phases(burst.b.iter().flatten(), &b.bare.take_calls());

    // Idle with a burst of k8rs pods running (not counted above).
    let rss_after = status_kib("VmRSS");
    b.k8rs_burst(BURSTS, true).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_start = status_kib("VmRSS");
    let cpu0 = cpu_ticks()?;
    tokio::time::sleep(IDLE).await;
    let ticks = cpu_ticks()?.saturating_sub(cpu0);
    let rss_end = status_kib("VmRSS");
    let hz = clock_ticks();
    let cpu_pct = ticks as f64 / hz / IDLE.as_secs_f64() * 100.0;
    let running = b.bare.list_pod_sandboxes(HashMap::new()).await?;
    let running = running.iter().filter(|s| !bare::is_bare(&s.labels)).count();

    print_latencies(&seq, &burst);
    report::phase_table("k8rs pod, one at a time, by phase", &kp);
    report::phase_table("bare CRI pod, one at a time, by phase", &bp);
    report::own_time("one at a time", &kp, &bp);
    report::phase_table(
        &format!("k8rs pods, {BURST} at once, by phase (ImageStatus split approximate)"),
        &kbp,
    );
    report::phase_table(
        &format!("bare CRI pods, {BURST} at once, by phase (ImageStatus split approximate)"),
        &bbp,
    );
    report::own_time(&format!("{BURST} at once"), &kbp, &bbp);
    let delivery: Vec<f64> = seq
        .k
        .iter()
        .map(|s| ms(s.added.saturating_duration_since(s.created)))
        .collect();
    println!(
        "\n(The new pod reached the bench's watcher {:.1} ms (median) after the create call \
         returned; the kubelet's watch is served by the same server.)",
        pct(&delivery, 0.5)
    );
    println!();
    println!("node Ready after kubelet start: {:.0} ms", ms(ready));
    println!(
        "process RSS: {} MiB before the kubelet started (API server, containerd client, watcher), \
         {} MiB at the start and {} MiB at the end of a {}s idle window with {running} running pods \
         (peak {} MiB)",
        mib(rss_before),
        mib(rss_start),
        mib(rss_end),
        IDLE.as_secs(),
        mib(status_kib("VmHWM")),
    );
    println!(
        "process RSS after the measured pods were all removed: {} MiB ({} k8rs and as many bare \
         pods created and removed)",
        mib(rss_after),
        1 + PAIRS + BURSTS * BURST,
    );
    println!(
        "process CPU over the idle window: {cpu_pct:.1}% of one core ({ticks} ticks at {hz} Hz)"
    );
    println!(
        "bench wall time: {:.0} s (one at a time {:.0} s, bursts {:.0} s)",
        bench_start.elapsed().as_secs_f64(),
        seq_time.as_secs_f64(),
        burst_time.as_secs_f64()
    );
    drop(b);
    drop(node);
    Ok(())
}

fn k8rs_phases<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    calls: &[timed::Call],
) -> Vec<report::Breakdown> {
    samples
        .into_iter()
        .filter_map(|s| report::k8rs_phases(s, calls))
        .collect()
}

fn bare_phases<'a>(
    samples: impl IntoIterator<Item = &'a BareSample>,
    calls: &[timed::Call],
) -> Vec<report::Breakdown> {
    samples
        .into_iter()
        .filter_map(|(t0, end, uid)| report::bare_phases(*t0, *end, uid, calls))
        .collect()
}

fn bare_ms(s: &BareSample) -> f64 {
    ms(s.1.saturating_duration_since(s.0))
}

fn print_latencies(seq: &OneAtATime, burst: &Bursts) {
    let kseq: Vec<f64> = seq.k.iter().map(|s| ms(s.latency())).collect();
    let bseq: Vec<f64> = seq.b.iter().map(bare_ms).collect();
    let ratios: Vec<f64> = kseq.iter().zip(&bseq).map(|(k, b)| k / b).collect();
    let kb: Vec<Vec<f64>> = burst
        .k
        .iter()
        .map(|v| v.iter().map(|s| ms(s.latency())).collect())
        .collect();
    let bb: Vec<Vec<f64>> = burst
        .b
        .iter()
        .map(|v| v.iter().map(bare_ms).collect())
        .collect();
    let kall: Vec<f64> = kb.iter().flatten().copied().collect();
    let ball: Vec<f64> = bb.iter().flatten().copied().collect();
    let per = |q: f64| -> Vec<f64> {
        kb.iter()
            .zip(&bb)
            .map(|(k, b)| pct(k, q) / pct(b, q))
            .collect()
    };
    println!("## Pod startup on containerd (issue 5)\n");
    println!(
        "| run | pairs | bare CRI p50 / p99 | k8rs p50 / p99 | overhead, median pair | overhead, p90 pair | overhead, pair range |"
    );
    println!("|---|---|---|---|---|---|---|");
    report::latency_row("one at a time", &bseq, &kseq, &ratios);
    report::latency_row(
        &format!("{BURST} at once, burst p50"),
        &ball,
        &kall,
        &per(0.5),
    );
    report::latency_row(
        &format!("{BURST} at once, burst last pod"),
        &ball,
        &kall,
        &per(1.0),
    );
    println!(
        "\n(A pair's overhead is k8rs / bare - 1. Burst rows: p50 / p99 over all pods of a side.)"
    );
    println!("k8rs raw ms one at a time: {:?}", rounded(&kseq));
    println!("bare raw ms one at a time: {:?}", rounded(&bseq));
    for (i, (k, b)) in kb.iter().zip(&bb).enumerate() {
        println!(
            "burst pair {i}: k8rs p50 {:.0} max {:.0} ms, {} CPU ticks; bare p50 {:.0} max {:.0} ms, \
             {} CPU ticks",
            pct(k, 0.5),
            pct(k, 1.0),
            burst.k_ticks.get(i).copied().unwrap_or(0),
            pct(b, 0.5),
            pct(b, 1.0),
            burst.b_ticks.get(i).copied().unwrap_or(0),
        );
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/stat")?;
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat; `rest` starts at field 3.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(get(14) + get(15))
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
