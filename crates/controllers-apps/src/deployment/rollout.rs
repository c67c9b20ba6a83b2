//! The decisions of one Deployment sync, without IO, as upstream's `sync.go`, `rolling.go`,
//! `recreate.go` and `progress.go`: a [`World`] holds the deployment and its replica sets,
//! each step changes it as the API write would and records the write as an [`Action`].

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::util::*;
use crate::pods;

/// One write of a sync, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this replica set; on success record the ScalingReplicaSet event, if any.
    CreateReplicaSet {
        rs: ReplicaSet,
        event: Option<String>,
    },
    /// Write this replica set's replicas, annotations and minReadySeconds; then the event.
    UpdateReplicaSet {
        rs: ReplicaSet,
        event: Option<String>,
    },
    /// Delete an old replica set beyond the revision history limit.
    DeleteReplicaSet { name: String },
    /// Set the deployment's revision annotation.
    SetRevision(String),
    /// Write the deployment's status.
    UpdateStatus(DeploymentStatus),
}

/// What the sync decided: its writes, and when to look again (for the progress deadline).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub requeue_after: Option<Duration>,
}

/// The deployment and its replica sets as the sync's writes leave them.
struct World<'a> {
    d: &'a Deployment,
    rss: Vec<ReplicaSet>,
    new: Option<usize>,
    status: DeploymentStatus,
    revision: Option<String>,
    actions: Vec<Action>,
    now: Timestamp,
}

/// Decides one sync of `d` over the replica sets it owns. `live_pods` holds the uids of
/// replica sets that still have pods not finished (for Recreate).
pub fn plan(
    d: &Deployment,
    owned: Vec<ReplicaSet>,
    live_pods: &HashSet<String>,
    now: Timestamp,
) -> Plan {
    let mut w = World {
        d,
        rss: owned,
        new: None,
        status: d.status.clone().unwrap_or_default(),
        revision: d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION).cloned()),
        actions: Vec::new(),
        now,
    };
    let original = w.status.clone();
    if d.metadata.deletion_timestamp.is_some() {
        w.sync_revision(false);
        w.sync_status();
    } else {
        w.check_paused_conditions();
        if paused(d) || w.is_scaling_event() {
            w.sync_scale();
        } else if is_recreate(d) {
            w.recreate(live_pods);
        } else {
            w.rolling();
        }
    }
    if w.status != original {
        let status = w.status.clone();
        w.actions.push(Action::UpdateStatus(status));
    }
    let requeue_after = w.stuck_requeue();
    Plan {
        actions: w.actions,
        requeue_after,
    }
}

