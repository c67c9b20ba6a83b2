//! One pod's worker (upstream's pod worker): a task that syncs its pod whenever the pod
//! changes, a probe result changes, or the relist period passes, until the pod is gone.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::actions::{self, PodActions, backoff_key};
use super::exec::{self, StartError, grace_period};
use super::runtime::{self, RuntimePod};
use super::services::Services;
use super::spec::{self, HostDns};
use super::status::{self, StatusInput};
use crate::KubeletConfig;
use crate::backoff::Backoff;
use crate::cri::Cri;
use crate::events::Events;
use crate::prober::Prober;

/// The grace period for pods that vanished from the API without one.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// What a sync leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep the worker.
    Continue,
    /// The pod is gone and cleaned up: stop the worker.
    Done,
}

/// One pod's worker state.
pub struct Worker {
    pub(super) client: kube::Client,
    pub(super) config: Arc<KubeletConfig>,
    pub(super) cri: Arc<dyn Cri>,
    pub(super) uid: String,
    pub(super) runtime_name: String,
    pub(super) backoff: Backoff,
    pub(super) image_backoff: Backoff,
    pub(super) prober: Prober,
    pub(super) stopped_sandboxes: HashSet<String>,
    pub(super) messages: HashMap<String, String>,
    pub(super) last_written: Option<PodStatus>,
    /// The last pod seen from the API; `None` once it is gone.
    pub(super) pod: Option<Pod>,
    pub(super) events: Events,
    /// Waiting reasons of the last sync, so that events are sent on changes only.
    last_reasons: HashMap<String, String>,
    /// The last pod seen, kept after it is gone (for its grace period and hooks).
    last_pod: Option<Pod>,
    /// The pod's volumes.
    pub(crate) volumes: crate::volumes::PodVolumes,
    /// The kubelet's Services, for containers' Service environment variables.
    pub(super) services: Services,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

impl Worker {
    pub fn new(
        client: kube::Client,
        config: Arc<KubeletConfig>,
        cri: Arc<dyn Cri>,
        uid: String,
        runtime_name: String,
        pod: Option<Pod>,
        services: Services,
    ) -> Worker {
        Worker {
            services,
            events: Events::new(client.clone(), &config.node_name),
            last_reasons: HashMap::new(),
            backoff: Backoff::new(config.crash_loop_base, config.crash_loop_max),
            image_backoff: Backoff::new(config.crash_loop_base, config.crash_loop_max),
            prober: Prober::new(cri.clone()),
            client,
            config,
            cri,
            uid,
            runtime_name,
            stopped_sandboxes: HashSet::new(),
            messages: HashMap::new(),
            last_written: None,
            last_pod: pod.clone(),
            pod,
            volumes: crate::volumes::PodVolumes::new(Arc::new(crate::volumes::SysMounter)),
        }
    }

    /// Syncs until the pod is gone or `shutdown` (which leaves the pod running).
    pub async fn run(
        mut self,
        mut updates: watch::Receiver<Option<Pod>>,
        shutdown: CancellationToken,
    ) {
        let changed = self.prober.changed();
        let volumes_changed = self.volumes.changed();
        loop {
            if self.sync().await == Next::Done {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = updates.changed() => {
                    if r.is_err() {
                        return;
                    }
                    self.set_pod(updates.borrow_and_update().clone());
                }
                _ = changed.notified() => {}
                _ = volumes_changed.notified() => self.volumes.expire(),
                _ = tokio::time::sleep(self.config.relist_period) => {}
            }
        }
    }

    fn set_pod(&mut self, pod: Option<Pod>) {
        if pod.is_some() {
            self.last_pod = pod.clone();
        }
        self.pod = pod;
    }

