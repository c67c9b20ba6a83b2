//! The rules renderer: the model turned into the desired contents of `table ip k8rs-proxy`.
//!
//! The table has a fixed set of chains; everything per Service and per endpoint is an element
//! of a set or map, so that a change is a few element additions and deletions whatever the
//! number of Services (nft 1.0.6 reads back every chain for most commands, and the kernel
//! re-validates every chain on each new jump):
//!
//! - `services` dispatches on `service-ips` (address . protocol . port, for ClusterIPs,
//!   externalIPs, load-balancer addresses and each NodePort address): ClusterIP traffic goes
//!   to `lb-N` (N cluster endpoints) or `lb-local-N` (internalTrafficPolicy Local), external
//!   traffic to `external` (Cluster policy: masquerade) or `external-local` (Local policy),
//!   which look the address up again in `external-cluster-lb` / `external-local-lb`.
//! - `lb-N` (one per endpoint count in use, shared by all Services) picks a slot with
//!   `numgen random mod N` (kept in the connection mark) and DNATs through
//!   `cluster-endpoints` (`lb-local-N`: `local-endpoints`), whose elements are
//!   `address . proto . port . slot : endpoint ip . port`.
//! - Masquerade: ClusterIP traffic from outside the cluster CIDR, external traffic of Cluster
//!   policy, and hairpin (`hairpin-endpoints` holds `ep . ep`, checked in postrouting).
//! - Safety: `no-endpoint-services`/`-nodeports` (reject or drop), `cluster-ips-check`
//!   (wrong port: reject; unallocated: drop), `firewall-services` + `firewall-allow`
//!   (loadBalancerSourceRanges).
//!
//! - hostPorts of this node's pods: `hostports` (jumped to for local destinations before
//!   `services`) DNATs through `hostport-ips` / `hostport-any` ([`crate::hostport`]).
//!
//! Services with `sessionAffinity: ClientIP` keep per-Service chains ([`affinity`]).
//! The output is split into one [`Fragment`] per Service port so that a sync can compare and
//! rewrite only the Service ports that changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::config::{Cidr, ProxyConfig};
use crate::model::{Categorized, Endpoint, ServicePortInfo, categorize};
use crate::nft::{Addr, ElemKey, ElemValue, Hook, Key, Rule, SetKind, Stmt, Verdict};

#[path = "render_affinity.rs"]
mod affinity;

pub const SERVICES_CHAIN: &str = "services";
pub const SERVICE_IPS: &str = "service-ips";
pub const EXTERNAL_CHAIN: &str = "external";
pub const EXTERNAL_LOCAL_CHAIN: &str = "external-local";
pub const EXTERNAL_CLUSTER_LB: &str = "external-cluster-lb";
pub const EXTERNAL_LOCAL_LB: &str = "external-local-lb";
pub const CLUSTER_ENDPOINTS: &str = "cluster-endpoints";
pub const LOCAL_ENDPOINTS: &str = "local-endpoints";
pub const HAIRPIN: &str = "hairpin-endpoints";
pub const NODEPORT_IPS: &str = "nodeport-ips";
pub const CLUSTER_IPS: &str = "cluster-ips";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const FIREWALL_SERVICES: &str = "firewall-services";
pub const FIREWALL_ALLOW: &str = "firewall-allow";
pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
pub const FIREWALL_CHECK: &str = "firewall-check";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const MARK_MASQ: &str = "mark-for-masquerade";
pub const MASQUERADING: &str = "masquerading";

/// A chain: its hook if it is a base chain, and its rules.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Chain {
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
}

/// A part of the table owned by one Service port (or the static skeleton).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fragment {
    /// Chains only this owner uses.
    pub chains: BTreeMap<String, Chain>,
    /// Chains shared with other owners (`lb-N`): same name, same contents.
    pub shared: BTreeMap<String, Chain>,
    /// Named sets and maps (the skeleton's and the affinity sets).
    pub sets: BTreeMap<String, SetKind>,
    /// Elements of named sets (`None` value) and maps.
    pub elements: Vec<(&'static str, ElemKey, Option<ElemValue>)>,
}

impl Fragment {
    fn chain(&mut self, name: &str) -> &mut Vec<Rule> {
        &mut self.chains.entry(name.to_string()).or_default().rules
    }

