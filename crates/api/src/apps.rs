//! apps/v1: Deployments, ReplicaSets, StatefulSets, DaemonSets, ControllerRevisions.
//!
//! k8s-openapi decodes a missing `spec.selector` as an empty one, so an empty selector is
//! treated as missing (`Required value` plus the template-labels mismatch), which is what users
//! who forget the selector see upstream.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment,
    DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec, RollingUpdateDaemonSet,
    RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::core::pod::{selector_mismatch, template_labels, validate_pod_template};
use crate::core::pod_defaults::default_pod_template;
use crate::core::storage::default_pvc;
use crate::field::{
    Bad, FieldError, Path, bad_json, forbidden, go_quote, invalid, not_supported, required,
};
use crate::meta::{
    bad_selector, immutable, non_negative, selector_is_empty, selector_matches, semantic_eq,
    validate_annotations, validate_label_selector, validate_labels,
};
use crate::names::is_valid_percent;
use crate::{ApiType, NameRule, check_meta, check_meta_update};

fn set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// The selector, or `None` when it is empty (see the module docs).
fn given(sel: &LabelSelector) -> Option<&LabelSelector> {
    if selector_is_empty(sel) {
        None
    } else {
        Some(sel)
    }
}

/// Selector presence and syntax, shared by the workloads.
fn validate_selector(sel: Option<&LabelSelector>, path: &Path) -> Vec<FieldError> {
    match sel {
        None => vec![required(path, "")],
        Some(s) => validate_label_selector(Some(s), path),
    }
}

/// `selector` must select the template's labels (skipped for a selector that selects all).
fn template_matches(
    sel: Option<&LabelSelector>,
    t: &PodTemplateSpec,
    path: &Path,
) -> Vec<FieldError> {
    match selector_matches(sel, template_labels(t)) {
        Some(false) => vec![selector_mismatch(
            t,
            &path.child("metadata").child("labels"),
        )],
        _ => vec![],
    }
}

/// The template checks of ReplicaSets and Deployments (`ValidatePodTemplateSpecForReplicaSet`).
fn validate_rs_template(
    sel: Option<&LabelSelector>,
    t: &PodTemplateSpec,
    kind: &str,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = template_matches(sel, t, path);
    errs.extend(validate_pod_template(t, path));
    errs.extend(always_restart(t, kind, path));
    errs
}

