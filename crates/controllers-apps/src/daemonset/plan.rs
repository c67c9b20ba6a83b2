//! The decisions of one DaemonSet sync, without IO, as upstream's `daemon_controller.go` and
//! `update.go`: which nodes should run a daemon pod, which pods to create and delete (also for
//! a RollingUpdate bounded by maxUnavailable), and the status.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::jiff::Timestamp;

use crate::history::REVISION_HASH_LABEL;
use crate::pods;

/// One write of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a daemon pod pinned to this node.
    Create { node: String },
    /// Delete this pod.
    Delete { pod: String },
}

/// The tolerations upstream adds to every daemon pod.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut list = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list
}

fn tolerates(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != effect)
    {
        return false;
    }
    match t.operator.as_deref() {
        Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == key),
        _ => t.key.as_deref() == Some(key) && t.value.as_deref().unwrap_or("") == value,
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let any = term
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
        || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
    any && exprs
        .clone()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.clone().all(|r| {
            let v = (r.key == "metadata.name").then_some(name);
            requirement_matches(r, v)
        })
}

/// Whether a daemon pod of `template` should run on `node` (upstream's `NodeShouldRunDaemonPod`
/// without resource fit: nodeSelector, required node affinity, taints with the default
/// tolerations).
pub fn should_run(template: &PodTemplateSpec, node: &Node) -> bool {
    let spec = template.spec.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(req) = required
        && !req
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, &labels, &name))
    {
        return false;
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(default_tolerations(spec.host_network.unwrap_or(false)));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| {
            let value = t.value.as_deref().unwrap_or("");
            tolerations
                .iter()
                .any(|tol| tolerates(tol, &t.key, value, &t.effect))
        })
}

/// The pod template for `node`: the revision hash label, the default tolerations and a
/// required node affinity on `metadata.name` (upstream pins daemon pods this way, leaving the
/// binding to the scheduler).
pub fn pod_template(ds: &DaemonSet, hash: &str, node: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    t.metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert(REVISION_HASH_LABEL.into(), hash.into());
    let spec = t.spec.get_or_insert_default();
    let tolerations = spec.tolerations.get_or_insert_default();
    for d in default_tolerations(spec.host_network.unwrap_or(false)) {
        if !tolerations
            .iter()
            .any(|t| t.key == d.key && t.effect == d.effect)
        {
            tolerations.push(d);
        }
    }
    let pin = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        let fields = term.match_fields.get_or_insert_default();
        fields.retain(|f| f.key != "metadata.name");
        fields.push(pin.clone());
    }
    t
}

/// The node a daemon pod is for: its nodeName, else its pinned `metadata.name`.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| f.values.as_ref()?.first().cloned())?
        })
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn rolling_param(ds: &DaemonSet, surge: bool, desired: i32) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let v = if surge {
        ru.and_then(|r| r.max_surge.clone())
            .unwrap_or(IntOrString::Int(0))
    } else {
        ru.and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1))
    };
    crate::deployment::util::scaled_value(&v, desired, true)
        .unwrap_or(0)
        .max(0)
}

