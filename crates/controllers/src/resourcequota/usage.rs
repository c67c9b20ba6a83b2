//! What a quota's resources use, as upstream's quota evaluators measure it
//! (`pkg/quota/v1/evaluator/core`): pods (object count, the `pods` count of pods that are not
//! terminal, and their compute requests and limits with the init-container and sidecar rules of
//! upstream's `PodRequests`/`PodLimits`), services (count, node ports, load balancers),
//! persistent volume claims (count and storage, also per storage class) and the object count of
//! any other resource. Scopes and the scope selector restrict what is counted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceQuota, ScopedResourceSelectorRequirement,
    Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::quantity::Qty;

/// Quantities by resource name.
pub type Usage = BTreeMap<String, Qty>;

/// Object counts of the resources watched only for their count: group-resource
/// (`configmaps`, `deployments.apps`) → namespace → number of objects. A resource missing here
/// is not (yet) known, and its quota entries keep their last observation.
pub type Counts = BTreeMap<String, BTreeMap<String, i64>>;

/// The objects of one namespace the evaluators read.
#[derive(Default, Debug)]
pub struct Objects<'a> {
    pub pods: Vec<&'a Pod>,
    pub services: Vec<&'a Service>,
    pub claims: Vec<&'a PersistentVolumeClaim>,
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// Which evaluator measures a quota resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evaluator {
    Pods,
    Services,
    Claims,
    /// The object count of a group-resource.
    Count(String),
}

/// Native resource names have no domain, or a `kubernetes.io/` one.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// The evaluator that tracks `resource`, or `None` when none does.
pub fn evaluator_for(resource: &str) -> Option<Evaluator> {
    const POD: &[&str] = &[
        "count/pods",
        "pods",
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
    ];
    let e = match resource {
        r if POD.contains(&r)
            || r.starts_with("hugepages-")
            || r.starts_with("requests.hugepages-")
            || (r.starts_with("requests.") && !is_native(r)) =>
        {
            Evaluator::Pods
        }
        "count/services" | "services" | "services.nodeports" | "services.loadbalancers" => {
            Evaluator::Services
        }
        "count/persistentvolumeclaims" | "persistentvolumeclaims" | "requests.storage" => {
            Evaluator::Claims
        }
        r if r.ends_with(".storageclass.storage.k8s.io/requests.storage")
            || r.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims") =>
        {
            Evaluator::Claims
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            Evaluator::Count(resource.to_string())
        }
        r => Evaluator::Count(r.strip_prefix("count/")?.to_string()),
    };
    Some(e)
}

/// The group-resources a quota counts through [`Counts`].
pub fn counted_resources(quota: &ResourceQuota) -> Vec<String> {
    hard_names(quota)
        .filter_map(|r| match evaluator_for(r) {
            Some(Evaluator::Count(gr)) => Some(gr),
            _ => None,
        })
        .collect()
}

fn hard_names(quota: &ResourceQuota) -> impl Iterator<Item = &str> {
    let hard = quota.spec.as_ref().and_then(|s| s.hard.as_ref());
    hard.into_iter().flatten().map(|(k, _)| k.as_str())
}