fn always_restart(t: &PodTemplateSpec, kind: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = t.spec.clone().unwrap_or_default();
    let rp = spec.restart_policy.as_deref().unwrap_or("");
    if rp != "Always" {
        errs.push(not_supported(
            &path.child("spec").child("restartPolicy"),
            rp,
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(forbidden(
            &path.child("spec").child("activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    errs
}

/// `intstr.IntOrString{...}` as Go's `%#v` prints it.
pub(crate) fn go_int_or_string(v: &IntOrString) -> Bad {
    Bad::Go(match v {
        IntOrString::Int(i) => format!("intstr.IntOrString{{Type:0, IntVal:{i}, StrVal:\"\"}}"),
        IntOrString::String(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
    })
}

/// `ValidatePositiveIntOrPercent`.
pub(crate) fn int_or_percent(v: &IntOrString, path: &Path) -> Vec<FieldError> {
    match v {
        IntOrString::String(s) => is_valid_percent(s)
            .iter()
            .map(|m| invalid(path, go_int_or_string(v), m))
            .collect(),
        IntOrString::Int(i) => non_negative(i64::from(*i), path),
    }
}

fn percent_value(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::String(s) if is_valid_percent(s).is_empty() => {
            s.trim_end_matches('%').parse().ok()
        }
        _ => None,
    }
}

fn int_or_percent_value(v: &IntOrString) -> i64 {
    match v {
        IntOrString::Int(i) => i64::from(*i),
        IntOrString::String(_) => percent_value(v).unwrap_or(0),
    }
}

/// `IsNotMoreThan100Percent`.
pub(crate) fn at_most_100(v: &IntOrString, path: &Path) -> Vec<FieldError> {
    match percent_value(v) {
        Some(p) if p > 100 => vec![invalid(
            path,
            go_int_or_string(v),
            "must not be greater than 100%",
        )],
        _ => vec![],
    }
}

fn zero() -> IntOrString {
    IntOrString::Int(0)
}

// ---- Deployment ----------------------------------------------------------------------------

impl ApiType for Deployment {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.replicas, 1);
        let strategy = spec
            .strategy
            .get_or_insert_with(DeploymentStrategy::default);
        if strategy.type_.as_deref().unwrap_or("").is_empty() {
            strategy.type_ = Some("RollingUpdate".into());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            set(&mut ru.max_unavailable, IntOrString::String("25%".into()));
            set(&mut ru.max_surge, IntOrString::String("25%".into()));
        }
        set(&mut spec.revision_history_limit, 10);
        set(&mut spec.progress_deadline_seconds, 600);
        default_pod_template(&mut spec.template);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_deployment_spec(
            &self.spec.clone().unwrap_or_default(),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let (n, o) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        errs.extend(validate_deployment_spec(&n));
        errs.extend(selector_immutable(&n.selector, &o.selector));
        errs
    }
}

fn selector_immutable(new: &LabelSelector, old: &LabelSelector) -> Vec<FieldError> {
    if semantic_eq(new, old) {
        return vec![];
    }
    vec![immutable(
        &Path::new("spec").child("selector"),
        bad_selector(Some(new)),
    )]
}

fn validate_deployment_spec(spec: &DeploymentSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = non_negative(i64::from(spec.replicas.unwrap_or(0)), &sp.child("replicas"));
    let sel = given(&spec.selector);
    errs.extend(validate_selector(sel, &sp.child("selector")));
    errs.extend(validate_rs_template(
        sel,
        &spec.template,
        "ReplicaSet",
        &sp.child("template"),
    ));
    errs.extend(validate_strategy(
        &spec.strategy.clone().unwrap_or_default(),
        &sp.child("strategy"),
    ));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    errs.extend(non_negative(
        i64::from(min_ready),
        &sp.child("minReadySeconds"),
    ));
    if let Some(r) = spec.revision_history_limit {
        errs.extend(non_negative(
            i64::from(r),
            &sp.child("revisionHistoryLimit"),
        ));
    }
    if let Some(p) = spec.progress_deadline_seconds {
        let pp = sp.child("progressDeadlineSeconds");
        errs.extend(non_negative(i64::from(p), &pp));
        if p <= min_ready {
            errs.push(invalid(&pp, p, "must be greater than minReadySeconds"));
        }
    }
    errs
}

fn validate_strategy(s: &DeploymentStrategy, path: &Path) -> Vec<FieldError> {
    match s.type_.as_deref().unwrap_or("") {
        "Recreate" if s.rolling_update.is_some() => vec![forbidden(
            &path.child("rollingUpdate"),
            "may not be specified when strategy `type` is 'Recreate'",
        )],
        "Recreate" => vec![],
        "RollingUpdate" => match &s.rolling_update {
            None => vec![required(
                &path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )],
            Some(ru) => validate_rolling_update(ru, &path.child("rollingUpdate")),
        },
        _ => vec![not_supported(
            path,
            bad_json(s),
            &["Recreate", "RollingUpdate"],
        )],
    }
}

fn validate_rolling_update(ru: &RollingUpdateDeployment, path: &Path) -> Vec<FieldError> {
    let (mu, ms) = (
        ru.max_unavailable.clone().unwrap_or_else(zero),
        ru.max_surge.clone().unwrap_or_else(zero),
    );
    let mp = path.child("maxUnavailable");
    let mut errs = int_or_percent(&mu, &mp);
    errs.extend(int_or_percent(&ms, &path.child("maxSurge")));
    if int_or_percent_value(&mu) == 0 && int_or_percent_value(&ms) == 0 {
        errs.push(invalid(
            &mp,
            go_int_or_string(&mu),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    errs.extend(at_most_100(&mu, &mp));
    errs
}

// ---- ReplicaSet ----------------------------------------------------------------------------

impl ApiType for ReplicaSet {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.replicas, 1);
        if let Some(t) = spec.template.as_mut() {
            default_pod_template(t);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_replica_set_spec(
            &self.spec.clone().unwrap_or_default(),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let (n, o) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        errs.extend(validate_replica_set_spec(&n));
        errs.extend(selector_immutable(&n.selector, &o.selector));
        errs
    }
}

fn validate_replica_set_spec(spec: &ReplicaSetSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = non_negative(i64::from(spec.replicas.unwrap_or(0)), &sp.child("replicas"));
    errs.extend(non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &sp.child("minReadySeconds"),
    ));
    let sel = given(&spec.selector);
    errs.extend(validate_selector(sel, &sp.child("selector")));
    match &spec.template {
        None => errs.push(required(&sp.child("template"), "")),
        Some(t) => errs.extend(validate_rs_template(
            sel,
            t,
            "ReplicaSet",
            &sp.child("template"),
        )),
    }
    errs
}

// ---- StatefulSet ---------------------------------------------------------------------------

impl ApiType for StatefulSet {
    const NAME_RULE: NameRule = NameRule::DnsLabel;

    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if spec
            .pod_management_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            spec.pod_management_policy = Some("OrderedReady".into());
        }
        let us = spec
            .update_strategy
            .get_or_insert_with(StatefulSetUpdateStrategy::default);
        if us.type_.as_deref().unwrap_or("").is_empty() {
            us.type_ = Some("RollingUpdate".into());
        }
        if us.type_.as_deref() == Some("RollingUpdate") {
            let ru = us
                .rolling_update
                .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
            set(&mut ru.partition, 0);
        }
        let policy = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        set(&mut policy.when_deleted, "Retain".into());
        set(&mut policy.when_scaled, "Retain".into());
        set(&mut spec.replicas, 1);
        set(&mut spec.revision_history_limit, 10);
        default_pod_template(&mut spec.template);
        for pvc in spec.volume_claim_templates.iter_mut().flatten() {
            default_pvc(pvc);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_stateful_set_spec(
            &self.spec.clone().unwrap_or_default(),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let (n, o) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        errs.extend(validate_stateful_set_spec(&n));
        let mut clone = n.clone();
        clone.replicas = o.replicas;
        clone.template.clone_from(&o.template);
        clone.update_strategy.clone_from(&o.update_strategy);
        clone.min_ready_seconds = o.min_ready_seconds;
        clone.ordinals.clone_from(&o.ordinals);
        clone
            .persistent_volume_claim_retention_policy
            .clone_from(&o.persistent_volume_claim_retention_policy);
        if !semantic_eq(&clone, &o) {
            errs.push(forbidden(&Path::new("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
        }
        errs
    }
}

fn validate_stateful_set_spec(spec: &StatefulSetSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "" => errs.push(required(&sp.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(invalid(
            &sp.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    errs.extend(validate_sts_strategy(
        &spec.update_strategy.clone().unwrap_or_default(),
        &sp.child("updateStrategy"),
    ));
    if let Some(p) = &spec.persistent_volume_claim_retention_policy {
        let pp = sp.child("persistentVolumeClaimRetentionPolicy");
        for (field, v) in [
            ("whenDeleted", &p.when_deleted),
            ("whenScaled", &p.when_scaled),
        ] {
            let v = v.as_deref().unwrap_or("");
            if v != "Retain" && v != "Delete" {
                errs.push(not_supported(&pp.child(field), v, &["Retain", "Delete"]));
            }
        }
    }
    errs.extend(non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &sp.child("replicas"),
    ));
    errs.extend(non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &sp.child("minReadySeconds"),
    ));
    if let Some(o) = &spec.ordinals {
        errs.extend(non_negative(
            i64::from(o.start.unwrap_or(0)),
            &sp.child("ordinals.start"),
        ));
    }
    let sel = given(&spec.selector);
    errs.extend(validate_selector(sel, &sp.child("selector")));
    let tp = sp.child("template");
    let t = &spec.template;
    errs.extend(template_matches(sel, t, &tp));
    let meta = t.metadata.clone().unwrap_or_default();
    errs.extend(validate_labels(meta.labels.as_ref(), &tp.child("labels")));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &tp.child("annotations"),
    ));
    errs.extend(always_restart(t, "StatefulSet", &tp));
    errs
}

fn validate_sts_strategy(s: &StatefulSetUpdateStrategy, path: &Path) -> Vec<FieldError> {
    match s.type_.as_deref().unwrap_or("") {
        "" => vec![required(path, "")],
        "OnDelete" => match &s.rolling_update {
            Some(ru) => vec![invalid(
                &path.child("rollingUpdate"),
                bad_json(ru),
                "only allowed for updateStrategy 'RollingUpdate'",
            )],
            None => vec![],
        },
        "RollingUpdate" => {
            let Some(ru) = &s.rolling_update else {
                return vec![];
            };
            let rp = path.child("rollingUpdate");
            let mut errs =
                non_negative(i64::from(ru.partition.unwrap_or(0)), &rp.child("partition"));
            if let Some(mu) = &ru.max_unavailable {
                let mp = rp.child("maxUnavailable");
                errs.extend(int_or_percent(mu, &mp));
                if int_or_percent_value(mu) == 0 {
                    errs.push(invalid(&mp, go_int_or_string(mu), "cannot be 0"));
                }
                errs.extend(at_most_100(mu, &mp));
            }
            errs
        }
        _ => vec![invalid(
            path,
            bad_json(s),
            "must be 'RollingUpdate' or 'OnDelete'",
        )],
    }
}

// ---- DaemonSet -----------------------------------------------------------------------------

impl ApiType for DaemonSet {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let us = spec
            .update_strategy
            .get_or_insert_with(DaemonSetUpdateStrategy::default);
        if us.type_.as_deref().unwrap_or("").is_empty() {
            us.type_ = Some("RollingUpdate".into());
        }
        if us.type_.as_deref() == Some("RollingUpdate") {
            let ru = us
                .rolling_update
                .get_or_insert_with(RollingUpdateDaemonSet::default);
            set(&mut ru.max_unavailable, IntOrString::Int(1));
            set(&mut ru.max_surge, IntOrString::Int(0));
        }
        set(&mut spec.revision_history_limit, 10);
        default_pod_template(&mut spec.template);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_daemon_set_spec(
            &self.spec.clone().unwrap_or_default(),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        let (n, o) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        errs.extend(validate_daemon_set_spec(&n));
        errs.extend(selector_immutable(&n.selector, &o.selector));
        errs
    }
}

fn validate_daemon_set_spec(spec: &DaemonSetSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let sel = given(&spec.selector);
    let mut errs = validate_label_selector(sel, &sp.child("selector"));
    errs.extend(template_matches(sel, &spec.template, &sp.child("template")));
    errs.extend(validate_pod_template(&spec.template, &sp.child("template")));
    errs.extend(always_restart(
        &spec.template,
        "DaemonSet",
        &sp.child("template"),
    ));
    errs.extend(non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &sp.child("minReadySeconds"),
    ));
    errs.extend(validate_ds_strategy(
        &spec.update_strategy.clone().unwrap_or_default(),
        &sp.child("updateStrategy"),
    ));
    if let Some(r) = spec.revision_history_limit {
        errs.extend(non_negative(
            i64::from(r),
            &sp.child("revisionHistoryLimit"),
        ));
    }
    errs
}

fn validate_ds_strategy(s: &DaemonSetUpdateStrategy, path: &Path) -> Vec<FieldError> {
    match s.type_.as_deref().unwrap_or("") {
        "OnDelete" => vec![],
        "RollingUpdate" => {
            let Some(ru) = &s.rolling_update else {
                return vec![required(&path.child("rollingUpdate"), "")];
            };
            let rp = path.child("rollingUpdate");
            let (mu, ms) = (
                ru.max_unavailable.clone().unwrap_or_else(zero),
                ru.max_surge.clone().unwrap_or_else(zero),
            );
            let (mup, msp) = (rp.child("maxUnavailable"), rp.child("maxSurge"));
            let mut errs = int_or_percent(&mu, &mup);
            errs.extend(int_or_percent(&ms, &msp));
            errs.extend(at_most_100(&mu, &mup));
            errs.extend(at_most_100(&ms, &msp));
            match (
                int_or_percent_value(&mu) != 0,
                int_or_percent_value(&ms) != 0,
            ) {
                (true, true) => errs.push(invalid(
                    &msp,
                    go_int_or_string(&ms),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => errs.push(required(&mup, "cannot be 0 when maxSurge is 0")),
                _ => {}
            }
            errs
        }
        _ => vec![not_supported(
            path,
            bad_json(s),
            &["RollingUpdate", "OnDelete"],
        )],
    }
}

// ---- ControllerRevision --------------------------------------------------------------------

impl ApiType for ControllerRevision {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        if self.data.is_none() {
            errs.push(required(&Path::new("data"), "data is mandatory"));
        }
        errs.extend(non_negative(self.revision, &Path::new("revision")));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(self.validate());
        if self.data != old.data {
            errs.push(immutable(&Path::new("data"), bad_json(&self.data)));
        }
        errs
    }
}

#[cfg(test)]
mod tests;