    fn rule(&mut self, chain: &str, stmts: Vec<Stmt>) {
        self.chain(chain).push(Rule(stmts));
    }

    fn elem(&mut self, set: &'static str, key: ElemKey, value: Option<ElemValue>) {
        self.elements.push((set, key, value));
    }

    fn verdict(&mut self, map: &'static str, key: ElemKey, verdict: Verdict) {
        self.elem(map, key, Some(ElemValue::Verdict(verdict)));
    }
}

fn jump(chain: &str) -> Stmt {
    Stmt::Verdict(Verdict::Jump(chain.to_string()))
}

fn goto(chain: &str) -> Stmt {
    Stmt::Verdict(Verdict::Goto(chain.to_string()))
}

fn base(kind: &'static str, hook: &'static str, priority: i32) -> Chain {
    Chain {
        hook: Some(Hook {
            kind,
            hook,
            priority,
        }),
        rules: Vec::new(),
    }
}

/// The static skeleton: base chains, dispatch, checks and masquerading, with the NodePort
/// addresses `nodeport_ips`.
pub fn skeleton(config: &ProxyConfig, nodeport_ips: &[Ipv4Addr]) -> Fragment {
    let mut f = Fragment::default();
    // Filter chains run before DNAT (dstnat - 10); the post-DNAT output check after it.
    let bases = [
        ("filter-prerouting", base("filter", "prerouting", -110)),
        ("filter-input", base("filter", "input", -110)),
        ("filter-forward", base("filter", "forward", -110)),
        ("filter-output", base("filter", "output", -110)),
        ("filter-output-post-dnat", base("filter", "output", -90)),
        ("nat-prerouting", base("nat", "prerouting", -100)),
        ("nat-output", base("nat", "output", -100)),
        ("nat-postrouting", base("nat", "postrouting", 100)),
    ];
    for (name, chain) in bases {
        f.chains.insert(name.to_string(), chain);
    }
    let new = || Stmt::CtStateNew;
    f.rule("filter-prerouting", vec![new(), jump(FIREWALL_CHECK)]);
    f.chain("filter-input")
        .push(crate::hostport::loopback_guard());
    f.rule("filter-input", vec![new(), jump(NODEPORT_ENDPOINTS_CHECK)]);
    f.rule("filter-input", vec![new(), jump(SERVICE_ENDPOINTS_CHECK)]);
    f.rule("filter-forward", vec![new(), jump(SERVICE_ENDPOINTS_CHECK)]);
    f.rule("filter-forward", vec![new(), jump(CLUSTER_IPS_CHECK)]);
    f.rule("filter-output", vec![new(), jump(SERVICE_ENDPOINTS_CHECK)]);
    f.rule("filter-output", vec![new(), jump(FIREWALL_CHECK)]);
    f.rule(
        "filter-output-post-dnat",
        vec![new(), jump(CLUSTER_IPS_CHECK)],
    );
    let hostports = || vec![Stmt::FibDaddrLocal, jump(crate::hostport::HOSTPORTS_CHAIN)];
    f.rule("nat-prerouting", hostports());
    f.rule("nat-prerouting", vec![jump(SERVICES_CHAIN)]);
    f.rule("nat-output", hostports());
    f.rule("nat-output", vec![jump(SERVICES_CHAIN)]);
    f.rule("nat-postrouting", vec![jump(MASQUERADING)]);

    for (name, kind) in [
        (SERVICE_IPS, SetKind::IpProtoPortVmap),
        (EXTERNAL_CLUSTER_LB, SetKind::IpProtoPortVmap),
        (EXTERNAL_LOCAL_LB, SetKind::IpProtoPortVmap),
        (CLUSTER_ENDPOINTS, SetKind::Slots),
        (LOCAL_ENDPOINTS, SetKind::Slots),
        (HAIRPIN, SetKind::IpPairs),
        (NO_ENDPOINT_SERVICES, SetKind::IpProtoPortVmap),
        (NO_ENDPOINT_NODEPORTS, SetKind::ProtoPortVmap),
        (FIREWALL_SERVICES, SetKind::IpProtoPorts),
        (FIREWALL_ALLOW, SetKind::AllowRanges),
        (CLUSTER_IPS, SetKind::Ips),
        (NODEPORT_IPS, SetKind::Ips),
    ] {
        f.sets.insert(name.to_string(), kind);
    }
    for ip in nodeport_ips {
        f.elem(NODEPORT_IPS, ElemKey::Ip(*ip), None);
    }
    dispatch_chains(&mut f, config);
    check_chains(&mut f, config);
    crate::hostport::skeleton(&mut f);
    f
}

