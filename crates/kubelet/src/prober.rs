//! Probes (liveness, readiness, startup) and lifecycle hooks, as upstream's prober: exec
//! through the CRI's ExecSync, httpGet, tcpSocket and gRPC health checks, each with its initial
//! delay, period, timeout and thresholds. One task per container and probe kind; results are
//! shared with the pod worker, which is woken when one changes.

mod handlers;
mod tls;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use handlers::{Target, run_handler, run_probe};

use crate::cri::Cri;
use crate::pods::actions::ProbeView;
use crate::pods::runtime::{RuntimePod, State};

/// The three kinds of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// A probe's current verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

type Results = HashMap<(String, Kind), Outcome>;

/// The probe workers of one pod.
pub struct Prober {
    cri: Arc<dyn Cri>,
    tasks: HashMap<(String, Kind), JoinHandle<()>>,
    results: Arc<Mutex<Results>>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.abort();
        }
    }
}

fn probe_of(c: &Container, kind: Kind) -> Option<&Probe> {
    match kind {
        Kind::Liveness => c.liveness_probe.as_ref(),
        Kind::Readiness => c.readiness_probe.as_ref(),
        Kind::Startup => c.startup_probe.as_ref(),
    }
}

fn all_containers(pod: &Pod) -> Vec<Container> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut all = spec.init_containers.clone().unwrap_or_default();
    all.extend(spec.containers.iter().cloned());
    all
}

/// What the probes say about `rt`'s running containers: containers without a probe count as
/// started and ready once running.
pub fn view(pod: &Pod, rt: &RuntimePod, results: &Results) -> ProbeView {
    let mut v = ProbeView::default();
    let containers = all_containers(pod);
    for rc in rt.containers.iter().filter(|c| c.state == State::Running) {
        let Some(spec) = containers.iter().find(|c| c.name == rc.name) else {
            continue;
        };
        let get = |k| results.get(&(rc.id.clone(), k)).copied();
        let started = match spec.startup_probe {
            None => true,
            Some(_) => get(Kind::Startup) == Some(Outcome::Success),
        };
        if started {
            v.started.insert(rc.id.clone());
        }
        if get(Kind::Startup) == Some(Outcome::Failure) {
            v.startup_failed.insert(rc.id.clone());
        }
        if get(Kind::Liveness) == Some(Outcome::Failure) {
            v.liveness_failed.insert(rc.id.clone());
        }
        let ready = match spec.readiness_probe {
            None => started,
            Some(_) => started && get(Kind::Readiness) == Some(Outcome::Success),
        };
        if ready {
            v.ready.insert(rc.id.clone());
        }
    }
    v
}

impl Prober {
    pub fn new(cri: Arc<dyn Cri>) -> Prober {
        Prober {
            cri,
            tasks: HashMap::new(),
            results: Arc::new(Mutex::new(HashMap::new())),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Notified when a probe result changes.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The current view over `rt`.
    pub fn view(&self, pod: &Pod, rt: &RuntimePod) -> ProbeView {
        let results = self.results.lock().map(|r| r.clone()).unwrap_or_default();
        view(pod, rt, &results)
    }

    /// Starts probe workers for running containers and stops those of containers gone.
    pub fn sync(&mut self, pod: &Pod, rt: &RuntimePod, pod_ip: &str) {
        let containers = all_containers(pod);
        let mut wanted = HashSet::new();
        for rc in rt.containers.iter().filter(|c| c.state == State::Running) {
            let Some(spec) = containers.iter().find(|c| c.name == rc.name) else {
                continue;
            };
            for kind in [Kind::Liveness, Kind::Readiness, Kind::Startup] {
                let Some(probe) = probe_of(spec, kind) else {
                    continue;
                };
                let key = (rc.id.clone(), kind);
                wanted.insert(key.clone());
                if self.tasks.contains_key(&key) {
                    continue;
                }
                let worker = Worker {
                    cri: self.cri.clone(),
                    kind,
                    probe: probe.clone(),
                    has_startup: spec.startup_probe.is_some(),
                    target: Target {
                        container_id: rc.id.clone(),
                        pod_ip: pod_ip.to_string(),
                        container: spec.clone(),
                    },
                    started_at: DateTime::from_timestamp_nanos(rc.started_at),
                    results: self.results.clone(),
                    changed: self.changed.clone(),
                };
                self.tasks.insert(key, tokio::spawn(worker.run()));
            }
        }
        self.tasks.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        if let Ok(mut r) = self.results.lock() {
            r.retain(|key, _| wanted.contains(key));
        }
    }
}

struct Worker {
    cri: Arc<dyn Cri>,
    kind: Kind,
    probe: Probe,
    has_startup: bool,
    target: Target,
    started_at: DateTime<Utc>,
    results: Arc<Mutex<Results>>,
    changed: Arc<Notify>,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(1)).unwrap_or(1))
}

impl Worker {
    fn get(&self, kind: Kind) -> Option<Outcome> {
        let key = (self.target.container_id.clone(), kind);
        self.results.lock().ok()?.get(&key).copied()
    }

    fn set(&self, outcome: Outcome) {
        let key = (self.target.container_id.clone(), self.kind);
        let changed = match self.results.lock() {
            Ok(mut r) => r.insert(key, outcome) != Some(outcome),
            Err(_) => false,
        };
        if changed {
            self.changed.notify_one();
        }
    }

    async fn run(self) {
        let period = secs(self.probe.period_seconds, 10);
        let timeout = secs(self.probe.timeout_seconds, 1);
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        let initial = i64::from(self.probe.initial_delay_seconds.unwrap_or(0));
        if self.kind == Kind::Liveness {
            self.set(Outcome::Success);
        }
        let (mut last, mut run) = (None, 0);
        loop {
            let waited = (Utc::now() - self.started_at).num_seconds();
            let gated = self.kind != Kind::Startup
                && self.has_startup
                && self.get(Kind::Startup) != Some(Outcome::Success);
            if waited >= initial && !gated {
                let ok = run_probe(self.cri.as_ref(), &self.probe, &self.target, timeout).await;
                let outcome = if ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                };
                run = if last == Some(outcome) { run + 1 } else { 1 };
                last = Some(outcome);
                let threshold = match outcome {
                    Outcome::Success => success_threshold,
                    Outcome::Failure => failure_threshold,
                };
                if run >= threshold {
                    self.set(outcome);
                    let done = match self.kind {
                        Kind::Startup => true,
                        Kind::Liveness => outcome == Outcome::Failure,
                        Kind::Readiness => false,
                    };
                    if done {
                        return;
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }
}

#[cfg(test)]
mod tests;
