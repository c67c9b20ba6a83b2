//! The scheduling and security parts of a pod spec: affinity, tolerations, topology spread,
//! DNS config, scheduling gates and the pod security context.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm,
    PodDNSConfig, PodSecurityContext, PodSpec, Toleration, TopologySpreadConstraint,
};

use super::container::{dns_label, dns_subdomain, qualified_name};
use crate::field::{
    FieldError, Path, bad_strings, duplicate, forbidden, invalid, not_supported, required,
};
use crate::meta::{validate_label_name, validate_label_selector};
use crate::names::{is_valid_id, is_valid_ip, is_valid_label_value};

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

pub(crate) fn validate_pod_security_context(
    sc: &PodSecurityContext,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (name, id) in [
        ("fsGroup", sc.fs_group),
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if let Some(id) = id {
            errs.extend(
                is_valid_id(id)
                    .iter()
                    .map(|m| invalid(&path.child(name), id, m)),
            );
        }
    }
    for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
        errs.extend(
            is_valid_id(*g)
                .iter()
                .map(|m| invalid(&path.child("supplementalGroups").index(i), *g, m)),
        );
    }
    let mut seen = HashSet::new();
    for (i, s) in sc.sysctls.iter().flatten().enumerate() {
        let np = path.child("sysctls").index(i).child("name");
        if s.name.is_empty() {
            errs.push(required(&np, ""));
        } else if !valid_sysctl(&s.name) {
            errs.push(invalid(&np, &s.name, "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"));
        } else if !seen.insert(s.name.as_str()) {
            errs.push(duplicate(&np, &s.name));
        }
    }
    if let Some(p) = sc.fs_group_change_policy.as_deref()
        && !["Always", "OnRootMismatch"].contains(&p)
    {
        errs.push(not_supported(
            &path.child("fsGroupChangePolicy"),
            p,
            &["Always", "OnRootMismatch"],
        ));
    }
    errs
}

fn valid_sysctl(name: &str) -> bool {
    name.len() <= 253
        && name.split(['.', '/']).all(|seg| {
            let ok_chars = seg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            let ends =
                |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            ok_chars && ends(seg.chars().next()) && ends(seg.chars().last())
        })
}

pub(crate) fn validate_affinity(a: &Affinity, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(na) = &a.node_affinity {
        let np = path.child("nodeAffinity");
        if let Some(sel) = &na.required_during_scheduling_ignored_during_execution {
            errs.extend(validate_node_selector(
                sel,
                &np.child("requiredDuringSchedulingIgnoredDuringExecution"),
            ));
        }
        for (i, t) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let tp = np
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            errs.extend(weight(t.weight, &tp));
            errs.extend(validate_node_selector_term(
                &t.preference,
                false,
                &tp.child("preference"),
            ));
        }
    }
    let groups = [
        (
            "podAffinity",
            a.pod_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            "podAntiAffinity",
            a.pod_anti_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ];
    for (name, terms) in groups {
        let Some((required_terms, preferred)) = terms else {
            continue;
        };
        let pp = path.child(name);
        for (i, t) in required_terms.iter().flatten().enumerate() {
            errs.extend(validate_pod_affinity_term(
                t,
                &pp.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
            ));
        }
        for (i, w) in preferred.iter().flatten().enumerate() {
            let wp = pp
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            errs.extend(weight(w.weight, &wp));
            errs.extend(validate_pod_affinity_term(
                &w.pod_affinity_term,
                &wp.child("podAffinityTerm"),
            ));
        }
    }
    errs
}

fn weight(w: i32, path: &Path) -> Vec<FieldError> {
    if (1..=100).contains(&w) {
        vec![]
    } else {
        vec![invalid(
            &path.child("weight"),
            w,
            "must be in the range 1-100",
        )]
    }
}

/// Upstream's `ValidateNodeSelector`.
pub fn validate_node_selector(sel: &NodeSelector, path: &Path) -> Vec<FieldError> {
    let tp = path.child("nodeSelectorTerms");
    if sel.node_selector_terms.is_empty() {
        return vec![required(&tp, "must have at least one node selector term")];
    }
    let mut errs = Vec::new();
    for (i, t) in sel.node_selector_terms.iter().enumerate() {
        errs.extend(validate_node_selector_term(t, true, &tp.index(i)));
    }
    errs
}

fn validate_node_selector_term(
    t: &NodeSelectorTerm,
    strict_values: bool,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, r) in t.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_node_requirement(
            r,
            strict_values,
            &path.child("matchExpressions").index(i),
        ));
    }
    for (i, r) in t.match_fields.iter().flatten().enumerate() {
        let rp = path.child("matchFields").index(i);
        let values = r.values.as_deref().unwrap_or_default();
        if matches!(r.operator.as_str(), "In" | "NotIn") {
            if values.len() != 1 {
                errs.push(required(&rp.child("values"), "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"));
            }
        } else {
            errs.push(invalid(
                &rp.child("operator"),
                &r.operator,
                "not a valid selector operator",
            ));
        }
        if r.key != "metadata.name" {
            errs.push(invalid(
                &rp.child("key"),
                &r.key,
                "not a valid field selector key",
            ));
        }
    }
    errs
}