fn dispatch_chains(f: &mut Fragment, config: &ProxyConfig) {
    let key = Key::DaddrProtoPort;
    if let Some(cidr) = config.cluster_cidr {
        // ClusterIP traffic from outside the pods' range is masqueraded.
        f.rule(
            SERVICES_CHAIN,
            vec![
                Stmt::Daddr(false, Addr::Set(CLUSTER_IPS.into())),
                Stmt::Saddr(true, Addr::Cidr(cidr)),
                jump(MARK_MASQ),
            ],
        );
    }
    f.rule(SERVICES_CHAIN, vec![Stmt::Vmap(key, SERVICE_IPS)]);
    // Cluster policy may cross nodes: masquerade so replies come back here.
    f.rule(EXTERNAL_CHAIN, vec![jump(MARK_MASQ)]);
    f.rule(EXTERNAL_CHAIN, vec![Stmt::Vmap(key, EXTERNAL_CLUSTER_LB)]);
    let ext = EXTERNAL_LOCAL_CHAIN;
    if let Some(cidr) = config.cluster_cidr {
        // Pods reaching an external address use the whole cluster, as an outside LB would.
        f.rule(
            ext,
            vec![
                Stmt::Saddr(false, Addr::Cidr(cidr)),
                Stmt::Vmap(key, EXTERNAL_CLUSTER_LB),
            ],
        );
    }
    f.rule(ext, vec![Stmt::FibSaddrLocal, jump(MARK_MASQ)]);
    f.rule(
        ext,
        vec![Stmt::FibSaddrLocal, Stmt::Vmap(key, EXTERNAL_CLUSTER_LB)],
    );
    f.rule(ext, vec![Stmt::Vmap(key, EXTERNAL_LOCAL_LB)]);
}

fn check_chains(f: &mut Fragment, config: &ProxyConfig) {
    f.rule(
        FIREWALL_CHECK,
        vec![
            Stmt::Lookup(Key::DaddrProtoPortSaddr, FIREWALL_ALLOW),
            Stmt::Verdict(Verdict::Return),
        ],
    );
    f.rule(
        FIREWALL_CHECK,
        vec![
            Stmt::Lookup(Key::DaddrProtoPort, FIREWALL_SERVICES),
            Stmt::Verdict(Verdict::Drop),
        ],
    );
    f.rule(
        SERVICE_ENDPOINTS_CHECK,
        vec![Stmt::Vmap(Key::DaddrProtoPort, NO_ENDPOINT_SERVICES)],
    );
    f.rule(
        NODEPORT_ENDPOINTS_CHECK,
        vec![
            Stmt::Daddr(false, Addr::Set(NODEPORT_IPS.into())),
            Stmt::Vmap(Key::ProtoPort, NO_ENDPOINT_NODEPORTS),
        ],
    );
    // Reached after DNAT: a Service address still here had a wrong port or was unallocated.
    f.rule(
        CLUSTER_IPS_CHECK,
        vec![
            Stmt::Daddr(false, Addr::Set(CLUSTER_IPS.into())),
            goto(REJECT_CHAIN),
        ],
    );
    if let Some(cidr) = config.service_cidr {
        f.rule(
            CLUSTER_IPS_CHECK,
            vec![
                Stmt::Daddr(false, Addr::Cidr(cidr)),
                Stmt::Verdict(Verdict::Drop),
            ],
        );
    }
    f.rule(
        REJECT_CHAIN,
        vec![Stmt::L4Proto(crate::nft::Proto::Tcp), Stmt::RejectTcpReset],
    );
    f.rule(REJECT_CHAIN, vec![Stmt::Reject]);
    f.rule(MARK_MASQ, vec![Stmt::MarkSet]);
    // Hairpin: a pod reaching itself through a Service.
    f.rule(
        MASQUERADING,
        vec![Stmt::Lookup(Key::SaddrDaddr, HAIRPIN), Stmt::Masquerade],
    );
    f.rule(
        MASQUERADING,
        vec![Stmt::MarkUnset, Stmt::Verdict(Verdict::Return)],
    );
    f.rule(MASQUERADING, vec![Stmt::MarkClear]);
    f.rule(MASQUERADING, vec![Stmt::Masquerade]);
}

