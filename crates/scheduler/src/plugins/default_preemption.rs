//! DefaultPreemption: when a pod fits nowhere, find nodes where evicting lower-priority pods makes
//! it fit, and pick one as upstream does (fewest PDB violations, lowest highest victim priority,
//! smallest priority sum, fewest victims, latest start). The plugin only decides; the scheduler
//! nominates the pod, marks the victims with `DisruptionTarget` and deletes them.

use std::cmp::Ordering;
use std::sync::Arc;

use k8rs_machinery::labels::Selector;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::framework::{
    Code, CycleState, FitError, NodeToStatus, Plugin, PostFilterContext, PostFilterPlugin,
    PostFilterResult, Status,
};
use crate::listers::Listers;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";
/// Status of nodes preemption cannot help on.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Status of nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// A node where the pod fits once `victims` are gone.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Pods to evict, most important first.
    pub victims: Vec<Arc<PodInfo>>,
    /// How many victims are protected by a PodDisruptionBudget that would be violated.
    pub pdb_violations: usize,
}

/// Picks where the dry run starts among `n` potential nodes.
pub type OffsetFn = dyn Fn(usize) -> usize + Send + Sync;

/// The DefaultPreemption plugin.
pub struct DefaultPreemption {
    listers: Listers,
    offset: Box<OffsetFn>,
}

impl DefaultPreemption {
    /// The plugin reading PDBs from `listers`, starting dry runs at a random node.
    pub fn new(listers: Listers) -> Self {
        let offset = |n: usize| if n == 0 { 0 } else { rand::random_range(0..n) };
        Self {
            listers,
            offset: Box::new(offset),
        }
    }

    /// The plugin with a deterministic dry-run start (tests).
    pub fn with_offset(listers: Listers, offset: Box<OffsetFn>) -> Self {
        Self { listers, offset }
    }
}

/// Upstream's `MoreImportantPod`: higher priority, then the one that started earlier.
pub fn more_important(a: &PodInfo, b: &PodInfo) -> bool {
    if a.priority != b.priority {
        return a.priority > b.priority;
    }
    start_time(a) < start_time(b)
}

/// `status.startTime` in nanoseconds; pods that have not started count as starting now.
fn start_time(p: &PodInfo) -> i128 {
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_nanosecond())
        .unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().as_nanosecond())
}

fn terminating_by_preemption(p: &PodInfo) -> bool {
    p.is_terminating()
        && p.pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionTarget")
            .is_some_and(|c| {
                c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler")
            })
}

/// Upstream's `filterPodsWithPDBViolation`: splits `pods` (order kept) into those whose eviction
/// would exceed a budget and the rest.
pub fn split_by_pdb_violation(
    pods: &[Arc<PodInfo>],
    pdbs: &[Arc<PodDisruptionBudget>],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .map(|s| s.disruptions_allowed)
                .unwrap_or(0)
        })
        .collect();
    let selectors: Vec<Option<Selector>> = pdbs
        .iter()
        .map(|p| {
            let sel = p.spec.as_ref().and_then(|s| s.selector.as_ref());
            Selector::from_optional_label_selector(sel)
                .ok()
                .filter(|s| !s.is_empty() && !s.is_nothing())
        })
        .collect();
    let (mut violating, mut ok) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violated = false;
        if !pod.labels().is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                let Some(sel) = &selectors[i] else { continue };
                if pdb.metadata.namespace.as_deref() != Some(pod.namespace())
                    || !sel.matches(pod.labels())
                {
                    continue;
                }
                let disrupted = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
                if disrupted.is_some_and(|d| d.contains_key(pod.name())) {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(Arc::clone(pod))
        } else {
            ok.push(Arc::clone(pod))
        }
    }
    (violating, ok)
}