impl World<'_> {
    fn olds(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new)
            .collect()
    }

    fn refs(&self, idx: &[usize]) -> Vec<&ReplicaSet> {
        idx.iter().map(|i| &self.rss[*i]).collect()
    }

    fn all(&self) -> Vec<&ReplicaSet> {
        self.rss.iter().collect()
    }

    /// Indices sorted oldest first.
    fn by_age(&self, mut idx: Vec<usize>) -> Vec<usize> {
        idx.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        idx
    }

    fn set_revision(&mut self, revision: String) {
        if self.revision.as_ref() != Some(&revision) {
            self.revision = Some(revision.clone());
            self.actions.push(Action::SetRevision(revision));
        }
    }

    /// Upstream's `getAllReplicaSetsAndSyncRevision`: finds the new replica set, syncs its
    /// annotations and the deployment's revision, and creates it when asked and missing.
    fn sync_revision(&mut self, create: bool) {
        let template = template(self.d);
        let order = self.by_age((0..self.rss.len()).collect());
        self.new = order.into_iter().find(|i| {
            let t = self.rss[*i].spec.as_ref().and_then(|s| s.template.as_ref());
            t.is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let max_old = self
            .olds()
            .into_iter()
            .map(|i| rs_revision(&self.rss[i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = self.new {
            return self.sync_existing_new(i, new_revision);
        }
        if create {
            self.create_new(template, new_revision);
        }
    }

    fn sync_existing_new(&mut self, i: usize, new_revision: i64) {
        let mut rs = self.rss[i].clone();
        let mut changed = set_new_rs_annotations(self.d, &mut rs, new_revision, true);
        let spec = rs.spec.get_or_insert_default();
        if spec.min_ready_seconds.unwrap_or(0) != min_ready_seconds(self.d) {
            spec.min_ready_seconds = Some(min_ready_seconds(self.d));
            changed = true;
        }
        if changed {
            self.rss[i] = rs.clone();
            self.actions.push(Action::UpdateReplicaSet {
                rs: rs.clone(),
                event: None,
            });
        }
        self.set_revision(rs_revision(&rs).to_string());
        if progress_deadline(self.d).is_some() && condition(&self.status, PROGRESSING).is_none() {
            let msg = format!(
                "Found new replica set {:?}",
                rs.metadata.name.clone().unwrap_or_default()
            );
            let c = new_condition(PROGRESSING, "True", "FoundNewReplicaSet", msg, self.now);
            set_condition(&mut self.status, c);
        }
    }

    fn create_new(
        &mut self,
        mut template: k8s_openapi::api::core::v1::PodTemplateSpec,
        revision: i64,
    ) {
        let d = self.d;
        let hash = compute_hash(&template, self.status.collision_count);
        template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", d.metadata.name.clone().unwrap_or_default());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![pods::owner_ref(d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(min_ready_seconds(d)),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(d, &mut rs, revision, false);
        self.rss.push(rs);
        let i = self.rss.len() - 1;
        self.new = Some(i);
        let n = self.new_rs_new_replicas(i);
        self.rss[i].spec.get_or_insert_default().replicas = Some(n);
        let event = (n > 0).then(|| format!("Scaled up replica set {name} from 0 to {n}"));
        self.actions.push(Action::CreateReplicaSet {
            rs: self.rss[i].clone(),
            event,
        });
        self.set_revision(revision.to_string());
        if progress_deadline(d).is_some() {
            let msg = format!("Created new replica set {name:?}");
            let c = new_condition(PROGRESSING, "True", "NewReplicaSetCreated", msg, self.now);
            set_condition(&mut self.status, c);
        }
    }

    /// Upstream's `NewRSNewReplicas`.
    fn new_rs_new_replicas(&self, new: usize) -> i32 {
        let desired = replicas(self.d);
        if is_recreate(self.d) {
            return desired;
        }
        let current = spec_total(&self.all());
        let max_total = desired + max_surge(self.d);
        let new_replicas = rs_replicas(&self.rss[new]);
        if current >= max_total {
            return new_replicas;
        }
        let up = (max_total - current).min(desired - new_replicas);
        new_replicas + up
    }

    /// Upstream's `scaleReplicaSet`: writes size and replica annotations; true when resized.
    fn scale_rs(&mut self, i: usize, to: i32, operation: &str) -> bool {
        let (desired, max) = (replicas(self.d), replicas(self.d) + max_surge(self.d));
        let mut rs = self.rss[i].clone();
        let from = rs_replicas(&rs);
        let resize = from != to;
        let annotate = set_replicas_annotations(&mut rs, desired, max);
        if !resize && !annotate {
            return false;
        }
        rs.spec.get_or_insert_default().replicas = Some(to);
        let name = rs.metadata.name.clone().unwrap_or_default();
        let event =
            resize.then(|| format!("Scaled {operation} replica set {name} from {from} to {to}"));
        self.rss[i] = rs.clone();
        self.actions.push(Action::UpdateReplicaSet { rs, event });
        resize
    }

    /// Upstream's `scaleReplicaSetAndRecordEvent`.
    fn scale_and_record(&mut self, i: usize, to: i32) -> bool {
        let from = rs_replicas(&self.rss[i]);
        if from == to {
            return false;
        }
        self.scale_rs(i, to, if from < to { "up" } else { "down" })
    }

    fn check_paused_conditions(&mut self) {
        if progress_deadline(self.d).is_none() {
            return;
        }
        let reason = condition(&self.status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return;
        }
        let paused_cond = reason.as_deref() == Some("DeploymentPaused");
        let (reason, msg) = match (paused(self.d), paused_cond) {
            (true, false) => ("DeploymentPaused", "Deployment is paused"),
            (false, true) => ("DeploymentResumed", "Deployment is resumed"),
            _ => return,
        };
        let c = new_condition(PROGRESSING, "Unknown", reason, msg.into(), self.now);
        set_condition(&mut self.status, c);
    }

    /// Upstream's `isScalingEvent`: an active replica set was sized for other replicas.
    fn is_scaling_event(&mut self) -> bool {
        self.sync_revision(false);
        let desired = replicas(self.d);
        let all = self.all();
        active(&all)
            .iter()
            .any(|rs| annotation_i32(rs, DESIRED_REPLICAS).is_some_and(|v| v != desired))
    }

    /// Upstream's `sync`: scale (proportionally), clean up when paused, sync status.
    fn sync_scale(&mut self) {
        self.sync_revision(false);
        self.scale();
        if paused(self.d) {
            self.cleanup();
        }
        self.sync_status();
    }

    fn scale(&mut self) {
        let desired = replicas(self.d);
        if let Some(i) = self.active_or_latest() {
            if rs_replicas(&self.rss[i]) != desired {
                self.scale_and_record(i, desired);
            }
            return;
        }
        if self.new.is_some_and(|n| self.saturated(n)) {
            for i in self.olds() {
                if rs_replicas(&self.rss[i]) > 0 {
                    self.scale_and_record(i, 0);
                }
            }
            return;
        }
        if !is_recreate(self.d) {
            self.scale_proportionally();
        }
    }

    /// Upstream's `FindActiveOrLatest`.
    fn active_or_latest(&self) -> Option<usize> {
        let mut olds = self.by_age(self.olds());
        olds.reverse();
        let mut all: Vec<usize> = olds.clone();
        all.extend(self.new);
        let live: Vec<usize> = all
            .into_iter()
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect();
        match live.len() {
            0 => self.new.or(olds.first().copied()),
            1 => live.first().copied(),
            _ => None,
        }
    }

    fn saturated(&self, i: usize) -> bool {
        let rs = &self.rss[i];
        let desired = replicas(self.d);
        annotation_i32(rs, DESIRED_REPLICAS) == Some(desired)
            && rs_replicas(rs) == desired
            && rs_available(rs) == desired
    }

    fn scale_proportionally(&mut self) {
        let desired = replicas(self.d);
        let surge = max_surge(self.d);
        let mut live: Vec<usize> = (0..self.rss.len())
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect();
        let total = spec_total(&self.refs(&live));
        let allowed = if desired > 0 { desired + surge } else { 0 };
        let to_add = allowed - total;
        let operation = if to_add > 0 { "up" } else { "down" };
        // Larger first; on ties newer first when adding, older first when removing.
        live.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            let age = if to_add > 0 {
                by_creation(rb, ra)
            } else {
                by_creation(ra, rb)
            };
            rs_replicas(rb).cmp(&rs_replicas(ra)).then(age)
        });
        let mut added = 0;
        let mut sizes = Vec::with_capacity(live.len());
        for i in &live {
            let rs = &self.rss[*i];
            let size = if to_add != 0 {
                let p = self.proportion(rs, to_add, added);
                added += p;
                rs_replicas(rs) + p
            } else {
                rs_replicas(rs)
            };
            sizes.push(size);
        }
        if let Some(first) = sizes.first_mut()
            && to_add != 0
        {
            *first = (*first + to_add - added).max(0);
        }
        for (i, size) in live.into_iter().zip(sizes) {
            self.scale_rs(i, size, operation);
        }
    }

    /// Upstream's `GetProportion`.
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// Upstream's `getReplicaSetFraction`.
    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        let desired = replicas(self.d);
        if desired == 0 {
            return -rs_replicas(rs);
        }
        let deployment_replicas = desired + max_surge(self.d);
        let annotated =
            annotation_i32(rs, MAX_REPLICAS).unwrap_or(self.status.replicas.unwrap_or(0));
        if annotated == 0 {
            return 0;
        }
        let size =
            f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
        size.round() as i32 - rs_replicas(rs)
    }

    fn rolling(&mut self) {
        self.sync_revision(true);
        if self.reconcile_new() || self.reconcile_old() {
            return self.sync_rollout_status();
        }
        if complete(self.d, &self.status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    fn reconcile_new(&mut self) -> bool {
        let Some(new) = self.new else {
            return false;
        };
        let (desired, current) = (replicas(self.d), rs_replicas(&self.rss[new]));
        if current == desired {
            return false;
        }
        if current > desired {
            return self.scale_and_record(new, desired);
        }
        let n = self.new_rs_new_replicas(new);
        self.scale_and_record(new, n)
    }

    fn reconcile_old(&mut self) -> bool {
        let olds = self.olds();
        if spec_total(&self.refs(&olds)) == 0 {
            return false;
        }
        let all_pods = spec_total(&self.all());
        let min_available = replicas(self.d) - max_unavailable(self.d);
        let new_unavailable = self
            .new
            .map(|n| rs_replicas(&self.rss[n]) - rs_available(&self.rss[n]))
            .unwrap_or(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy(max_scaled_down);
        let scaled = self.scale_down_old_for_rolling(min_available);
        cleaned + scaled > 0
    }

    /// Upstream's `cleanupUnhealthyReplicas`: first scale down old pods that are not available.
    fn cleanup_unhealthy(&mut self, max_cleanup: i32) -> i32 {
        let mut total = 0;
        for i in self.by_age(self.olds()) {
            let rs = &self.rss[i];
            if rs_replicas(rs) == 0 {
                continue;
            }
            if total >= max_cleanup {
                break;
            }
            let unhealthy = rs_replicas(rs) - rs_available(rs);
            if unhealthy <= 0 {
                continue;
            }
            let down = (max_cleanup - total).min(unhealthy);
            let to = rs_replicas(rs) - down;
            self.scale_and_record(i, to);
            total += down;
        }
        total
    }

    /// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`.
    fn scale_down_old_for_rolling(&mut self, min_available: i32) -> i32 {
        let available: i32 = self.rss.iter().map(rs_available).sum();
        if available <= min_available {
            return 0;
        }
        let target = available - min_available;
        let mut total = 0;
        for i in self.by_age(self.olds()) {
            if total >= target {
                break;
            }
            let current = rs_replicas(&self.rss[i]);
            if current == 0 {
                continue;
            }
            let down = current.min(target - total);
            self.scale_and_record(i, current - down);
            total += down;
        }
        total
    }

    fn recreate(&mut self, live_pods: &HashSet<String>) {
        self.sync_revision(false);
        let mut scaled_down = false;
        for i in self.olds() {
            if rs_replicas(&self.rss[i]) > 0 {
                scaled_down |= self.scale_and_record(i, 0);
            }
        }
        let olds = self.olds();
        let old_running = olds.iter().any(|i| {
            let rs = &self.rss[*i];
            rs_status_replicas(rs) > 0
                || rs
                    .metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| live_pods.contains(u))
        });
        if scaled_down || old_running {
            return self.sync_rollout_status();
        }
        if self.new.is_none() {
            self.sync_revision(true);
        }
        if let Some(new) = self.new {
            self.scale_and_record(new, replicas(self.d));
        }
        if complete(self.d, &self.status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Upstream's `cleanupDeployment`: deletes the oldest idle replica sets beyond
    /// `revisionHistoryLimit`.
    fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return;
        };
        let mut cleanable: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|i| self.rss[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            rs_revision(ra)
                .cmp(&rs_revision(rb))
                .then_with(|| by_creation(ra, rb))
        });
        for i in cleanable
            .into_iter()
            .take(usize::try_from(excess).unwrap_or(0))
        {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            self.actions.push(Action::DeleteReplicaSet { name });
        }
    }

    /// Upstream's `calculateStatus`.
    fn calculate_status(&self) -> DeploymentStatus {
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let total: i32 = self.rss.iter().map(rs_status_replicas).sum();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(total),
            updated_replicas: Some(
                self.new
                    .map(|n| rs_status_replicas(&self.rss[n]))
                    .unwrap_or(0),
            ),
            ready_replicas: Some(self.rss.iter().map(rs_ready).sum()),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: self.status.terminating_replicas,
        };
        let c = if available >= replicas(self.d) - max_unavailable(self.d) {
            new_condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// Upstream's `syncDeploymentStatus`.
    fn sync_status(&mut self) {
        self.status = self.calculate_status();
    }

    fn new_name(&self) -> Option<String> {
        self.new.and_then(|n| self.rss[n].metadata.name.clone())
    }

    /// Upstream's `syncRolloutStatus`: the Progressing condition and replica failures.
    fn sync_rollout_status(&mut self) {
        let mut next = self.calculate_status();
        let deadline = progress_deadline(self.d);
        if deadline.is_none() {
            remove_condition(&mut next, PROGRESSING);
        }
        let current = condition(&self.status, PROGRESSING).cloned();
        let done = next.replicas == next.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
        if let Some(deadline) = deadline.filter(|_| !done) {
            self.progress(&mut next, current, deadline);
        }
        match self.replica_failure() {
            Some(c) => set_condition(&mut next, c),
            None => remove_condition(&mut next, REPLICA_FAILURE),
        }
        self.status = next;
    }

    fn progress(
        &self,
        next: &mut DeploymentStatus,
        current: Option<k8s_openapi::api::apps::v1::DeploymentCondition>,
        deadline: i32,
    ) {
        let name = self.new_name();
        if complete(self.d, next) {
            let msg = match &name {
                Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                None => format!(
                    "Deployment {:?} has successfully progressed.",
                    self.d.metadata.name.clone().unwrap_or_default()
                ),
            };
            let c = new_condition(PROGRESSING, "True", "NewReplicaSetAvailable", msg, self.now);
            set_condition(next, c);
        } else if self.progressing(next) {
            let msg = match &name {
                Some(n) => format!("ReplicaSet {n:?} is progressing."),
                None => format!(
                    "Deployment {:?} is progressing.",
                    self.d.metadata.name.clone().unwrap_or_default()
                ),
            };
            let mut c = new_condition(PROGRESSING, "True", "ReplicaSetUpdated", msg, self.now);
            if let Some(cur) = current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time;
                }
                remove_condition(next, PROGRESSING);
            }
            set_condition(next, c);
        } else if self.timed_out(deadline) {
            let msg = match &name {
                Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                None => format!(
                    "Deployment {:?} has timed out progressing.",
                    self.d.metadata.name.clone().unwrap_or_default()
                ),
            };
            let c = new_condition(
                PROGRESSING,
                "False",
                "ProgressDeadlineExceeded",
                msg,
                self.now,
            );
            set_condition(next, c);
        }
    }

    /// Upstream's `DeploymentProgressing`.
    fn progressing(&self, next: &DeploymentStatus) -> bool {
        let old = &self.status;
        let get = |v: Option<i32>| v.unwrap_or(0);
        let old_old = get(old.replicas) - get(old.updated_replicas);
        let new_old = get(next.replicas) - get(next.updated_replicas);
        get(next.updated_replicas) > get(old.updated_replicas)
            || new_old < old_old
            || get(next.ready_replicas) > get(old.ready_replicas)
            || get(next.available_replicas) > get(old.available_replicas)
    }

    /// Upstream's `DeploymentTimedOut`.
    fn timed_out(&self, deadline: i32) -> bool {
        let Some(c) = condition(&self.status, PROGRESSING) else {
            return false;
        };
        match c.reason.as_deref() {
            Some("NewReplicaSetAvailable") => false,
            Some("ProgressDeadlineExceeded") => true,
            _ => c
                .last_update_time
                .as_ref()
                .is_some_and(|t| t.0.as_second() + i64::from(deadline) < self.now.as_second()),
        }
    }

    /// The first ReplicaFailure condition of the replica sets, new one first.
    fn replica_failure(&self) -> Option<k8s_openapi::api::apps::v1::DeploymentCondition> {
        let mut order: Vec<usize> = self.new.into_iter().collect();
        order.extend(self.olds());
        order.into_iter().find_map(|i| {
            let c = self.rss[i]
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE)?;
            Some(k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
        })
    }

    /// Upstream's `requeueStuckDeployment`: when to check the progress deadline again.
    fn stuck_requeue(&self) -> Option<Duration> {
        let deadline = progress_deadline(self.d)?;
        let c = condition(&self.status, PROGRESSING)?;
        if complete(self.d, &self.status) || c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return None;
        }
        let last = c.last_update_time.as_ref()?.0.as_second();
        let after = last + i64::from(deadline) - self.now.as_second();
        Some(Duration::from_secs(
            u64::try_from(after.max(0)).unwrap_or(0) + 1,
        ))
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
