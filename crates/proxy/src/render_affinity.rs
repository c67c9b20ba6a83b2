//! Services with `sessionAffinity: ClientIP` keep upstream's per-Service shape: a
//! `service-`/`local-`/`external-` chain per Service port, an `endpoint-` chain and an
//! `affinity-` set (client addresses, with the Service's timeout) per endpoint. Only these
//! Services cost chains; the sets and checks they share with the flat layout (cluster-ips,
//! no-endpoint verdicts, firewall, hairpin) are the same elements.

use std::net::Ipv4Addr;

use super::{Fragment, MARK_MASQ, Plan, RenderContext, SERVICE_IPS, external_addrs, goto, jump};
use crate::model::{Categorized, Endpoint, ServicePortInfo};
use crate::nft::{Addr, ElemKey, Rule, SetKind, Stmt, Verdict};

/// A short, stable hash of `name`: 8 characters of base32 over FNV-1a (64 bits).
pub fn hash8(name: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..8)
        .map(|i| char::from(ALPHABET[((h >> (59 - 5 * i)) & 31) as usize]))
        .collect()
}

/// Longest chain-name base (nft names are at most 255 bytes, less our prefixes).
const NAME_BASE_MAX: usize = 240;

fn hashed(name: String) -> String {
    let mut out = format!("{}-{name}", hash8(&name));
    if out.len() > NAME_BASE_MAX {
        out.truncate(NAME_BASE_MAX - 3);
        out.push_str("...");
    }
    out
}

/// The chain and set names of one Service port.
struct Names {
    cluster: String,
    local: String,
    external: String,
    base: String,
    timeout: u32,
}

impl Names {
    fn new(svc: &ServicePortInfo) -> Names {
        let base = svc.name.chain_base();
        let h = hashed(base.clone());
        Names {
            cluster: format!("service-{h}"),
            local: format!("local-{h}"),
            external: format!("external-{h}"),
            base,
            timeout: svc.affinity_timeout.unwrap_or(0),
        }
    }

    fn endpoint(&self, ep: &Endpoint) -> String {
        format!(
            "endpoint-{}",
            hashed(format!("{}__{}/{}", self.base, ep.ip, ep.port))
        )
    }

    /// The affinity set's name carries its timeout: a new timeout is a new set, so a
    /// transaction never deletes and re-creates a set under the same name.
    fn affinity(&self, ep: &Endpoint) -> String {
        let base = format!("{}__{}/{}__{}s", self.base, ep.ip, ep.port, self.timeout);
        format!("affinity-{}", hashed(base))
    }
}

/// The per-Service chains of an affinity Service port and its `service-ips` elements.
pub(super) fn dispatch(
    f: &mut Fragment,
    ctx: &RenderContext,
    svc: &ServicePortInfo,
    cat: &Categorized,
    plan: &Plan,
) {
    let names = Names::new(svc);
    let proto = svc.name.protocol;
    let key = |ip: Ipv4Addr, port: u16| ElemKey::IpProtoPort(ip, proto, port);
    if plan.has_internal {
        let chain = if svc.internal_local {
            &names.local
        } else {
            &names.cluster
        };
        let v = Verdict::Goto(chain.clone());
        f.verdict(SERVICE_IPS, key(svc.cluster_ip, svc.port), v);
    }
    if plan.has_any {
        let addrs = external_addrs(ctx, svc);
        if !addrs.is_empty() {
            external_chain(f, svc, &names, plan, ctx);
        }
        for (ip, port) in addrs {
            let v = Verdict::Goto(names.external.clone());
            f.verdict(SERVICE_IPS, key(ip, port), v);
        }
    }
    if let Some(timeout) = svc.affinity_timeout {
        for ep in &cat.reachable {
            f.sets
                .insert(names.affinity(ep), SetKind::Affinity(timeout));
        }
    }
    let uses_cluster = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
    if uses_cluster {
        balance(f, &names, &names.cluster, &cat.cluster);
    }
    if !cat.local.is_empty() && svc.uses_local_endpoints() {
        balance(f, &names, &names.local, &cat.local);
    }
    for ep in &cat.reachable {
        endpoint_chain(f, svc, &names, ep);
    }
}

fn external_chain(
    f: &mut Fragment,
    svc: &ServicePortInfo,
    names: &Names,
    plan: &Plan,
    ctx: &RenderContext,
) {
    let ext = names.external.as_str();
    f.chain(ext);
    if !svc.external_local {
        // Cluster policy may cross nodes: masquerade so replies come back here.
        f.rule(ext, vec![jump(MARK_MASQ)]);
        if plan.has_external {
            f.rule(ext, vec![goto(&names.cluster)]);
        }
        return;
    }
    if svc.uses_cluster_endpoints() {
        if let Some(cidr) = ctx.cluster_cidr {
            // Pods reaching an external address use the whole cluster.
            f.rule(
                ext,
                vec![Stmt::Saddr(false, Addr::Cidr(cidr)), goto(&names.cluster)],
            );
        }
        f.rule(ext, vec![Stmt::FibSaddrLocal, jump(MARK_MASQ)]);
        f.rule(ext, vec![Stmt::FibSaddrLocal, goto(&names.cluster)]);
    }
    if plan.has_external {
        f.rule(ext, vec![goto(&names.local)]);
    }
}

/// Session affinity, then a uniform random choice among `endpoints`: rule `i` takes endpoint
/// `i` with probability 1/(n-i), so each gets 1/n.
fn balance(f: &mut Fragment, names: &Names, chain: &str, endpoints: &[Endpoint]) {
    let chain_rules = f.chain(chain);
    for ep in endpoints {
        chain_rules.push(Rule(vec![
            Stmt::Saddr(false, Addr::Set(names.affinity(ep))),
            goto(&names.endpoint(ep)),
        ]));
    }
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let remaining = u32::try_from(n - i).unwrap_or(u32::MAX);
        let mut stmts = Vec::new();
        if remaining > 1 {
            stmts.push(Stmt::Numgen(remaining, 0));
        }
        stmts.push(goto(&names.endpoint(ep)));
        chain_rules.push(Rule(stmts));
    }
}

fn endpoint_chain(f: &mut Fragment, svc: &ServicePortInfo, names: &Names, ep: &Endpoint) {
    let chain = names.endpoint(ep);
    f.rule(&chain, vec![Stmt::UpdateSaddr(names.affinity(ep))]);
    f.rule(
        &chain,
        vec![Stmt::L4Proto(svc.name.protocol), Stmt::Dnat(ep.ip, ep.port)],
    );
}
