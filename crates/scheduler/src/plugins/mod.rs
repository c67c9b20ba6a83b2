//! The in-tree plugins, one per module, and upstream's default profile assembled from them.

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;

#[cfg(test)]
mod default_preemption_tests;

use std::sync::Arc;

use crate::api::SharedApi;
use crate::framework::Framework;
use crate::listers::Listers;

/// Upstream's default profile (`default-scheduler`): plugin order per extension point and score
/// weights (TaintToleration 3; NodeAffinity, PodTopologySpread, InterPodAffinity 2; the rest 1).
pub fn default_framework(listers: Listers, api: SharedApi) -> Framework {
    default_framework_with(
        listers.clone(),
        Arc::clone(&api),
        default_preemption::DefaultPreemption::new(listers),
    )
}

/// [`default_framework`] with a given preemption plugin (tests pin its random offset).
pub fn default_framework_with(
    listers: Listers,
    api: SharedApi,
    preemption: default_preemption::DefaultPreemption,
) -> Framework {
    let gates = Arc::new(scheduling_gates::SchedulingGates);
    let unschedulable = Arc::new(node_unschedulable::NodeUnschedulable);
    let node_name = Arc::new(node_name::NodeName);
    let taints = Arc::new(taint_toleration::TaintToleration);
    let affinity = Arc::new(node_affinity::NodeAffinity);
    let ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit);
    let volumes = Arc::new(volume_binding::VolumeBinding::new(
        listers.clone(),
        Arc::clone(&api),
    ));
    let spread = Arc::new(pod_topology_spread::PodTopologySpread::new(listers.clone()));
    let pod_affinity = Arc::new(inter_pod_affinity::InterPodAffinity::new(listers));
    let balanced = Arc::new(balanced_allocation::BalancedAllocation);
    let images = Arc::new(image_locality::ImageLocality);

    let mut fw = Framework::new(Arc::new(priority_sort::PrioritySort));
    fw.pre_enqueue.push(gates);
    fw.pre_filter.extend([
        affinity.clone() as Arc<dyn crate::framework::PreFilterPlugin>,
        ports.clone(),
        volumes.clone(),
        spread.clone(),
        pod_affinity.clone(),
    ]);
    fw.filter.extend([
        unschedulable as Arc<dyn crate::framework::FilterPlugin>,
        node_name,
        taints.clone(),
        affinity.clone(),
        ports,
        fit.clone(),
        volumes.clone(),
        spread.clone(),
        pod_affinity.clone(),
    ]);
    fw.post_filter.push(Arc::new(preemption));
    fw.pre_score.extend([
        taints.clone() as Arc<dyn crate::framework::PreScorePlugin>,
        affinity.clone(),
        spread.clone(),
        pod_affinity.clone(),
        balanced.clone(),
        images.clone(),
    ]);
    fw.score.extend([
        (taints as Arc<dyn crate::framework::ScorePlugin>, 3),
        (affinity, 2),
        (fit, 1),
        (spread, 2),
        (pod_affinity, 2),
        (balanced, 1),
        (images, 1),
    ]);
    fw.reserve.push(volumes.clone());
    fw.pre_bind.push(volumes);
    fw.bind
        .push(Arc::new(default_binder::DefaultBinder::new(api)));
    fw
}
