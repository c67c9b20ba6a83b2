//! ConfigMaps, Secrets, Namespaces, ServiceAccounts, Nodes and core Events.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, NamespaceSpec, NamespaceStatus, Node, NodeSpec, NodeStatus,
    Secret, ServiceAccount, Taint,
};

use super::container::{qualified_name, validate_quantity};
use crate::field::{
    FieldError, Path, bad_json, bad_strings, duplicate, forbidden, invalid, not_supported,
    required, too_long,
};
use crate::meta::{immutable, validate_finalizer_name, validate_label_name};
use crate::names::{is_config_map_key, is_dns1123_subdomain, is_valid_cidr, is_valid_label_value};
use crate::{ApiType, NameRule, check_meta, check_meta_update};

const MAX_SECRET_SIZE: usize = 1024 * 1024;
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

fn config_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for k in keys {
        errs.extend(
            is_config_map_key(k)
                .iter()
                .map(|m| invalid(&path.key(k), k, m)),
        );
    }
    errs
}

impl ApiType for ConfigMap {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let data = self.data.as_ref();
        let binary = self.binary_data.as_ref();
        let dp = Path::new("data");
        for (k, v) in data.into_iter().flatten() {
            errs.extend(
                is_config_map_key(k)
                    .iter()
                    .map(|m| invalid(&dp.key(k), k, m)),
            );
            if binary.is_some_and(|b| b.contains_key(k)) {
                errs.push(invalid(
                    &dp.key(k),
                    k,
                    "duplicate of key present in binaryData",
                ));
            }
            let _ = v;
        }
        errs.extend(config_keys(
            binary.into_iter().flat_map(|b| b.keys()),
            &Path::new("binaryData"),
        ));
        let total: usize = data
            .into_iter()
            .flatten()
            .map(|(_, v)| v.len())
            .sum::<usize>()
            + binary
                .into_iter()
                .flatten()
                .map(|(_, v)| v.0.len())
                .sum::<usize>();
        if total > MAX_SECRET_SIZE {
            errs.push(too_long(&Path::new(""), MAX_SECRET_SIZE));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(forbidden(&Path::new("immutable"), IMMUTABLE_SET));
            }
            if self.data.clone().unwrap_or_default() != old.data.clone().unwrap_or_default() {
                errs.push(forbidden(&Path::new("data"), IMMUTABLE_SET));
            }
            if self.binary_data.clone().unwrap_or_default()
                != old.binary_data.clone().unwrap_or_default()
            {
                errs.push(forbidden(&Path::new("binaryData"), IMMUTABLE_SET));
            }
        }
        errs.extend(self.validate());
        errs
    }
}

impl ApiType for Secret {
    fn set_defaults(&mut self) {
        if self.type_.as_deref().unwrap_or("").is_empty() {
            self.type_ = Some("Opaque".into());
        }
        // `stringData` is write-only: it is merged into `data` (winning over it).
        if let Some(sd) = self.string_data.take() {
            let data = self.data.get_or_insert_with(BTreeMap::new);
            for (k, v) in sd {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let dp = Path::new("data");
        let empty = BTreeMap::new();
        let data = self.data.as_ref().unwrap_or(&empty);
        errs.extend(config_keys(data.keys(), &dp));
        if data.values().map(|v| v.0.len()).sum::<usize>() > MAX_SECRET_SIZE {
            errs.push(too_long(&dp, MAX_SECRET_SIZE));
        }
        errs.extend(validate_secret_type(self, data, &dp));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        if self.type_ != old.type_ {
            errs.push(immutable(
                &Path::new("type"),
                self.type_.as_deref().unwrap_or(""),
            ));
        }
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(forbidden(&Path::new("immutable"), IMMUTABLE_SET));
            }
            if self.data.clone().unwrap_or_default() != old.data.clone().unwrap_or_default() {
                errs.push(forbidden(&Path::new("data"), IMMUTABLE_SET));
            }
        }
        errs.extend(self.validate());
        errs
    }
}

fn validate_secret_type(
    s: &Secret,
    data: &BTreeMap<String, ByteString>,
    dp: &Path,
) -> Vec<FieldError> {
    let need = |keys: &[&str]| -> Vec<FieldError> {
        keys.iter()
            .filter(|k| !data.contains_key(**k))
            .map(|k| required(&dp.key(k), ""))
            .collect()
    };
    let json_key = |key: &str| -> Vec<FieldError> {
        match data.get(key) {
            None => vec![required(&dp.key(key), "")],
            Some(b) => {
                match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b.0) {
                    Ok(_) => vec![],
                    Err(e) => vec![invalid(
                        &dp.key(key),
                        "<secret contents redacted>",
                        &e.to_string(),
                    )],
                }
            }
        }
    };
    match s.type_.as_deref().unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let key = "kubernetes.io/service-account.name";
            let name = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map_or("", String::as_str);
            if name.is_empty() {
                vec![required(
                    &Path::new("metadata").child("annotations").key(key),
                    "",
                )]
            } else {
                vec![]
            }
        }
        "kubernetes.io/dockercfg" => json_key(".dockercfg"),
        "kubernetes.io/dockerconfigjson" => json_key(".dockerconfigjson"),
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            need(&["username", "password"])
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            vec![required(&dp.key("ssh-privatekey"), "")]
        }
        "kubernetes.io/tls" => need(&["tls.crt", "tls.key"]),
        _ => vec![],
    }
}

