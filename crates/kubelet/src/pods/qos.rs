//! Quality of service classes (upstream's `GetPodQOS`) and resource quantities.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity in milli-units, rounded up.
pub fn milli(q: &Quantity) -> i64 {
    let nano = k8rs_api::quantity::value(q).unwrap_or(0);
    let m = nano / 1_000_000 + i128::from(nano % 1_000_000 > 0);
    i64::try_from(m).unwrap_or(i64::MAX)
}

/// A quantity in whole units, rounded up.
pub fn whole(q: &Quantity) -> i64 {
    let nano = k8rs_api::quantity::value(q).unwrap_or(0);
    let v = nano / 1_000_000_000 + i128::from(nano % 1_000_000_000 > 0);
    i64::try_from(v).unwrap_or(i64::MAX)
}

type List = BTreeMap<String, Quantity>;

fn lists(c: &Container) -> (List, List) {
    let r = c.resources.clone().unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let mut requests = r.requests.unwrap_or_default();
    for (k, v) in &limits {
        requests.entry(k.clone()).or_insert_with(|| v.clone());
    }
    (requests, limits)
}

fn all_containers(pod: &Pod) -> Vec<Container> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut all = spec.init_containers.clone().unwrap_or_default();
    all.extend(spec.containers.iter().cloned());
    all
}

/// `Guaranteed`, `Burstable` or `BestEffort`.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers = all_containers(pod);
    let compute = ["cpu", "memory"];
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let (requests, limits) = lists(c);
        for name in compute {
            let req = requests.get(name).map(milli).unwrap_or(0);
            let lim = limits.get(name).map(milli).unwrap_or(0);
            any |= req > 0 || lim > 0;
            if lim == 0 || req != lim {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}