/// The shared chain balancing over `n` endpoint slots of `map`.
fn lb_chain(map: &'static str, n: usize) -> (String, Chain) {
    let prefix = if map == LOCAL_ENDPOINTS {
        "lb-local"
    } else {
        "lb"
    };
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    let chain = Chain {
        hook: None,
        rules: vec![Rule(vec![Stmt::DnatSlot(n, map)])],
    };
    (format!("{prefix}-{n}"), chain)
}

/// The proxy settings the per-Service rules depend on.
#[derive(Clone, Debug, Default)]
pub struct RenderContext {
    pub cluster_cidr: Option<Cidr>,
    pub primary_node_ip: Option<Ipv4Addr>,
    /// The addresses NodePorts are served on.
    pub nodeport_ips: Vec<Ipv4Addr>,
}

impl RenderContext {
    /// The context of `config` with NodePorts on `nodeport_ips`.
    pub fn new(config: &ProxyConfig, nodeport_ips: &[Ipv4Addr]) -> RenderContext {
        RenderContext {
            cluster_cidr: config.cluster_cidr,
            primary_node_ip: config.node_ips.first().copied(),
            nodeport_ips: nodeport_ips.to_vec(),
        }
    }
}

/// The addresses (and ports) of `svc` reached from outside: externalIPs, load-balancer
/// addresses and the NodePort on each NodePort address.
fn external_addrs(ctx: &RenderContext, svc: &ServicePortInfo) -> Vec<(Ipv4Addr, u16)> {
    let mut out: Vec<(Ipv4Addr, u16)> = svc
        .external_ips
        .iter()
        .chain(&svc.load_balancer_ips)
        .map(|ip| (*ip, svc.port))
        .collect();
    if let Some(node_port) = svc.node_port {
        out.extend(ctx.nodeport_ips.iter().map(|ip| (*ip, node_port)));
    }
    out
}

/// The rules of one Service port over its `endpoints`.
pub fn service_fragment(
    ctx: &RenderContext,
    svc: &ServicePortInfo,
    endpoints: &[Endpoint],
) -> Fragment {
    let mut f = Fragment::default();
    let cat = categorize(svc, endpoints);
    let plan = Plan::new(svc, &cat);
    f.elem(CLUSTER_IPS, ElemKey::Ip(svc.cluster_ip), None);
    no_endpoint_elements(&mut f, svc, &plan);
    firewall(&mut f, svc, ctx);
    for ep in &cat.reachable {
        f.elem(HAIRPIN, ElemKey::IpPair(ep.ip, ep.ip), None);
    }
    if svc.affinity_timeout.is_some() {
        affinity::dispatch(&mut f, ctx, svc, &cat, &plan);
    } else {
        dispatch(&mut f, ctx, svc, &cat, &plan);
    }
    f
}

/// Which verdicts one Service port needs.
struct Plan {
    has_any: bool,
    has_internal: bool,
    has_external: bool,
}

impl Plan {
    fn new(svc: &ServicePortInfo, cat: &Categorized) -> Plan {
        let has_any = cat.has_any;
        Plan {
            has_any,
            has_internal: has_any && (!svc.internal_local || !cat.local.is_empty()),
            has_external: has_any && (!svc.external_local || !cat.local.is_empty()),
        }
    }

    /// What the filter hooks do to traffic with no usable endpoint: reject when the
    /// Service has none at all, drop when only the Local policy has none here.
    fn no_endpoint_verdict(&self) -> Verdict {
        if self.has_any {
            Verdict::Drop
        } else {
            Verdict::Goto(REJECT_CHAIN.into())
        }
    }
}

