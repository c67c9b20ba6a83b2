//! The proxy loop: watches Services, EndpointSlices and this Node, coalesces changes (at most
//! one sync per `min_sync_period`), writes one transaction per sync for the Services that
//! changed, replaces the whole table on start and every `sync_period`, flushes stale UDP
//! conntrack entries and keeps the health servers current. It also watches the pods bound to
//! this node and keeps their hostPorts in the table ([`crate::hostport`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8rs_controller_runtime::reduced::{Reduced, forward, sleep_until};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::ProxyConfig;
use crate::dataplane::Dataplane;
use crate::health::{HealthState, ServiceHealthServers, serve_healthz};
use crate::hostport::{HostPort, PodName, hostport_fragment, pod_host_ports};
use crate::model::{
    Endpoint, ServiceName, ServicePortInfo, ServicePortName, categorize, service_ports,
    slice_endpoints, slice_service,
};
use crate::nft::Proto;
use crate::render::{RenderContext, service_fragment, skeleton};
use crate::state::TableState;

/// Removes the proxy's table (for `k8rs killall` and uninstall).
pub fn cleanup(config: &ProxyConfig) -> Result<(), Error> {
    Dataplane::new(&config.nft_command).delete_table()
}

/// What a watcher reports.
enum Update {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<Pod>>),
}

/// Runs the proxy until `shutdown`. Fails only if the health server cannot bind; `nft`
/// failures are logged and retried with a full resync.
pub async fn run(
    client: Client,
    config: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let health = Arc::new(HealthState::new(config.sync_period * 2));
    if let Some(addr) = config.healthz_bind_address {
        serve_healthz(addr, health.clone(), shutdown.child_token()).await?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let svc_api: Api<Service> = Api::all(client.clone());
    let slice_api: Api<EndpointSlice> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    let pod_api: Api<Pod> = Api::all(client);
    let node_cfg =
        watcher::Config::default().fields(&format!("metadata.name={}", config.node_name));
    let pod_cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name));
    forward(
        watcher(pod_api, pod_cfg),
        tx.clone(),
        |e| Update::Pod(Box::new(e)),
        "proxy pods",
        &shutdown,
    );
    forward(
        watcher(svc_api, watcher::Config::default()),
        tx.clone(),
        |e| Update::Service(Box::new(e)),
        "proxy services",
        &shutdown,
    );
    forward(
        watcher(slice_api, watcher::Config::default()),
        tx.clone(),
        |e| Update::Slice(Box::new(e)),
        "proxy slices",
        &shutdown,
    );
    forward(
        watcher(node_api, node_cfg),
        tx,
        |e| Update::Node(Box::new(e)),
        "proxy nodes",
        &shutdown,
    );
    let mut proxier = Proxier::new(config, health);
    proxier.run(rx, shutdown).await;
    Ok(())
}

/// What the last successful sync used for one Service port, for conntrack and health.
#[derive(Clone, Debug, Default)]
struct Applied {
    info: Option<ServicePortInfo>,
    endpoints: Vec<Endpoint>,
}

struct Proxier {
    config: ProxyConfig,
    dataplane: Dataplane,
    ctx: RenderContext,
    health: Arc<HealthState>,
    service_health: ServiceHealthServers,
    services: Reduced<Service>,
    slices: Reduced<EndpointSlice>,
    nodes: Reduced<Node>,
    pods: Reduced<Pod>,
    /// The hostPorts in the table, by pod.
    host_ports: HashMap<PodName, Vec<HostPort>>,
    dirty_pods: BTreeSet<PodName>,
    /// Pod addresses whose interface has `route_localnet` on (redone on each full sync).
    localnet: HashSet<Ipv4Addr>,
    slices_by_service: HashMap<ServiceName, BTreeSet<(String, String)>>,
    ports_by_service: HashMap<ServiceName, Vec<ServicePortName>>,
    applied: HashMap<ServicePortName, Applied>,
    state: TableState,
    dirty: BTreeSet<ServiceName>,
    needs_full: bool,
    last_full: Option<Instant>,
    last_sync: Option<Instant>,
}

