//! NoExecute taint eviction, as upstream's taint-eviction-controller, without IO: which pods on
//! NoExecute-tainted nodes must go now, and when the next one is due.
//!
//! A pod that does not tolerate every NoExecute taint of its node goes at once; one that
//! tolerates them all goes after the smallest `tolerationSeconds` of the tolerations used,
//! counted from when the (earliest) taint was added; without `tolerationSeconds` it stays.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;

/// Whether `toleration` tolerates `taint`, as upstream's `ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// The node's NoExecute taints.
pub fn no_execute(node: &Node) -> Vec<&Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoExecute")
        .collect()
}

/// How long a pod may stay on a node with `taints`: `None` forever, `Some(0)` not at all.
pub fn allowed_stay(pod: &Pod, taints: &[&Taint]) -> Option<Duration> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut min: Option<Duration> = None;
    for taint in taints {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(Duration::ZERO);
        }
        for t in used {
            if let Some(secs) = t.toleration_seconds {
                let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
                min = Some(min.map_or(d, |m| m.min(d)));
            }
        }
    }
    min
}

/// The pods to evict now (namespace, name, uid) and how long until the next is due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    pub now: Vec<(String, String, String)>,
    pub next: Option<Duration>,
}

fn live(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// One pass of the taint manager over `pods` (any order) on `nodes`.
pub fn plan(now: Timestamp, nodes: &[&Node], pods: &[&Pod]) -> Evictions {
    let tainted: HashMap<&str, (Vec<&Taint>, Timestamp)> = nodes
        .iter()
        .filter_map(|n| {
            let taints = no_execute(n);
            let since = taints
                .iter()
                .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
                .min()
                .unwrap_or(now);
            (!taints.is_empty()).then(|| {
                (
                    n.metadata.name.as_deref().unwrap_or_default(),
                    (taints, since),
                )
            })
        })
        .collect();
    let mut out = Evictions::default();
    for pod in pods.iter().filter(|p| live(p)) {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let Some((taints, since)) = node.and_then(|n| tainted.get(n)) else {
            continue;
        };
        let Some(stay) = allowed_stay(pod, taints) else {
            continue;
        };
        let stay = k8s_openapi::jiff::SignedDuration::try_from(stay).unwrap_or_default();
        let due = since.checked_add(stay).unwrap_or(*since);
        if due <= now {
            out.now.push((
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
                pod.metadata.uid.clone().unwrap_or_default(),
            ));
        } else {
            let wait = Duration::try_from(due.duration_since(now)).unwrap_or_default();
            out.next = Some(out.next.map_or(wait, |n| n.min(wait)));
        }
    }
    out.now.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn toleration_matching_follows_upstream() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        let t = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: Some(effect.into()),
            toleration_seconds: None,
        };
        assert!(tolerates(&t("k", "Equal", "v", "NoExecute"), &taint));
        assert!(tolerates(&t("k", "Exists", "", ""), &taint));
        assert!(tolerates(&t("", "Exists", "", ""), &taint));
        assert!(!tolerates(&t("k", "Equal", "w", "NoExecute"), &taint));
        assert!(!tolerates(&t("k", "Exists", "", "NoSchedule"), &taint));
        assert!(!tolerates(&t("", "Equal", "", ""), &taint));
    }

    #[test]
    fn intolerant_pods_go_at_once_tolerant_ones_after_their_seconds() {
        let added = Timestamp::from_second(1_000).expect("time");
        let n = node("n1")
            .taint("node.kubernetes.io/unreachable", "NoExecute", added)
            .build();
        let plain = pod("plain").on("n1").build();
        let five = pod("five")
            .on("n1")
            .tolerate("node.kubernetes.io/unreachable", Some(5))
            .build();
        let forever = pod("forever")
            .on("n1")
            .tolerate("node.kubernetes.io/unreachable", None)
            .build();
        let elsewhere = pod("elsewhere").on("n2").build();
        let at = |s| Timestamp::from_second(s).expect("time");
        let pods = [&plain, &five, &forever, &elsewhere];
        assert_eq!(
            plan(at(1_002), &[&n], &pods),
            Evictions {
                now: vec![("default".into(), "plain".into(), "plain".into())],
                next: Some(Duration::from_secs(3)),
            }
        );
        let later = plan(at(1_005), &[&n], &pods);
        assert_eq!(later.now.len(), 2);
        assert_eq!(later.next, None);
    }
}