fn no_endpoint_elements(f: &mut Fragment, svc: &ServicePortInfo, plan: &Plan) {
    let (proto, port) = (svc.name.protocol, svc.port);
    let key = |ip: Ipv4Addr| ElemKey::IpProtoPort(ip, proto, port);
    let verdict = plan.no_endpoint_verdict();
    if !plan.has_internal {
        f.verdict(NO_ENDPOINT_SERVICES, key(svc.cluster_ip), verdict.clone());
    }
    if plan.has_external {
        return;
    }
    for ip in svc.external_ips.iter().chain(&svc.load_balancer_ips) {
        f.verdict(NO_ENDPOINT_SERVICES, key(*ip), verdict.clone());
    }
    if let Some(node_port) = svc.node_port {
        let key = ElemKey::ProtoPort(proto, node_port);
        f.verdict(NO_ENDPOINT_NODEPORTS, key, verdict);
    }
}

/// The flat dispatch: verdict-map elements into the shared `lb-N` chains and the endpoint
/// slots of each address.
fn dispatch(
    f: &mut Fragment,
    ctx: &RenderContext,
    svc: &ServicePortInfo,
    cat: &Categorized,
    plan: &Plan,
) {
    let proto = svc.name.protocol;
    if plan.has_internal {
        let (map, eps) = if svc.internal_local {
            (LOCAL_ENDPOINTS, &cat.local)
        } else {
            (CLUSTER_ENDPOINTS, &cat.cluster)
        };
        balance(f, SERVICE_IPS, map, (svc.cluster_ip, proto, svc.port), eps);
    }
    if !plan.has_any {
        return;
    }
    let entry = if svc.external_local {
        EXTERNAL_LOCAL_CHAIN
    } else {
        EXTERNAL_CHAIN
    };
    for (ip, port) in external_addrs(ctx, svc) {
        let key = ElemKey::IpProtoPort(ip, proto, port);
        f.verdict(SERVICE_IPS, key, Verdict::Goto(entry.into()));
        let addr = (ip, proto, port);
        balance(
            f,
            EXTERNAL_CLUSTER_LB,
            CLUSTER_ENDPOINTS,
            addr,
            &cat.cluster,
        );
        if svc.external_local {
            balance(f, EXTERNAL_LOCAL_LB, LOCAL_ENDPOINTS, addr, &cat.local);
        }
    }
}

/// `addr` in verdict map `vmap` goes to `lb-N` over `endpoints`, put in the slots of `map`.
fn balance(
    f: &mut Fragment,
    vmap: &'static str,
    map: &'static str,
    (ip, proto, port): (Ipv4Addr, crate::nft::Proto, u16),
    endpoints: &[Endpoint],
) {
    if endpoints.is_empty() {
        return;
    }
    let (name, chain) = lb_chain(map, endpoints.len());
    let key = ElemKey::IpProtoPort(ip, proto, port);
    f.verdict(vmap, key, Verdict::Goto(name.clone()));
    f.shared.insert(name, chain);
    for (slot, ep) in (0u32..).zip(endpoints) {
        let key = ElemKey::Slot(ip, proto, port, slot);
        f.elem(map, key, Some(ElemValue::Endpoint(ep.ip, ep.port)));
    }
}

/// loadBalancerSourceRanges: traffic to a load-balancer address is dropped unless its source
/// is in one of the ranges (or, when the node is, is one of the load-balancer addresses).
fn firewall(f: &mut Fragment, svc: &ServicePortInfo, ctx: &RenderContext) {
    if svc.load_balancer_ips.is_empty() || svc.source_ranges.is_empty() {
        return;
    }
    let mut sources = svc.source_ranges.clone();
    // A node inside the allowed ranges may reach its own load-balancer addresses.
    if ctx
        .primary_node_ip
        .is_some_and(|ip| svc.source_ranges.iter().any(|c| c.contains(ip)))
    {
        sources.extend(svc.load_balancer_ips.iter().map(|ip| Cidr::new(*ip, 32)));
    }
    sources.sort();
    sources.dedup();
    let (proto, port) = (svc.name.protocol, svc.port);
    for ip in &svc.load_balancer_ips {
        f.elem(
            FIREWALL_SERVICES,
            ElemKey::IpProtoPort(*ip, proto, port),
            None,
        );
        for cidr in &sources {
            f.elem(
                FIREWALL_ALLOW,
                ElemKey::Allow(*ip, proto, port, *cidr),
                None,
            );
        }
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