/// The usage of every resource of `quota`'s hard limits that an evaluator tracks (zero when
/// nothing uses it); resources no evaluator knows are left out.
pub fn calculate(
    quota: &ResourceQuota,
    objects: &Objects,
    counts: &Counts,
    now: Timestamp,
) -> Usage {
    let mut by_evaluator: BTreeMap<Evaluator, Vec<&str>> = BTreeMap::new();
    for r in hard_names(quota) {
        if let Some(e) = evaluator_for(r) {
            by_evaluator.entry(e).or_default().push(r);
        }
    }
    let scopes = Scopes::of(quota);
    let mut out = Usage::new();
    for (evaluator, names) in by_evaluator {
        let mut used: Usage = names.iter().map(|n| (n.to_string(), Qty::ZERO)).collect();
        match &evaluator {
            Evaluator::Pods => {
                for pod in objects.pods.iter().filter(|p| scopes.match_pod(p)) {
                    add_list(&mut used, &pod_usage(pod, now));
                }
            }
            Evaluator::Services if scopes.is_empty() => {
                for svc in &objects.services {
                    add_list(&mut used, &service_usage(svc));
                }
            }
            Evaluator::Claims if scopes.is_empty() => {
                for pvc in &objects.claims {
                    add_list(&mut used, &claim_usage(pvc));
                }
            }
            Evaluator::Count(gr) => {
                let Some(per_ns) = counts.get(gr) else {
                    continue;
                };
                let ns = quota.metadata.namespace.as_deref().unwrap_or_default();
                let n = if scopes.is_empty() {
                    per_ns.get(ns).copied().unwrap_or(0)
                } else {
                    0
                };
                for v in used.values_mut() {
                    *v = Qty::count(n);
                }
            }
            // Services and claims match no scope.
            Evaluator::Services | Evaluator::Claims => {}
        }
        for name in names {
            if let Some(q) = used.remove(name) {
                out.insert(name.to_string(), q);
            }
        }
    }
    out
}

/// Adds `b` into `a` (upstream's `quota.Add`).
pub fn add_list(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        a.entry(k.clone()).or_insert(Qty::ZERO).add(*v);
    }
}

/// Keeps the larger of each (upstream's `maxResourceList`).
fn max_list(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        match a.get(k) {
            Some(cur) if *v <= *cur => {}
            _ => {
                a.insert(k.clone(), *v);
            }
        }
    }
}

fn parse_list(list: Option<&BTreeMap<String, Quantity>>) -> Usage {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Qty::parse(&v.0)?)))
        .collect()
}

/// The scopes of a quota: `spec.scopes` and the scope selector's expressions.
struct Scopes<'a> {
    names: Vec<&'a str>,
    selector: Vec<&'a ScopedResourceSelectorRequirement>,
}

impl<'a> Scopes<'a> {
    fn of(quota: &'a ResourceQuota) -> Self {
        let spec = quota.spec.as_ref();
        let names = spec.and_then(|s| s.scopes.as_ref());
        let exprs = spec
            .and_then(|s| s.scope_selector.as_ref())
            .and_then(|s| s.match_expressions.as_ref());
        Scopes {
            names: names.into_iter().flatten().map(String::as_str).collect(),
            selector: exprs.into_iter().flatten().collect(),
        }
    }
    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.selector.is_empty()
    }
    fn match_pod(&self, pod: &Pod) -> bool {
        self.names
            .iter()
            .all(|n| pod_matches_scope(pod, n, "Exists", &[]))
            && self.selector.iter().all(|s| {
                let values = s.values.as_deref().unwrap_or_default();
                pod_matches_scope(pod, &s.scope_name, &s.operator, values)
            })
    }
}