impl ApiType for Namespace {
    const NAME_RULE: NameRule = NameRule::DnsLabel;

    fn set_defaults(&mut self) {
        if let Some(name) = self.metadata.name.clone().filter(|n| !n.is_empty()) {
            self.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert("kubernetes.io/metadata.name".into(), name);
        }
        let status = self.status.get_or_insert_with(NamespaceStatus::default);
        if status.phase.is_none() {
            // A namespace without a phase is being created: it gets the `kubernetes` finalizer
            // (later removed through `finalize`, so never added back on update).
            let finalizers = self
                .spec
                .get_or_insert_with(NamespaceSpec::default)
                .finalizers
                .get_or_insert_with(Vec::new);
            if !finalizers.iter().any(|f| f == "kubernetes") {
                finalizers.push("kubernetes".into());
            }
            status.phase = Some("Active".into());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let fp = Path::new("spec").child("finalizers");
        for f in self.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
            errs.extend(validate_finalizer_name(f, &fp));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        check_meta_update(self, old)
    }
}

impl ApiType for ServiceAccount {
    fn validate(&self) -> Vec<FieldError> {
        check_meta(self)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(self.validate());
        errs
    }
}

impl ApiType for Node {
    fn set_defaults(&mut self) {
        if let Some(s) = self.status.as_mut()
            && s.allocatable.is_none()
        {
            s.allocatable.clone_from(&s.capacity);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        let default = NodeSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        errs.extend(validate_taints(
            spec.taints.as_deref().unwrap_or_default(),
            &Path::new("metadata").child("taints"),
        ));
        errs.extend(validate_node_resources(self.status.as_ref()));
        errs.extend(validate_pod_cidrs(
            spec.pod_cidrs.as_deref().unwrap_or_default(),
        ));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_node_resources(self.status.as_ref()));
        let mut seen = HashSet::new();
        for (i, a) in self
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .enumerate()
        {
            if !seen.insert((a.type_.clone(), a.address.clone())) {
                errs.push(duplicate(
                    &Path::new("status").child("addresses").index(i),
                    bad_json(a),
                ));
            }
        }
        let default = NodeSpec::default();
        let (n, o) = (
            self.spec.as_ref().unwrap_or(&default),
            old.spec.as_ref().unwrap_or(&default),
        );
        let sp = Path::new("spec");
        let (new_cidrs, old_cidrs) = (
            n.pod_cidrs.as_deref().unwrap_or_default(),
            o.pod_cidrs.as_deref().unwrap_or_default(),
        );
        if !old_cidrs.is_empty() && new_cidrs != old_cidrs {
            errs.push(forbidden(
                &sp.child("podCIDRs"),
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = o.provider_id.as_deref().unwrap_or("");
        if !old_provider.is_empty() && n.provider_id.as_deref().unwrap_or("") != old_provider {
            errs.push(forbidden(
                &sp.child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        errs.extend(validate_taints(
            n.taints.as_deref().unwrap_or_default(),
            &Path::new("metadata").child("taints"),
        ));
        if n.external_id != o.external_id {
            errs.push(forbidden(&sp.child("externalID"), "may not be updated"));
        }
        errs
    }
}

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Upstream's `validateNodeTaints` (which reports under `metadata.taints`).
fn validate_taints(taints: &[Taint], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut unique = HashSet::new();
    for (i, t) in taints.iter().enumerate() {
        let ip = path.index(i);
        errs.extend(validate_label_name(&t.key, &ip.child("key")));
        let value = t.value.as_deref().unwrap_or("");
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(invalid(&ip.child("value"), value, &msgs.join(";")));
        }
        if t.effect.is_empty() {
            errs.push(required(&ip.child("effect"), ""));
        } else if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
            errs.push(not_supported(&ip.child("effect"), &t.effect, TAINT_EFFECTS));
        }
        if !unique.insert((t.effect.clone(), t.key.clone())) {
            let mut e = duplicate(&ip, bad_json(t));
            e.detail = "taints must be unique by key and effect pair".into();
            errs.push(e);
        }
    }
    errs
}

fn validate_node_resources(status: Option<&NodeStatus>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(s) = status else { return errs };
    for (field, list) in [("capacity", &s.capacity), ("allocatable", &s.allocatable)] {
        for (k, v) in list.iter().flatten() {
            errs.extend(validate_quantity(
                k,
                v,
                &Path::new("status").child(field).child(k),
            ));
        }
    }
    errs
}

fn validate_pod_cidrs(cidrs: &[String]) -> Vec<FieldError> {
    let p = Path::new("spec").child("podCIDRs");
    let mut errs = Vec::new();
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(is_valid_cidr(c).iter().map(|m| invalid(&p.index(i), c, m)));
    }
    if cidrs.len() > 1 {
        let v6 = cidrs.iter().filter(|c| c.contains(':')).count();
        if cidrs.len() > 2 || v6 != 1 {
            errs.push(invalid(
                &p,
                bad_strings(Some(cidrs)),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        let mut seen = HashSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c) {
                errs.push(duplicate(&p.index(i), c));
            }
        }
    }
    errs
}

impl ApiType for Event {
    const NAME_RULE: NameRule = NameRule::Any;

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.metadata.name.as_deref().unwrap_or("").is_empty()
            && self
                .metadata
                .generate_name
                .as_deref()
                .unwrap_or("")
                .is_empty()
        {
            errs.push(required(
                &Path::new("metadata").child("name"),
                "name or generateName is required",
            ));
        }
        errs.extend(legacy_validate_event(self));
        errs
    }

    fn validate_update(&self, _old: &Self) -> Vec<FieldError> {
        legacy_validate_event(self)
    }
}

/// Upstream's `legacyValidateEvent` as applied to core/v1 events.
pub fn legacy_validate_event(e: &Event) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    let io_ns = e.involved_object.namespace.as_deref().unwrap_or("");
    let nsp = Path::new("involvedObject").child("namespace");
    if e.event_time.is_none() {
        let ok = if io_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == io_ns
        };
        if !ok {
            errs.push(invalid(&nsp, io_ns, "does not match event.namespace"));
        }
    } else {
        if io_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(invalid(&nsp, io_ns, "does not match event.namespace"));
        }
        let rc = e.reporting_component.as_deref().unwrap_or("");
        let rcp = Path::new("reportingComponent");
        if rc.is_empty() {
            errs.push(required(&rcp, ""));
        }
        errs.extend(qualified_name(rc, &rcp));
        errs.extend(limited(
            "reportingInstance",
            e.reporting_instance.as_deref(),
            128,
            true,
        ));
        errs.extend(limited("action", e.action.as_deref(), 128, true));
        errs.extend(limited("reason", e.reason.as_deref(), 128, true));
        errs.extend(limited("message", e.message.as_deref(), 1024, false));
    }
    errs.extend(
        is_dns1123_subdomain(ns)
            .iter()
            .map(|m| invalid(&Path::new("namespace"), ns, m)),
    );
    errs
}

/// A string field with a length limit, required or not.
pub fn limited(field: &str, value: Option<&str>, max: usize, needed: bool) -> Vec<FieldError> {
    let v = value.unwrap_or("");
    let p = Path::new(field);
    let mut errs = Vec::new();
    if needed && v.is_empty() {
        errs.push(required(&p, ""));
    }
    if v.len() > max {
        errs.push(invalid(
            &p,
            "",
            &format!("can have at most {max} characters"),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(e: Vec<FieldError>) -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn config_map_keys() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "default"},
            "data": {"good.key": "1", "bad key": "2"}
        }))
        .unwrap_or_default();
        assert_eq!(
            errs(cm.validate()),
            vec![
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
    }

    #[test]
    fn immutable_config_map_and_secret() {
        let old: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}, "immutable": true
        }))
        .unwrap_or_default();
        let mut new = old.clone();
        new.metadata.resource_version = Some("2".into());
        new.data = Some([("a".to_string(), "2".to_string())].into());
        assert_eq!(
            errs(new.validate_update(&old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );

        let mut s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "default", "resourceVersion": "1"}, "stringData": {"k": "v"}
        }))
        .unwrap_or_default();
        s.set_defaults();
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(
            s.data
                .as_ref()
                .and_then(|d| d.get("k"))
                .map(|b| b.0.clone()),
            Some(b"v".to_vec())
        );
        let mut changed = s.clone();
        changed.type_ = Some("kubernetes.io/tls".into());
        assert_eq!(
            errs(changed.validate_update(&s)),
            vec![
                "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value",
            ]
        );
    }

    #[test]
    fn namespace_defaults_and_name() {
        let mut ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap_or_default();
        ns.set_defaults();
        let v = serde_json::to_value(&ns).unwrap_or_default();
        assert_eq!(v["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(v["status"]["phase"], "Active");
        assert_eq!(
            v["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert!(ns.validate().is_empty());
        let bad: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "a.b"}})).unwrap_or_default();
        assert_eq!(
            errs(bad.validate()),
            vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
    }

    #[test]
    fn node_taints() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "spec": {"taints": [{"key": "a", "effect": "Bad"}]}
        }))
        .unwrap_or_default();
        assert_eq!(
            errs(node.validate()),
            vec![
                "metadata.taints[0].effect: Unsupported value: \"Bad\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
            ]
        );
    }
}