impl Proxier {
    fn new(config: ProxyConfig, health: Arc<HealthState>) -> Proxier {
        let dataplane = Dataplane::new(&config.nft_command);
        let local_ips = dataplane.local_ips();
        let nodeport_ips = config.nodeport_ips(&local_ips);
        let skel = skeleton(&config, &nodeport_ips);
        Proxier {
            ctx: RenderContext::new(&config, &nodeport_ips),
            service_health: ServiceHealthServers::new(config.health_check_bind_ip, health.clone()),
            config,
            dataplane,
            health,
            services: Reduced::default(),
            slices: Reduced::default(),
            nodes: Reduced::default(),
            pods: Reduced::default(),
            host_ports: HashMap::new(),
            dirty_pods: BTreeSet::new(),
            localnet: HashSet::new(),
            slices_by_service: HashMap::new(),
            ports_by_service: HashMap::new(),
            applied: HashMap::new(),
            state: TableState::new(skel),
            dirty: BTreeSet::new(),
            needs_full: true,
            last_full: None,
            last_sync: None,
        }
    }

    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Update>, shutdown: CancellationToken) {
        self.health.updated();
        let mut retry_at: Option<Instant> = None;
        loop {
            let due = self.next_sync(retry_at);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                update = rx.recv() => match update {
                    Some(update) => self.on_update(update),
                    None => break,
                },
                _ = sleep_until(due) => {
                    retry_at = None;
                    if !self.sync().await {
                        retry_at = Some(Instant::now() + self.config.min_sync_period.max(Duration::from_secs(1)));
                    }
                }
            }
        }
        self.service_health.stop_all();
    }

    /// When the next sync should run, if one is due at all.
    fn next_sync(&self, retry_at: Option<Instant>) -> Option<Instant> {
        if !(self.services.synced() && self.slices.synced()) {
            return None;
        }
        let earliest = self
            .last_sync
            .map(|t| t + self.config.min_sync_period)
            .unwrap_or_else(Instant::now);
        if let Some(retry) = retry_at {
            return Some(retry.max(earliest));
        }
        let resync = self.last_full.map(|t| t + self.config.sync_period);
        if self.needs_full || !self.dirty.is_empty() || !self.dirty_pods.is_empty() {
            return Some(earliest);
        }
        resync
    }

    fn on_update(&mut self, update: Update) {
        match update {
            Update::Service(event) => {
                for svc in self.services.apply(*event, whole) {
                    if let Some(name) = svc.metadata.name.clone() {
                        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
                        self.dirty.insert(ServiceName { namespace, name });
                    }
                }
            }
            Update::Slice(event) => {
                for slice in self.slices.apply(*event, whole) {
                    self.index_slice(&slice);
                }
            }
            Update::Node(event) => {
                self.nodes.apply(*event, whole);
                let deleting = self
                    .nodes
                    .objects()
                    .values()
                    .any(|n| n.metadata.deletion_timestamp.is_some());
                self.health.set_node_deleting(deleting);
            }
            Update::Pod(event) => {
                for pod in self.pods.apply(*event, whole) {
                    self.dirty_pods.insert(PodName {
                        namespace: pod.namespace().unwrap_or_default(),
                        name: pod.name_any(),
                    });
                }
            }
        }
        if !self.dirty.is_empty() {
            self.health.queued();
        }
    }

    fn index_slice(&mut self, slice: &EndpointSlice) {
        let key = (
            slice.metadata.namespace.clone().unwrap_or_default(),
            slice.metadata.name.clone().unwrap_or_default(),
        );
        let present = self.slices.objects().contains_key(&key);
        // Drop the old index entry (its service label may have changed), then re-add.
        for (svc, keys) in self.slices_by_service.iter_mut() {
            if keys.remove(&key) {
                self.dirty.insert(svc.clone());
            }
        }
        let current = self.slices.objects().get(&key).and_then(slice_service);
        if let (true, Some(svc)) = (present, current) {
            self.slices_by_service
                .entry(svc.clone())
                .or_default()
                .insert(key);
            self.dirty.insert(svc);
        }
        if let Some(svc) = slice_service(slice) {
            self.dirty.insert(svc);
        }
        self.slices_by_service.retain(|_, keys| !keys.is_empty());
    }

    /// The Service ports of `name` with their endpoints, from the caches.
    fn desired(&self, name: &ServiceName) -> Vec<(ServicePortInfo, Vec<Endpoint>)> {
        let key = (name.namespace.clone(), name.name.clone());
        let Some(svc) = self.services.objects().get(&key) else {
            return Vec::new();
        };
        let slices = self
            .slices_by_service
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.objects().get(k));
        let mut endpoints = slice_endpoints(slices, &self.config.node_name);
        service_ports(svc)
            .into_iter()
            .map(|info| {
                let eps = endpoints
                    .remove(&(info.name.port.clone(), info.name.protocol))
                    .unwrap_or_default();
                (info, eps)
            })
            .collect()
    }

    /// One sync; false if the transaction failed (the next one is a full rewrite).
    async fn sync(&mut self) -> bool {
        let started = Instant::now();
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = Vec::new();
        let mut next_applied = Vec::new();
        for name in &dirty {
            let desired = self.desired(name);
            let new_ports: Vec<ServicePortName> =
                desired.iter().map(|(i, _)| i.name.clone()).collect();
            let old_ports = self.ports_by_service.remove(name).unwrap_or_default();
            for old in old_ports.iter().filter(|p| !new_ports.contains(p)) {
                changes.push((old.clone(), None));
                next_applied.push((old.clone(), Applied::default()));
            }
            for (info, eps) in desired {
                let fragment = service_fragment(&self.ctx, &info, &eps);
                changes.push((info.name.clone(), Some(fragment)));
                let used = categorize(&info, &eps).reachable;
                next_applied.push((
                    info.name.clone(),
                    Applied {
                        info: Some(info),
                        endpoints: used,
                    },
                ));
            }
            if !new_ports.is_empty() {
                self.ports_by_service.insert(name.clone(), new_ports);
            }
        }
        let mut incremental = self.state.update(changes);
        let host_ports = self.host_port_changes();
        incremental.extend(
            self.state.update(
                host_ports
                    .iter()
                    .map(|(name, ports)| {
                        (
                            name.clone(),
                            (!ports.is_empty()).then(|| hostport_fragment(ports)),
                        )
                    })
                    .collect(),
            ),
        );
        let resync_due = self
            .last_full
            .is_none_or(|t| started >= t + self.config.sync_period);
        let full = self.needs_full || resync_due;
        let (ops, result) = if full {
            match self.dataplane.existing() {
                Ok(existing) => {
                    let ops = self.state.full(&existing);
                    let result = self.dataplane.apply(&ops);
                    (ops, result)
                }
                Err(err) => (Vec::new(), Err(err)),
            }
        } else {
            let result = self.dataplane.apply(&incremental);
            (incremental, result)
        };
        self.last_sync = Some(Instant::now());
        if let Err(err) = result {
            tracing::error!(%err, "nftables sync failed; retrying with a full resync");
            self.needs_full = true;
            self.record_applied(next_applied);
            return false;
        }
        if full {
            self.needs_full = false;
            self.last_full = Some(started);
            self.localnet.clear();
        }
        self.after_host_ports(host_ports);
        let stale = self.record_applied(next_applied);
        self.flush_conntrack(stale);
        self.health.updated();
        self.sync_service_health().await;
        tracing::debug!(ops = ops.len(), full, elapsed = ?started.elapsed(), "nftables synced");
        true
    }

    /// The pods whose hostPorts changed, with their new hostPorts (empty: none any more);
    /// recorded as applied.
    fn host_port_changes(&mut self) -> Vec<(PodName, Vec<HostPort>)> {
        let mut out = Vec::new();
        for name in std::mem::take(&mut self.dirty_pods) {
            let key = (name.namespace.clone(), name.name.clone());
            let ports = self
                .pods
                .objects()
                .get(&key)
                .map(pod_host_ports)
                .unwrap_or_default();
            let before = self.host_ports.remove(&name).unwrap_or_default();
            if !ports.is_empty() {
                self.host_ports.insert(name.clone(), ports.clone());
            }
            if before != ports {
                out.push((name, ports));
            }
        }
        out
    }

    /// After a successful sync: like portmap, stale UDP conntrack entries of new UDP hostPorts
    /// are flushed, and `route_localnet` is turned on toward pods with hostPorts (so that
    /// 127.0.0.1:hostPort from the node works).
    fn after_host_ports(&mut self, changed: Vec<(PodName, Vec<HostPort>)>) {
        for port in changed.iter().flat_map(|(_, ports)| ports) {
            if port.protocol == Proto::Udp {
                let filter = ["--orig-port-dst".to_string(), port.host_port.to_string()];
                self.dataplane.conntrack_delete(&filter);
            }
        }
        let live: HashSet<Ipv4Addr> = self
            .host_ports
            .values()
            .flatten()
            .map(|p| p.pod_ip)
            .collect();
        self.localnet.retain(|ip| live.contains(ip));
        for ip in live {
            if self.localnet.insert(ip) {
                self.dataplane.enable_route_localnet(ip);
            }
        }
    }

    /// Records what the sync used; returns the UDP (service, endpoint) pairs that went away and
    /// the UDP services that gained endpoints.
    fn record_applied(
        &mut self,
        next: Vec<(ServicePortName, Applied)>,
    ) -> Vec<(ServicePortInfo, Option<Endpoint>)> {
        let mut stale = Vec::new();
        for (name, now) in next {
            let before = self.applied.remove(&name).unwrap_or_default();
            if let Some(info) = before
                .info
                .as_ref()
                .filter(|i| i.name.protocol == Proto::Udp)
            {
                for ep in &before.endpoints {
                    if !now
                        .endpoints
                        .iter()
                        .any(|e| e.ip == ep.ip && e.port == ep.port)
                    {
                        stale.push((info.clone(), Some(ep.clone())));
                    }
                }
            }
            let gained = before.endpoints.is_empty() && !now.endpoints.is_empty();
            if let Some(info) = now.info.as_ref().filter(|i| i.name.protocol == Proto::Udp)
                && gained
            {
                stale.push((info.clone(), None));
            }
            if now.info.is_some() {
                self.applied.insert(name, now);
            }
        }
        stale
    }

    fn flush_conntrack(&self, stale: Vec<(ServicePortInfo, Option<Endpoint>)>) {
        for (info, ep) in stale {
            let vips: Vec<Ipv4Addr> = std::iter::once(info.cluster_ip)
                .chain(info.external_ips.iter().copied())
                .chain(info.load_balancer_ips.iter().copied())
                .collect();
            for vip in vips {
                let mut filter = vec!["--orig-dst".to_string(), vip.to_string()];
                if let Some(ep) = &ep {
                    filter.extend(["--dst-nat".to_string(), ep.ip.to_string()]);
                }
                self.dataplane.conntrack_delete(&filter);
            }
            if let (Some(node_port), Some(ep)) = (info.node_port, &ep) {
                let filter = [
                    "--orig-port-dst",
                    &node_port.to_string(),
                    "--dst-nat",
                    &ep.ip.to_string(),
                ]
                .map(String::from);
                self.dataplane.conntrack_delete(&filter);
            }
        }
    }

    async fn sync_service_health(&mut self) {
        let mut wanted = BTreeMap::new();
        for applied in self.applied.values() {
            let Some(info) = &applied.info else { continue };
            let Some(port) = info.health_check_node_port else {
                continue;
            };
            let local = applied.endpoints.iter().filter(|e| e.local).count();
            let entry = wanted.entry(port).or_insert((info.name.service.clone(), 0));
            entry.1 = entry.1.max(local);
        }
        self.service_health.sync(wanted).await;
    }
}

/// Keeps a watched object whole.
fn whole<K: Clone>(obj: &K) -> Option<K> {
    Some(obj.clone())
}