/// Whether `pod` is in a scope (upstream's `podMatchesScopeFunc`).
pub fn pod_matches_scope(pod: &Pod, scope: &str, operator: &str, values: &[String]) -> bool {
    let spec = pod.spec.as_ref();
    match scope {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .filter(|c| !c.is_empty());
            match (operator, class) {
                ("Exists", c) => c.is_some(),
                ("DoesNotExist", c) => c.is_none(),
                ("In", Some(c)) => values.iter().any(|v| v == c),
                ("NotIn", Some(c)) => !values.iter().any(|v| v == c),
                ("NotIn", None) => true,
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

fn is_terminating(pod: &Pod) -> bool {
    let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
    deadline.is_some_and(|d| d >= 0)
}

/// BestEffort QoS: the status says so, or no container asks for or limits cpu or memory.
pub fn is_best_effort(pod: &Pod) -> bool {
    let status_class = pod.status.as_ref().and_then(|s| s.qos_class.as_deref());
    if let Some(class) = status_class.filter(|c| !c.is_empty()) {
        return class == "BestEffort";
    }
    let positive = |list: Option<&BTreeMap<String, Quantity>>| {
        list.into_iter().flatten().any(|(k, v)| {
            (k == "cpu" || k == "memory") && Qty::parse(&v.0).is_some_and(|q| q.nano > 0)
        })
    };
    !all_containers(pod).any(|c| {
        let r = c.resources.as_ref();
        positive(r.and_then(|r| r.requests.as_ref())) || positive(r.and_then(|r| r.limits.as_ref()))
    })
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let init = spec.and_then(|s| s.init_containers.as_ref());
    spec.map(|s| &s.containers)
        .into_iter()
        .flatten()
        .chain(init.into_iter().flatten())
}

fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    use k8s_openapi::api::core::v1::PodAffinityTerm;
    let cross = |t: &PodAffinityTerm| {
        t.namespaces.as_ref().is_some_and(|n| !n.is_empty()) || t.namespace_selector.is_some()
    };
    let Some(aff) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let terms =
        |req: Option<&Vec<PodAffinityTerm>>,
         pref: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            req.into_iter().flatten().any(cross)
                || pref
                    .into_iter()
                    .flatten()
                    .any(|w| cross(&w.pod_affinity_term))
        };
    let a = aff.pod_affinity.as_ref();
    let anti = aff.pod_anti_affinity.as_ref();
    terms(
        a.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        a.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }),
    ) || terms(
        anti.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        anti.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }),
    )
}

/// When a pod being deleted stops being charged: its deletion time plus its grace period.
pub fn grace_expiry(pod: &Pod) -> Option<Timestamp> {
    let deleted = pod.metadata.deletion_timestamp.as_ref()?.0;
    let grace = pod.metadata.deletion_grace_period_seconds?;
    deleted.checked_add(SignedDuration::from_secs(grace)).ok()
}

/// Whether a pod's compute resources are charged (upstream's `QuotaV1Pod`): not terminal, and
/// not deleted past its grace period.
pub fn is_charged(pod: &Pod, now: Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    grace_expiry(pod).is_none_or(|end| now <= end)
}

/// The usage of one pod: always its object count, and for a charged pod `pods` and compute.
pub fn pod_usage(pod: &Pod, now: Timestamp) -> Usage {
    let mut u = Usage::from([("count/pods".to_string(), Qty::count(1))]);
    if is_charged(pod, now) {
        let compute = compute_usage(&pod_requests(pod), &pod_limits(pod));
        add_list(&mut u, &compute);
    }
    u
}

/// Upstream's `podComputeUsageHelper`: the quota names of a pod's requests and limits.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut u = Usage::from([("pods".to_string(), Qty::count(1))]);
    for res in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(res) {
            u.insert(res.to_string(), *q);
            u.insert(format!("requests.{res}"), *q);
        }
        if let Some(q) = limits.get(res) {
            u.insert(format!("limits.{res}"), *q);
        }
    }
    for (res, q) in requests {
        if res.starts_with("hugepages-") {
            u.insert(res.clone(), *q);
            u.insert(format!("requests.{res}"), *q);
        } else if !is_native(res) && !res.starts_with("requests.") {
            u.insert(format!("requests.{res}"), *q);
        }
    }
    u
}

type Pick = fn(&Container) -> Option<&BTreeMap<String, Quantity>>;

