//! ImageLocality: prefers nodes that already have the pod's images, weighted by image size and
//! by how widely the image is spread (so one node holding a popular image does not attract
//! everything).

use std::sync::Arc;

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::snapshot::Snapshot;

/// The plugin's name.
pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The ImageLocality plugin. Its PreScore weighs the pod's images once per cycle (size times
/// spread, which do not depend on the node), so that Score only checks which of them a node
/// has. When that cannot tell nodes apart (every node has all of them, or even all of them
/// together stay below the 23 MB threshold, as a pause image does) every node gets the same
/// score without being looked at.
#[derive(Debug, Default)]
pub struct ImageLocality;

const PRE_SCORE_KEY: &str = "PreScoreImageLocality";

#[derive(Clone)]
struct PreScoreState {
    /// The pod's images that some node has, with their scaled sizes.
    weighted: Vec<(String, i64)>,
    containers: i64,
    /// The score of every node, when it is the same for all.
    uniform: Option<i64>,
}

/// Upstream's `normalizedImageName`: a name without a tag gets `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if colon.is_none() || colon <= slash {
        format!("{name}:latest")
    } else {
        name.to_owned()
    }
}

fn pod_images(pod: &PodInfo) -> (Vec<String>, i64) {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return (Vec::new(), 0);
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let count = containers.clone().count() as i64;
    let images = containers
        .filter_map(|c| c.image.as_deref())
        .map(normalized_image_name)
        .collect();
    (images, count)
}

/// Upstream's `calculatePriority`: the summed scaled sizes clamped to the thresholds and mapped
/// onto 0–100.
pub fn calculate_priority(sum: i64, containers: i64) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1);
    let clamped = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// Each of `images` that some node has, with upstream's scaled size: the image's size times the
/// fraction of nodes that have it.
fn weights(images: &[String], snapshot: &Snapshot) -> Vec<(String, i64)> {
    let total = snapshot.len().max(1) as f64;
    images
        .iter()
        .filter_map(|i| {
            let s = snapshot.image(i)?;
            Some((
                i.clone(),
                (s.size as f64 * (s.num_nodes as f64 / total)) as i64,
            ))
        })
        .collect()
}

fn score_weighted(weighted: &[(String, i64)], containers: i64, node: &NodeInfo) -> i64 {
    let sum: i64 = weighted
        .iter()
        .filter(|(i, _)| node.images.iter().any(|n| n == i))
        .map(|(_, w)| w)
        .sum();
    calculate_priority(sum, containers)
}

/// The score of `node` for a pod with these (normalized) images and container count, given the
/// cluster-wide image spread in `snapshot`.
pub fn image_score(
    images: &[String],
    containers: i64,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> i64 {
    score_weighted(&weights(images, snapshot), containers, node)
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let (images, containers) = pod_images(pod);
        let weighted = weights(&images, snapshot);
        let most: i64 = weighted.iter().map(|(_, w)| w).sum();
        let everywhere = images.iter().all(|i| {
            snapshot
                .image(i)
                .is_some_and(|s| s.num_nodes >= snapshot.len())
        });
        let uniform =
            (most <= MIN_THRESHOLD || everywhere).then(|| calculate_priority(most, containers));
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                weighted,
                containers,
                uniform,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        if let Some(score) = s.uniform {
            return Ok(score);
        }
        Ok(score_weighted(&s.weighted, s.containers, node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalized_image_name("registry:5000/app"),
            "registry:5000/app:latest"
        );
        assert_eq!(
            normalized_image_name("registry:5000/app:v1"),
            "registry:5000/app:v1"
        );
    }

    #[test]
    fn nodes_with_the_image_score_higher() {
        let big = 500 * MB;
        let snapshot = Snapshot::from_nodes([
            NodeBuilder::new("has").image(&["app:v1"], big).info(),
            NodeBuilder::new("also").image(&["app:v1"], big).info(),
            NodeBuilder::new("lacks").info(),
            NodeBuilder::new("small").image(&["tiny:latest"], MB).info(),
        ]);
        let mut state = CycleState::new();
        let pod = PodBuilder::new("p").image("app:v1").info();
        ImageLocality.pre_score(&mut state, &pod, &[], &snapshot);
        let scores: Vec<i64> = snapshot
            .iter()
            .map(|n| ImageLocality.score(&state, &pod, n).unwrap_or(-1))
            .collect();
        // 500MB spread over half the nodes: 250MB -> 100 * (250-23) / (1000-23) = 23.
        assert_eq!(scores, [23, 23, 0, 0]);
    }

    #[test]
    fn scores_that_cannot_differ_skip_the_nodes() {
        let big = 500 * MB;
        let everywhere = Snapshot::from_nodes([
            NodeBuilder::new("a").image(&["app:v1"], big).info(),
            NodeBuilder::new("b").image(&["app:v1"], big).info(),
        ]);
        let small = Snapshot::from_nodes([
            NodeBuilder::new("a").image(&["pause:3.10"], MB).info(),
            NodeBuilder::new("b").info(),
        ]);
        let elsewhere = NodeBuilder::new("c").info();
        for (snapshot, image, want) in [(everywhere, "app:v1", 48), (small, "pause:3.10", 0)] {
            let mut state = CycleState::new();
            let pod = PodBuilder::new("p").image(image).info();
            ImageLocality.pre_score(&mut state, &pod, &[], &snapshot);
            let uniform = state
                .read::<PreScoreState>(PRE_SCORE_KEY)
                .and_then(|s| s.uniform);
            assert_eq!(uniform, Some(want), "{image}");
            // The same score a node-by-node check gives.
            for node in snapshot.iter() {
                let (images, containers) = pod_images(&pod);
                assert_eq!(image_score(&images, containers, node, &snapshot), want);
            }
            assert_eq!(
                ImageLocality.score(&state, &pod, &elsewhere).ok(),
                Some(want)
            );
        }
    }
}