fn validate_node_requirement(
    r: &NodeSelectorRequirement,
    strict_values: bool,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = r.values.as_deref().unwrap_or_default();
    let vp = path.child("values");
    match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => errs.push(required(
            &vp,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(forbidden(
            &vp,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" if values.len() != 1 => errs.push(required(
            &vp,
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => errs.push(invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    errs.extend(validate_label_name(&r.key, &path.child("key")));
    if strict_values {
        for (i, v) in values.iter().enumerate() {
            errs.extend(
                is_valid_label_value(v)
                    .iter()
                    .map(|m| invalid(&vp.index(i), v, m)),
            );
        }
    }
    errs
}

fn validate_pod_affinity_term(t: &PodAffinityTerm, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_label_selector(t.label_selector.as_ref(), &path.child("labelSelector"));
    errs.extend(validate_label_selector(
        t.namespace_selector.as_ref(),
        &path.child("namespaceSelector"),
    ));
    for ns in t.namespaces.iter().flatten() {
        errs.extend(dns_label(ns, &path.child("namespace")));
    }
    if t.topology_key.is_empty() {
        errs.push(required(&path.child("topologyKey"), "can not be empty"));
    }
    errs.extend(validate_label_name(
        &t.topology_key,
        &path.child("topologyKey"),
    ));
    errs
}

pub(crate) fn validate_dns_config(
    cfg: Option<&PodDNSConfig>,
    policy: Option<&str>,
    path: &Path,
) -> Vec<FieldError> {
    if policy == Some("None") {
        let Some(c) = cfg else {
            return vec![required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )];
        };
        if c.nameservers.as_ref().is_none_or(Vec::is_empty) {
            return vec![required(
                &path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )];
        }
    }
    let Some(c) = cfg else { return vec![] };
    let mut errs = Vec::new();
    let ns = c.nameservers.as_deref().unwrap_or_default();
    if ns.len() > 3 {
        errs.push(invalid(
            &path.child("nameservers"),
            bad_strings(Some(ns)),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        errs.extend(
            is_valid_ip(n)
                .iter()
                .map(|m| invalid(&path.child("nameservers").index(i), n, m)),
        );
    }
    let searches = c.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        errs.push(invalid(
            &path.child("searches"),
            bad_strings(Some(searches)),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(invalid(
            &path.child("searches"),
            bad_strings(Some(searches)),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        if s != "." {
            let s = s.strip_suffix('.').unwrap_or(s).replace('_', "a");
            errs.extend(dns_subdomain(&s, &path.child("searches").index(i)));
        }
    }
    for (i, o) in c.options.iter().flatten().enumerate() {
        if o.name.as_deref().unwrap_or("").is_empty() {
            errs.push(required(
                &path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
    errs
}

pub(crate) fn validate_gates(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        errs.extend(qualified_name(
            &g.condition_type,
            &path.child("readinessGates").index(i).child("conditionType"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, g) in spec.scheduling_gates.iter().flatten().enumerate() {
        let gp = path.child("schedulingGates").index(i);
        errs.extend(qualified_name(&g.name, &gp));
        if !seen.insert(g.name.as_str()) {
            errs.push(duplicate(&gp, &g.name));
        }
    }
    errs
}

pub(crate) fn validate_spread(c: &TopologySpreadConstraint, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.max_skew <= 0 {
        errs.push(invalid(
            &path.child("maxSkew"),
            c.max_skew,
            "must be greater than zero",
        ));
    }
    if c.topology_key.is_empty() {
        errs.push(required(&path.child("topologyKey"), "can not be empty"));
    } else {
        errs.extend(validate_label_name(
            &c.topology_key,
            &path.child("topologyKey"),
        ));
    }
    let wu = c.when_unsatisfiable.as_str();
    if !["DoNotSchedule", "ScheduleAnyway"].contains(&wu) {
        errs.push(not_supported(
            &path.child("whenUnsatisfiable"),
            wu,
            &["DoNotSchedule", "ScheduleAnyway"],
        ));
    }
    if let Some(m) = c.min_domains.filter(|m| *m <= 0) {
        errs.push(invalid(
            &path.child("minDomains"),
            m,
            "must be greater than 0",
        ));
    }
    errs.extend(validate_label_selector(
        c.label_selector.as_ref(),
        &path.child("labelSelector"),
    ));
    errs
}

/// Upstream's `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Toleration], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let ip = path.index(i);
        let (key, op, value, effect) = (
            t.key.as_deref().unwrap_or(""),
            t.operator.as_deref().unwrap_or(""),
            t.value.as_deref().unwrap_or(""),
            t.effect.as_deref().unwrap_or(""),
        );
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &ip.child("key")));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid(&ip.child("operator"), op, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(invalid(
                &ip.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid(&ip.child("operator"), value, &msgs.join(";")));
                }
            }
            "Exists" if !value.is_empty() => errs.push(invalid(
                &ip.child("operator"),
                value,
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(not_supported(
                &ip.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(not_supported(&ip.child("effect"), effect, TAINT_EFFECTS));
        }
    }
    errs
}
