//! rbac.authorization.k8s.io/v1: Roles, ClusterRoles and their bindings.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::field::{
    Bad, FieldError, Path, bad_strings, go_quote, invalid, not_supported, required,
};
use crate::meta::validate_label_selector;
use crate::names::{name_is_dns_subdomain, validate_path_segment_name};
use crate::{ApiType, NameRule, check_meta, check_meta_update};

const GROUP: &str = "rbac.authorization.k8s.io";

fn validate_rules(rules: &[PolicyRule], namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let p = Path::new("rules").index(i);
        if r.verbs.is_empty() {
            errs.push(required(
                &p.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = r.non_resource_urls.as_deref().unwrap_or_default();
        if !urls.is_empty() {
            let up = p.child("nonResourceURLs");
            if namespaced {
                errs.push(invalid(
                    &up,
                    bad_strings(Some(urls)),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            let has = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
            if has(&r.api_groups) || has(&r.resources) || has(&r.resource_names) {
                errs.push(invalid(
                    &up,
                    bad_strings(Some(urls)),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if r.api_groups.as_ref().is_none_or(Vec::is_empty) {
            errs.push(required(
                &p.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if r.resources.as_ref().is_none_or(Vec::is_empty) {
            errs.push(required(
                &p.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errs
}

impl ApiType for Role {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_rules(
            self.rules.as_deref().unwrap_or_default(),
            true,
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        errs.extend(check_meta_update(self, old));
        errs
    }
}

impl ApiType for ClusterRole {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_rules(
            self.rules.as_deref().unwrap_or_default(),
            false,
        ));
        if let Some(agg) = &self.aggregation_rule {
            let ap = Path::new("aggregationRule").child("clusterRoleSelectors");
            let selectors = agg.cluster_role_selectors.as_deref().unwrap_or_default();
            if selectors.is_empty() {
                errs.push(required(
                    &ap,
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for (i, s) in selectors.iter().enumerate() {
                errs.extend(validate_label_selector(Some(s), &ap.index(i)));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        errs.extend(check_meta_update(self, old));
        errs
    }
}

/// Subjects and role references default their API group.
fn default_binding(role_ref: &mut RoleRef, subjects: Option<&mut Vec<Subject>>) {
    if role_ref.api_group.is_empty() {
        role_ref.api_group = GROUP.into();
    }
    for s in subjects.into_iter().flatten() {
        if s.api_group.as_deref().unwrap_or("").is_empty()
            && (s.kind == "User" || s.kind == "Group")
        {
            s.api_group = Some(GROUP.into());
        }
    }
}

fn validate_role_ref(r: &RoleRef, kinds: &[&str]) -> Vec<FieldError> {
    let p = Path::new("roleRef");
    let mut errs = Vec::new();
    if r.api_group != GROUP {
        errs.push(not_supported(&p.child("apiGroup"), &r.api_group, &[GROUP]));
    }
    if !kinds.contains(&r.kind.as_str()) {
        errs.push(not_supported(&p.child("kind"), &r.kind, kinds));
    }
    if r.name.is_empty() {
        errs.push(required(&p.child("name"), ""));
    } else {
        errs.extend(
            validate_path_segment_name(&r.name, false)
                .iter()
                .map(|m| invalid(&p.child("name"), &r.name, m)),
        );
    }
    errs
}

/// Upstream's `ValidateRoleBindingSubject`.
fn validate_subject(s: &Subject, namespaced: bool, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if s.name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    }
    let group = s.api_group.as_deref().unwrap_or("");
    match s.kind.as_str() {
        "ServiceAccount" => {
            if !s.name.is_empty() {
                errs.extend(
                    name_is_dns_subdomain(&s.name, false)
                        .iter()
                        .map(|m| invalid(&path.child("name"), &s.name, m)),
                );
            }
            if !group.is_empty() {
                errs.push(not_supported(&path.child("apiGroup"), group, &[""]));
            }
            if !namespaced && s.namespace.as_deref().unwrap_or("").is_empty() {
                errs.push(required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" if group != GROUP => {
            errs.push(not_supported(&path.child("apiGroup"), group, &[GROUP]))
        }
        "User" | "Group" => {}
        other => errs.push(not_supported(
            &path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errs
}

fn validate_subjects(subjects: &[Subject], namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        errs.extend(validate_subject(
            s,
            namespaced,
            &Path::new("subjects").index(i),
        ));
    }
    errs
}

/// `rbac.RoleRef{...}` as Go's `%#v` prints it.
fn go_role_ref(r: &RoleRef) -> Bad {
    Bad::Go(format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        go_quote(&r.api_group),
        go_quote(&r.kind),
        go_quote(&r.name)
    ))
}

fn role_ref_unchanged(new: &RoleRef, old: &RoleRef) -> Vec<FieldError> {
    if new == old {
        return vec![];
    }
    vec![invalid(
        &Path::new("roleRef"),
        go_role_ref(new),
        "cannot change roleRef",
    )]
}

impl ApiType for RoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn set_defaults(&mut self) {
        default_binding(&mut self.role_ref, self.subjects.as_mut());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_role_ref(&self.role_ref, &["Role", "ClusterRole"]));
        errs.extend(validate_subjects(
            self.subjects.as_deref().unwrap_or_default(),
            true,
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        errs.extend(check_meta_update(self, old));
        errs.extend(role_ref_unchanged(&self.role_ref, &old.role_ref));
        errs
    }
}

impl ApiType for ClusterRoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn set_defaults(&mut self) {
        default_binding(&mut self.role_ref, self.subjects.as_mut());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_role_ref(&self.role_ref, &["ClusterRole"]));
        errs.extend(validate_subjects(
            self.subjects.as_deref().unwrap_or_default(),
            false,
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        errs.extend(check_meta_update(self, old));
        errs.extend(role_ref_unchanged(&self.role_ref, &old.role_ref));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(e: Vec<FieldError>) -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn role_rules() {
        let r: Role = serde_json::from_value(json!({
            "metadata": {"name": "system:reader", "namespace": "default"},
            "rules": [{"verbs": [], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]
        }))
        .unwrap_or_default();
        assert_eq!(
            errs(r.validate()),
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        let bad_name: Role =
            serde_json::from_value(json!({"metadata": {"name": "a/b", "namespace": "x"}}))
                .unwrap_or_default();
        assert_eq!(
            errs(bad_name.validate()),
            vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
        );
    }

    #[test]
    fn bindings_default_and_keep_role_ref() {
        let mut b: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "admins", "resourceVersion": "1"},
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa"}]
        }))
        .unwrap_or_default();
        b.set_defaults();
        assert_eq!(b.role_ref.api_group, GROUP);
        assert_eq!(
            errs(b.validate()),
            vec!["subjects[1].namespace: Required value"]
        );
        let mut changed = b.clone();
        changed.role_ref.name = "view".into();
        assert!(errs(changed.validate_update(&b)).contains(
            &"roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"view\"}: cannot change roleRef".to_string()
        ));
    }
}