/// Regular containers and sidecars add up; each other init container runs alone (beside the
/// sidecars started before it), so the pod needs the larger of the two (upstream's
/// `AggregateContainerRequests`).
fn aggregate(pod: &Pod, pick: Pick) -> Usage {
    let Some(spec) = pod.spec.as_ref() else {
        return Usage::new();
    };
    let mut total = Usage::new();
    for c in &spec.containers {
        add_list(&mut total, &parse_list(pick(c)));
    }
    let (mut sidecars, mut init_max) = (Usage::new(), Usage::new());
    for c in spec.init_containers.iter().flatten() {
        let own = parse_list(pick(c));
        let effective = if c.restart_policy.as_deref() == Some("Always") {
            add_list(&mut total, &own);
            add_list(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut alone = own;
            add_list(&mut alone, &sidecars);
            alone
        };
        max_list(&mut init_max, &effective);
    }
    max_list(&mut total, &init_max);
    total
}

/// The pod's requests plus its overhead.
pub fn pod_requests(pod: &Pod) -> Usage {
    let mut reqs = aggregate(pod, |c| c.resources.as_ref()?.requests.as_ref());
    let overhead = pod.spec.as_ref().and_then(|s| s.overhead.as_ref());
    add_list(&mut reqs, &parse_list(overhead));
    reqs
}

/// The pod's limits plus its overhead for the resources that have a limit.
pub fn pod_limits(pod: &Pod) -> Usage {
    let mut limits = aggregate(pod, |c| c.resources.as_ref()?.limits.as_ref());
    let overhead = parse_list(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()));
    for (k, v) in overhead {
        if let Some(l) = limits.get_mut(&k) {
            l.add(v);
        }
    }
    limits
}

fn service_usage(svc: &Service) -> Usage {
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_ref());
    let n_ports = i64::try_from(ports.map_or(0, Vec::len)).unwrap_or(i64::MAX);
    let (mut lbs, mut node_ports) = (0, 0);
    match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => node_ports = n_ports,
        Some("LoadBalancer") => {
            lbs = 1;
            node_ports = if spec.and_then(|s| s.allocate_load_balancer_node_ports) == Some(false) {
                let explicit = ports
                    .into_iter()
                    .flatten()
                    .filter(|p| p.node_port.unwrap_or(0) != 0);
                i64::try_from(explicit.count()).unwrap_or(i64::MAX)
            } else {
                n_ports
            };
        }
        _ => {}
    }
    Usage::from([
        ("count/services".to_string(), Qty::count(1)),
        ("services".to_string(), Qty::count(1)),
        ("services.loadbalancers".to_string(), Qty::count(lbs)),
        ("services.nodeports".to_string(), Qty::count(node_ports)),
    ])
}

fn claim_class(pvc: &PersistentVolumeClaim) -> Option<&str> {
    let annotated = pvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BETA_STORAGE_CLASS));
    let class = match annotated {
        Some(c) => Some(c.as_str()),
        None => pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
    };
    class.filter(|c| !c.is_empty())
}

/// The storage a claim is charged: its request, or what was allocated if more, in whole bytes.
fn claim_storage(pvc: &PersistentVolumeClaim) -> Option<Qty> {
    let requests = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    let request = Qty::parse(&requests?.get("storage")?.0)?.round_up_whole();
    let allocated = pvc
        .status
        .as_ref()
        .and_then(|s| s.allocated_resources.as_ref())
        .and_then(|a| a.get("storage"))
        .and_then(|q| Qty::parse(&q.0));
    Some(match allocated {
        Some(a) if a > request => a.round_up_whole(),
        _ => request,
    })
}

fn claim_usage(pvc: &PersistentVolumeClaim) -> Usage {
    let mut u = Usage::from([
        ("persistentvolumeclaims".to_string(), Qty::count(1)),
        ("count/persistentvolumeclaims".to_string(), Qty::count(1)),
    ]);
    let class = claim_class(pvc);
    if let Some(c) = class {
        u.insert(
            format!("{c}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Qty::count(1),
        );
    }
    if let Some(storage) = claim_storage(pvc) {
        u.insert("requests.storage".to_string(), storage);
        if let Some(c) = class {
            u.insert(
                format!("{c}{STORAGE_CLASS_SUFFIX}requests.storage"),
                storage,
            );
        }
    }
    u
}