/// Upstream's `updatedDesiredNodeCounts`: (maxSurge, maxUnavailable), maxUnavailable being 1
/// when both are zero.
fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let surge = rolling_param(ds, true, desired);
    let unavailable = rolling_param(ds, false, desired);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn on_delete(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

fn delete(pod: &Pod) -> Action {
    Action::Delete {
        pod: pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// The pods to delete among the running pods of one node: all but the oldest, except that with
/// surge a new pod may run beside the oldest old one until it is available (upstream's
/// `podsShouldBeOnNode`).
fn extra_pods(
    live: &[&Arc<Pod>],
    hash: &str,
    surge: bool,
    min_ready: i32,
    now: Timestamp,
) -> Vec<Action> {
    if !surge {
        return live.iter().skip(1).map(|p| delete(p)).collect();
    }
    let (mut oldest_new, mut oldest_old) = (None, None);
    let mut actions = Vec::new();
    for pod in live {
        let slot = if hash_of(pod) == Some(hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(*pod);
        } else {
            actions.push(delete(pod));
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!pods::is_ready(old) || pods::is_available(new, min_ready, now))
    {
        actions.push(delete(old));
    }
    actions
}

/// Decides one sync: `owned` are the daemon set's pods, `hash` its current revision's.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    owned: &[Arc<Pod>],
    hash: &str,
    now: Timestamp,
) -> (Vec<Action>, DaemonSetStatus) {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut by_node: BTreeMap<String, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let eligible = nodes.iter().filter(|n| should_run(&template, n)).count();
    let desired = i32::try_from(eligible).unwrap_or(i32::MAX);
    let (max_surge, max_unavailable) = surge_and_unavailable(ds, desired);
    let surge = !on_delete(ds) && max_surge > 0;
    let mut actions = Vec::new();
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        ..Default::default()
    };
    let mut running: Vec<(String, Vec<Arc<Pod>>)> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut pods: Vec<&Arc<Pod>> = by_node.remove(&name).unwrap_or_default();
        if !should_run(&template, node) {
            if !pods.is_empty() {
                status.number_misscheduled += 1;
            }
            actions.extend(pods.iter().map(|p| delete(p)));
            continue;
        }
        status.desired_number_scheduled += 1;
        let (failed, mut live): (Vec<_>, Vec<_>) =
            pods.drain(..).partition(|p| pods::phase(p) == "Failed");
        actions.extend(failed.iter().map(|p| delete(p)));
        if live.is_empty() {
            actions.push(Action::Create { node: name });
            continue;
        }
        status.current_number_scheduled += 1;
        live.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        actions.extend(extra_pods(&live, hash, surge, min_ready, now));
        let pod = live[0];
        if pods::is_ready(pod) {
            status.number_ready += 1;
        }
        if pods::is_available(pod, min_ready, now) {
            status.number_available = Some(status.number_available.unwrap_or(0) + 1);
        }
        if hash_of(pod) == Some(hash) {
            status.updated_number_scheduled =
                Some(status.updated_number_scheduled.unwrap_or(0) + 1);
        }
        running.push((name, live.into_iter().cloned().collect()));
    }
    // Pods on nodes that are gone.
    for pods in by_node.values() {
        actions.extend(pods.iter().map(|p| delete(p)));
    }
    let available = status.number_available.unwrap_or(0);
    let unavailable = status.desired_number_scheduled - available;
    status.number_unavailable = (unavailable > 0).then_some(unavailable);
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(status.updated_number_scheduled.unwrap_or(0));
    if ds.metadata.deletion_timestamp.is_some() {
        // Being deleted: the garbage collector removes the pods; nothing is created.
        return (Vec::new(), status);
    }
    if !on_delete(ds) && actions.is_empty() {
        let update = Update {
            hash,
            min_ready,
            now,
        };
        actions.extend(if surge {
            update.with_surge(&running, max_surge)
        } else {
            update.without_surge(&running, max_unavailable)
        });
    }
    (actions, status)
}

/// Upstream's `findUpdatedPodsOnNode`: the node's pod at `hash` and its other pod; `None` when
/// there are several of either.
fn new_and_old<'a>(pods: &'a [Arc<Pod>], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) =
        pods.iter().partition(|p| hash_of(p) == Some(hash));
    if new.len() > 1 || old.len() > 1 {
        return None;
    }
    Some((
        new.first().copied().map(Arc::as_ref),
        old.first().copied().map(Arc::as_ref),
    ))
}

struct Update<'a> {
    hash: &'a str,
    min_ready: i32,
    now: Timestamp,
}

impl Update<'_> {
    fn available(&self, pod: &Pod) -> bool {
        pods::is_available(pod, self.min_ready, self.now)
    }

    /// Without surge: old pods that are unavailable go at once, available ones while fewer
    /// than maxUnavailable daemon pods are unavailable.
    fn without_surge(&self, running: &[(String, Vec<Arc<Pod>>)], max: i32) -> Vec<Action> {
        let mut unavailable = 0;
        let mut deletes = Vec::new();
        let mut candidates = Vec::new();
        for (_, pods) in running {
            match new_and_old(pods, self.hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += i32::from(!self.available(new)),
                Some((None, Some(old))) if !self.available(old) => deletes.push(delete(old)),
                Some((None, Some(_))) if unavailable >= max => {}
                Some((None, Some(old))) => candidates.push(delete(old)),
            }
        }
        let room = usize::try_from((max - unavailable).max(0)).unwrap_or(0);
        deletes.extend(candidates.into_iter().take(room));
        deletes
    }

    /// With surge (upstream's surge branch of `rollingUpdate`): a node whose old pod is
    /// unavailable gets its new pod at once, available old pods get one while fewer than
    /// maxSurge new pods are starting, and an old pod goes once its node's new pod is
    /// available.
    fn with_surge(&self, running: &[(String, Vec<Arc<Pod>>)], max_surge: i32) -> Vec<Action> {
        let mut surging = 0;
        let (mut deletes, mut allowed, mut candidates) = (Vec::new(), Vec::new(), Vec::new());
        for (node, pods) in running {
            match new_and_old(pods, self.hash) {
                None => surging += 1,
                Some((_, None)) => {}
                Some((None, Some(old))) if !self.available(old) => allowed.push(node.clone()),
                Some((None, Some(_))) => candidates.push(node.clone()),
                Some((Some(new), Some(_))) if !self.available(new) => surging += 1,
                Some((Some(_), Some(old))) => deletes.push(delete(old)),
            }
        }
        let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
        allowed.extend(candidates.into_iter().take(room));
        deletes.extend(allowed.into_iter().map(|node| Action::Create { node }));
        deletes
    }
}
