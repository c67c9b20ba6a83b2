//! Percentiles, per-pair ratios and the phase breakdown of a pod's startup, from the timed
//! CRI calls and the watcher's timestamps.

use std::time::{Duration, Instant};

use super::k8rs::Sample;
use super::timed::{Call, Op};

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn between(a: Instant, b: Instant) -> f64 {
    ms(b.saturating_duration_since(a))
}

/// The `q` quantile (nearest rank) of `v`.
pub fn pct(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let i = ((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
    s.get(i).copied().unwrap_or(f64::NAN)
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

pub fn rounded(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.round() as u64).collect()
}

/// One row of the latency table.
pub fn latency_row(what: &str, bare: &[f64], k8rs: &[f64], ratios: &[f64]) {
    println!(
        "| {what} | {} | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:+.1}% | {:+.1}% | {:+.1}% .. {:+.1}% |",
        ratios.len(),
        pct(bare, 0.5),
        pct(bare, 0.99),
        pct(k8rs, 0.5),
        pct(k8rs, 0.99),
        (pct(ratios, 0.5) - 1.0) * 100.0,
        (pct(ratios, 0.9) - 1.0) * 100.0,
        (pct(ratios, 0.0) - 1.0) * 100.0,
        (pct(ratios, 1.0) - 1.0) * 100.0,
    );
}

/// The phases of one pod's startup, in milliseconds, in order; they add up to its latency.
pub type Phases = Vec<(&'static str, f64)>;

/// One pod's startup split into phases, and the time spent inside the five CRI calls both
/// sides make (RunPodSandbox, PodSandboxStatus, ImageStatus, CreateContainer, StartContainer).
pub struct Breakdown {
    pub phases: Phases,
    pub shared_cri: f64,
}

impl Breakdown {
    fn new(phases: Phases, shared: [&Call; 5]) -> Breakdown {
        let shared_cri = shared.iter().map(|c| between(c.start, c.end)).sum();
        Breakdown { phases, shared_cri }
    }

    pub fn total(&self) -> f64 {
        self.phases.iter().map(|p| p.1).sum()
    }

    /// The time outside the CRI calls both sides make: the side's own work.
    pub fn own(&self) -> f64 {
        self.total() - self.shared_cri
    }
}

fn of(calls: &[Call], uid: &str) -> Vec<Call> {
    let mut v: Vec<Call> = calls
        .iter()
        .filter(|c| c.uid.as_deref() == Some(uid))
        .cloned()
        .collect();
    v.sort_by_key(|c| c.start);
    v
}

fn first(calls: &[Call], op: Op, after: Instant) -> Option<&Call> {
    calls.iter().find(|c| c.op == op && c.start >= after)
}

/// A k8rs pod's phases, from its timings and the kubelet's CRI calls (one pod in flight).
pub fn k8rs_phases(s: &Sample, calls: &[Call]) -> Option<Breakdown> {
    let mine = of(calls, &s.uid);
    let t1 = mine.first()?.start;
    let run = first(&mine, Op::RunSandbox, t1)?;
    let read = mine
        .iter()
        .filter(|c| c.end <= run.start)
        .map(|c| c.end)
        .max()?;
    let status = first(&mine, Op::SandboxStatus, run.end)?;
    let image = first(calls, Op::ImageStatus, status.end)?;
    let create = first(&mine, Op::CreateContainer, image.end)?;
    let start = first(&mine, Op::StartContainer, create.end)?;
    let post = mine
        .iter()
        .filter(|c| c.end <= s.running && c.start >= start.end)
        .map(|c| c.end)
        .max()?;
    let phases = vec![
        (
            "API create (POST until it returns)",
            between(s.t0, s.created),
        ),
        (
            "watch delivery + worker start, to the first CRI call",
            between(s.created, t1),
        ),
        ("runtime read before the sync (List*)", between(t1, read)),
        (
            "volumes (TokenRequest, ConfigMap), cgroup, dirs",
            between(read, run.start),
        ),
        ("RunPodSandbox", between(run.start, run.end)),
        ("PodSandboxStatus (pod IP)", between(run.end, status.end)),
        ("ImageStatus", between(status.end, image.end)),
        (
            "API reads for env (Services), files, config",
            between(image.end, create.start),
        ),
        ("CreateContainer", between(create.start, create.end)),
        ("StartContainer", between(create.end, start.end)),
        ("runtime read after the start", between(start.end, post)),
        (
            "status PATCH + watch delivery to the watcher",
            between(post, s.running),
        ),
    ];
    Some(Breakdown::new(phases, [run, status, image, create, start]))
}

/// A bare pod's phases, from its start instant and the bare side's CRI calls.
pub fn bare_phases(t0: Instant, end: Instant, uid: &str, calls: &[Call]) -> Option<Breakdown> {
    let mine = of(calls, uid);
    let run = first(&mine, Op::RunSandbox, t0)?;
    let status = first(&mine, Op::SandboxStatus, run.end)?;
    let image = first(calls, Op::ImageStatus, status.end)?;
    let create = first(&mine, Op::CreateContainer, image.end)?;
    let start = first(&mine, Op::StartContainer, create.end)?;
    let phases = vec![
        ("cgroup, log dir", between(t0, run.start)),
        ("RunPodSandbox", between(run.start, run.end)),
        ("PodSandboxStatus (pod IP)", between(run.end, status.end)),
        ("ImageStatus", between(status.end, image.end)),
        ("message file, log dir", between(image.end, create.start)),
        ("CreateContainer", between(create.start, create.end)),
        ("StartContainer", between(create.end, start.end)),
        ("ContainerStatus until Running", between(start.end, end)),
    ];
    Some(Breakdown::new(phases, [run, status, image, create, start]))
}

/// Prints the median and mean of each phase over `all`.
pub fn phase_table(title: &str, all: &[Breakdown]) {
    let Some(names) = all.first().map(|b| &b.phases) else {
        println!("{title}: no complete samples");
        return;
    };
    println!("\n{title} ({} pods):\n", all.len());
    println!("| phase | median | mean |");
    println!("|---|---|---|");
    let mut total = Vec::new();
    for (i, (name, _)) in names.iter().enumerate() {
        let v: Vec<f64> = all
            .iter()
            .filter_map(|b| b.phases.get(i).map(|x| x.1))
            .collect();
        println!("| {name} | {:.1} ms | {:.1} ms |", pct(&v, 0.5), mean(&v));
    }
    for b in all {
        total.push(b.total());
    }
    println!(
        "| **total** | {:.1} ms | {:.1} ms |",
        pct(&total, 0.5),
        mean(&total)
    );
}

/// The overhead estimated from the phases: k8rs's own time (outside the CRI calls both sides
/// make) minus the bare side's, over the bare side's median latency.
pub fn own_time(what: &str, k: &[Breakdown], b: &[Breakdown]) {
    let kown: Vec<f64> = k.iter().map(Breakdown::own).collect();
    let bown: Vec<f64> = b.iter().map(Breakdown::own).collect();
    let kcri: Vec<f64> = k.iter().map(|x| x.shared_cri).collect();
    let bcri: Vec<f64> = b.iter().map(|x| x.shared_cri).collect();
    let btotal: Vec<f64> = b.iter().map(Breakdown::total).collect();
    println!("\n| {what} | k8rs | bare CRI |");
    println!("|---|---|---|");
    println!(
        "| in the 5 shared CRI calls, median / p90 | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
        pct(&kcri, 0.5),
        pct(&kcri, 0.9),
        pct(&bcri, 0.5),
        pct(&bcri, 0.9)
    );
    println!(
        "| outside them (own work), median / p90 | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
        pct(&kown, 0.5),
        pct(&kown, 0.9),
        pct(&bown, 0.5),
        pct(&bown, 0.9)
    );
    let extra = pct(&kown, 0.5) - pct(&bown, 0.5);
    println!(
        "\n{what}: k8rs's own work beyond the bare side's: {extra:.1} ms per pod (medians), \
         {:+.1}% of the bare median latency ({:.1} ms)",
        extra / pct(&btotal, 0.5) * 100.0,
        pct(&btotal, 0.5)
    );
}