    /// One sync of the pod.
    pub async fn sync(&mut self) -> Next {
        let rt = match runtime::read(self.cri.as_ref(), &self.uid).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(uid = %self.uid, error = %e, "reading the pod's runtime state failed");
                return Next::Continue;
            }
        };
        let Some(pod) = self.pod.clone() else {
            return self.teardown(&rt, None).await;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return self.teardown(&rt, Some(&pod)).await;
        }
        if matches!(phase_of(&pod), Some("Succeeded" | "Failed")) {
            self.finish(&pod, &rt).await;
            return Next::Continue;
        }
        if deadline_exceeded(&pod) {
            self.fail_deadline(&pod, &rt).await;
            return Next::Continue;
        }
        if !self.mount_volumes(&pod).await {
            self.after_sync(&pod, &rt, HashMap::new()).await;
            return Next::Continue;
        }
        let probes = self.prober.view(&pod, &rt);
        let acts = actions::compute(&pod, &rt, &self.backoff, &probes, Utc::now());
        let errors = self.execute(&pod, &rt, &acts).await;
        self.gc_sandboxes(&rt).await;
        let rt = runtime::read(self.cri.as_ref(), &self.uid)
            .await
            .unwrap_or(rt);
        self.after_sync(&pod, &rt, errors).await;
        Next::Continue
    }

    async fn after_sync(
        &mut self,
        pod: &Pod,
        rt: &RuntimePod,
        waiting: HashMap<String, StartError>,
    ) {
        let pod_ip = rt
            .ready_sandbox()
            .and_then(|s| s.ips.first().cloned())
            .unwrap_or_else(|| self.config.node_ip.to_string());
        self.prober.sync(pod, rt, &pod_ip);
        self.read_messages(pod, rt);
        let probes = self.prober.view(pod, rt);
        let node_ip = self.config.node_ip.to_string();
        let input = StatusInput {
            waiting,
            messages: self.messages.clone(),
            runtime_name: &self.runtime_name,
            node_ip: &node_ip,
            start_time: self
                .last_written
                .as_ref()
                .and_then(|s| s.start_time.clone()),
        };
        let st = status::pod_status(pod, rt, &probes, &input, Utc::now());
        self.write_status(pod, st).await;
    }

    async fn execute(
        &mut self,
        pod: &Pod,
        rt: &RuntimePod,
        a: &PodActions,
    ) -> HashMap<String, StartError> {
        let mut errors = HashMap::new();
        if a.kill_pod {
            self.kill_pod(pod, rt, grace_period_running(pod)).await;
        }
        let pod_ips = rt
            .ready_sandbox()
            .map(|s| s.ips.clone())
            .unwrap_or_default();
        for k in &a.kill {
            if let Some(rc) = rt.containers.iter().find(|c| c.id == k.id) {
                tracing::info!(pod = %pod_key(pod), container = %k.name, reason = %k.reason, "killing container");
                let note = match k.reason.strip_suffix(" failed") {
                    Some(probe) => {
                        format!("Container {} failed {probe}, will be restarted", k.name)
                    }
                    None => format!("Container {} {}, will be restarted", k.name, k.reason),
                };
                self.kill_container(pod, rc, grace_period_running(pod), &pod_ips, Some(note))
                    .await;
            }
        }
        if a.create_sandbox.is_none() && a.sandbox_id.is_none() {
            return errors;
        }
        let host_dns = self.prepare_host(pod, a.create_sandbox.is_some()).await;
        let (sandbox_id, pod_ips) = match (a.create_sandbox, &a.sandbox_id) {
            (Some(attempt), _) => {
                if attempt > 0 {
                    let note = "Pod sandbox changed, it will be killed and re-created.".to_string();
                    self.events.normal(pod, None, "SandboxChanged", note);
                }
                let cfg = spec::sandbox_config(pod, attempt, &self.config, &host_dns);
                match self.cri.run_pod_sandbox(cfg).await {
                    Ok(id) => {
                        let ips = self.sandbox_ips(&id).await;
                        (id, ips)
                    }
                    Err(e) => {
                        tracing::warn!(pod = %pod_key(pod), error = %e, "creating the pod sandbox failed");
                        let note = format!("Failed to create pod sandbox: {}", e.message());
                        self.events
                            .warning(pod, None, "FailedCreatePodSandBox", note);
                        return errors;
                    }
                }
            }
            (None, Some(id)) => (id.clone(), pod_ips),
            (None, None) => return errors,
        };
        let attempt = rt
            .sandboxes
            .iter()
            .find(|s| s.id == sandbox_id)
            .map_or_else(|| a.create_sandbox.unwrap_or(0), |s| s.attempt);
        let sandbox_cfg = spec::sandbox_config(pod, attempt, &self.config, &host_dns);
        for t in &a.start {
            let name = exec::container_of(pod, *t)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            if let Err(e) = self
                .start_container(pod, rt, *t, &sandbox_id, &sandbox_cfg, &pod_ips)
                .await
            {
                tracing::debug!(pod = %pod_key(pod), container = %name, reason = %e.0, message = %e.1, "container not started");
                errors.insert(name, e);
                if t.kind == actions::Kind::Init {
                    break;
                }
            }
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let delays = a
            .backoff
            .iter()
            .filter_map(|(n, _)| Some((n.clone(), self.backoff.delay(&backoff_key(&uid, n))?)))
            .collect();
        errors.extend(exec::backoff_messages(pod, &a.backoff, &delays));
        self.report_waiting(pod, &errors);
        errors
    }

    /// The host's DNS configuration, and for a new sandbox its log directory and the pod's
    /// cgroup: the sync's file work, on a blocking thread.
    async fn prepare_host(&self, pod: &Pod, new_sandbox: bool) -> HostDns {
        let sandbox = new_sandbox.then(|| {
            let log_dir = spec::log_dir(&self.config, pod);
            (log_dir, spec::cgroup_parent(&self.config, pod), pod.clone())
        });
        let work = move || {
            if let Some((log_dir, parent, pod)) = sandbox {
                let _ = std::fs::create_dir_all(&log_dir);
                super::cgroups::ensure_pod_cgroup(Path::new("/sys/fs/cgroup"), &parent, &pod);
            }
            HostDns::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
        };
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|_| HostDns::parse(""))
    }

    /// Events for containers whose waiting reason changed since the last sync.
    fn report_waiting(&mut self, pod: &Pod, errors: &HashMap<String, StartError>) {
        let m = &pod.metadata;
        for (name, (reason, message)) in errors {
            if self.last_reasons.get(name) == Some(reason) {
                continue;
            }
            match reason.as_str() {
                "CrashLoopBackOff" => {
                    let note = format!(
                        "Back-off restarting failed container {name} in pod {}_{}({})",
                        m.name.as_deref().unwrap_or_default(),
                        m.namespace.as_deref().unwrap_or_default(),
                        m.uid.as_deref().unwrap_or_default()
                    );
                    self.events.warning(pod, Some(name), "BackOff", note);
                }
                "ImagePullBackOff" => {
                    self.events
                        .normal(pod, Some(name), "BackOff", message.clone());
                }
                _ => {
                    self.events
                        .warning(pod, Some(name), "Failed", format!("Error: {reason}"));
                }
            }
        }
        self.last_reasons = errors
            .iter()
            .map(|(n, (r, _))| (n.clone(), r.clone()))
            .collect();
    }

    async fn sandbox_ips(&self, id: &str) -> Vec<String> {
        let Ok(st) = self.cri.pod_sandbox_status(id).await else {
            return Vec::new();
        };
        let Some(net) = st.network else {
            return Vec::new();
        };
        let mut ips: Vec<String> = Some(net.ip).into_iter().filter(|i| !i.is_empty()).collect();
        ips.extend(net.additional_ips.into_iter().map(|i| i.ip));
        ips
    }

    /// A terminal pod: make sure nothing runs, keep reporting its final status.
    async fn finish(&mut self, pod: &Pod, rt: &RuntimePod) {
        if rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready) {
            self.kill_pod(pod, rt, grace_period_running(pod)).await;
        }
        if rt.containers.is_empty() {
            return; // nothing left to report: keep the last status
        }
        let rt = runtime::read(self.cri.as_ref(), &self.uid)
            .await
            .unwrap_or_else(|_| rt.clone());
        self.after_sync(pod, &rt, HashMap::new()).await;
    }

    async fn fail_deadline(&mut self, pod: &Pod, rt: &RuntimePod) {
        tracing::info!(pod = %pod_key(pod), "pod exceeded its active deadline");
        self.kill_pod(pod, rt, grace_period_running(pod)).await;
        let mut failed = pod.clone();
        let st = failed.status.get_or_insert_with(Default::default);
        st.phase = Some("Failed".into());
        st.reason = Some("DeadlineExceeded".into());
        st.message = Some("Pod was active on the node longer than the specified deadline".into());
        let rt = runtime::read(self.cri.as_ref(), &self.uid)
            .await
            .unwrap_or_else(|_| rt.clone());
        self.after_sync(&failed, &rt, HashMap::new()).await;
    }

    /// Stops and removes everything of a deleted (or vanished) pod, then deletes the pod object
    /// for good.
    async fn teardown(&mut self, rt: &RuntimePod, pod: Option<&Pod>) -> Next {
        let grace = pod.map_or(ORPHAN_GRACE, grace_period);
        let last = self.last_pod.clone();
        let spec_pod = pod.cloned().or(last).unwrap_or_default();
        self.kill_pod(&spec_pod, rt, grace).await;
        self.prober = Prober::new(self.cri.clone());
        let rt = runtime::read(self.cri.as_ref(), &self.uid)
            .await
            .unwrap_or_else(|_| rt.clone());
        self.remove_pod(&rt).await;
        let Some(pod) = pod else {
            return Next::Done;
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => Next::Done,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Next::Done,
            Err(e) => {
                tracing::warn!(pod = %pod_key(pod), error = %e, "deleting the terminated pod failed");
                Next::Continue
            }
        }
    }

    async fn write_status(&mut self, pod: &Pod, st: PodStatus) {
        if self.last_written.as_ref().map(status::comparable) == Some(status::comparable(&st)) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = Patch::Merge(json!({"status": st}));
        match api
            .patch_status(&name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => self.last_written = Some(st),
            Err(e) => {
                tracing::warn!(pod = %pod_key(pod), error = %e, "updating the pod status failed")
            }
        }
    }
}

fn phase_of(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// The grace period to stop containers of a pod not being deleted.
fn grace_period_running(pod: &Pod) -> Duration {
    grace_period(pod)
}

fn deadline_exceeded(pod: &Pod) -> bool {
    let Some(deadline) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
        return false;
    };
    let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) else {
        return false;
    };
    let now = crate::node::to_ts(Utc::now());
    now.as_second() - start.0.as_second() >= deadline
}