/// Upstream's `pickOneNodeForPreemption`: the first criterion with a unique best wins.
pub fn pick_one(candidates: &[Candidate]) -> Option<&Candidate> {
    let earliest_start = |c: &Candidate| -> i128 {
        let top = c.victims.iter().map(|v| v.priority).max().unwrap_or(0);
        c.victims
            .iter()
            .filter(|v| v.priority == top)
            .map(|v| start_time(v))
            .min()
            .unwrap_or(i128::MIN)
    };
    let criteria: [&dyn Fn(&Candidate) -> i128; 5] = [
        &|c| -(c.pdb_violations as i128),
        &|c| -i128::from(c.victims.first().map(|v| v.priority).unwrap_or(0)),
        &|c| {
            -c.victims
                .iter()
                .map(|v| i128::from(v.priority) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        &|c| -(c.victims.len() as i128),
        &earliest_start,
    ];
    let mut remaining: Vec<&Candidate> = candidates.iter().collect();
    for score in criteria {
        let best = remaining.iter().map(|c| score(c)).max()?;
        remaining.retain(|c| score(c) == best);
        if remaining.len() == 1 {
            break;
        }
    }
    remaining.first().copied()
}

impl DefaultPreemption {
    /// Upstream's `PodEligibleToPreemptOthers`.
    fn eligible(
        &self,
        ctx: &PostFilterContext<'_>,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> Result<(), String> {
        let spec = pod.pod.spec.as_ref();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return Err("not eligible due to preemptionPolicy=Never.".into());
        }
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        let Some(nominated) = nominated else {
            return Ok(());
        };
        if statuses.get(nominated).code == Code::UnschedulableAndUnresolvable {
            return Ok(());
        }
        let Some(node) = ctx.snapshot.get(nominated) else {
            return Ok(());
        };
        if node
            .pods
            .iter()
            .any(|p| p.priority < pod.priority && terminating_by_preemption(p))
        {
            return Err("not eligible due to a terminating pod on the nominated node.".into());
        }
        Ok(())
    }

    /// Upstream's `SelectVictimsOnNode`.
    fn select_victims(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        pdbs: &[Arc<PodDisruptionBudget>],
    ) -> Result<Candidate, Status> {
        let fw = ctx.framework;
        let mut node = node.clone();
        let mut state = state.clone_state();
        let mut potential: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        if potential.is_empty() {
            return Err(Status::unresolvable(NO_VICTIMS));
        }
        for p in &potential {
            node.remove_pod(&p.uid);
            let s = fw.run_remove_pod(&mut state, pod, p, &node);
            if !s.is_success() {
                return Err(s);
            }
        }
        let s = fw.run_filter_with_nominated(&state, pod, &node, ctx.nominated);
        if !s.is_success() {
            return Err(s);
        }
        potential.sort_by(|a, b| {
            if more_important(a, b) {
                Ordering::Less
            } else if more_important(b, a) {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        });
        let (violating, non_violating) = split_by_pdb_violation(&potential, pdbs);
        let mut victims = Vec::new();
        let mut pdb_violations = 0;
        for (group, counts) in [(&violating, true), (&non_violating, false)] {
            for p in group {
                node.add_pod(Arc::clone(p));
                let s = fw.run_add_pod(&mut state, pod, p, &node);
                if !s.is_success() {
                    return Err(s);
                }
                if fw
                    .run_filter_with_nominated(&state, pod, &node, ctx.nominated)
                    .is_success()
                {
                    continue;
                }
                node.remove_pod(&p.uid);
                let s = fw.run_remove_pod(&mut state, pod, p, &node);
                if !s.is_success() {
                    return Err(s);
                }
                victims.push(Arc::clone(p));
                pdb_violations += usize::from(counts);
            }
        }
        if !violating.is_empty() && !non_violating.is_empty() {
            victims.sort_by(|a, b| {
                if more_important(a, b) {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            });
        }
        Ok(Candidate {
            node: node.name().to_owned(),
            victims,
            pdb_violations,
        })
    }

    /// Upstream's `DryRunPreemption` over the nodes Filter found `Unschedulable`.
    fn dry_run(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        potential: &[&Arc<NodeInfo>],
    ) -> (Vec<Candidate>, NodeToStatus) {
        let pdbs = self.listers.pdbs.state();
        let n = potential.len();
        let wanted = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
            .max(MIN_CANDIDATE_NODES_ABSOLUTE)
            .min(n);
        let offset = (self.offset)(n);
        let (mut ok, mut violating) = (Vec::new(), Vec::new());
        let mut statuses = NodeToStatus::default();
        for i in 0..n {
            let node = potential[(offset + i) % n];
            match self.select_victims(ctx, state, pod, node, &pdbs) {
                Ok(c) if c.victims.is_empty() => {
                    let msg = format!("expected at least one victim pod on node {:?}", node.name());
                    statuses.set(node.name(), Status::error(msg));
                }
                Ok(c) => {
                    if c.pdb_violations == 0 {
                        ok.push(c)
                    } else {
                        violating.push(c)
                    }
                    if !ok.is_empty() && ok.len() + violating.len() >= wanted {
                        break;
                    }
                }
                Err(s) => statuses.set(node.name(), s),
            }
        }
        ok.extend(violating);
        (ok, statuses)
    }

    fn preempt(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        if let Err(msg) = self.eligible(ctx, pod, statuses) {
            return (None, Status::unschedulable(msg));
        }
        if ctx.snapshot.is_empty() {
            return (None, Status::error("no nodes available"));
        }
        let potential: Vec<&Arc<NodeInfo>> = ctx
            .snapshot
            .iter()
            .filter(|n| statuses.get(n.name()).code == Code::Unschedulable)
            .collect();
        let (candidates, node_statuses) = if potential.is_empty() {
            (Vec::new(), NodeToStatus::default())
        } else {
            self.dry_run(ctx, state, pod, &potential)
        };
        let Some(best) = pick_one(&candidates) else {
            let mut fit = FitError {
                num_all_nodes: ctx.snapshot.len(),
                diagnosis: Default::default(),
            };
            fit.diagnosis.node_to_status = node_statuses;
            fit.diagnosis
                .node_to_status
                .set_absent(Status::unresolvable(NOT_HELPFUL));
            let clear = PostFilterResult {
                nominated_node: Some(String::new()),
                ..Default::default()
            };
            return (Some(clear), Status::unschedulable(fit.to_string()));
        };
        let clear_nominations = ctx
            .nominated
            .get(&best.node)
            .into_iter()
            .flatten()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        let result = PostFilterResult {
            nominated_node: Some(best.node.clone()),
            victims: best.victims.clone(),
            clear_nominations,
        };
        (Some(result), Status::success())
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        let (result, status) = self.preempt(ctx, state, pod, statuses);
        let msg = status.message();
        if msg.is_empty() {
            return (result, status);
        }
        (
            result,
            Status::new(status.code, format!("preemption: {msg}")),
        )
    }
}
