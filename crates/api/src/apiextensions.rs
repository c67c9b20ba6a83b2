//! apiextensions.k8s.io/v1: CustomResourceDefinitions (upstream's `apiextensions/v1`
//! `SetDefaults_*` and `apiextensions/validation`). Each version's schema is checked by
//! `k8rs_machinery::structural::Structural::new`.
//!
//! This server serves only the `None` conversion strategy: `Webhook` is refused.

use k8rs_machinery::structural::Structural;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceConversion, CustomResourceDefinition,
    CustomResourceDefinitionNames, CustomResourceDefinitionSpec, CustomResourceDefinitionVersion,
    CustomResourceSubresources,
};

use crate::ApiType;
use crate::field::{FieldError, Path, bad_json, forbidden, invalid, not_supported, required};
use crate::meta::immutable;
use crate::names::{is_dns1035_label, is_dns1123_subdomain};

const SCOPES: &[&str] = &["Cluster", "Namespaced"];
const STRATEGIES: &[&str] = &["None", "Webhook"];
const COLUMN_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const COLUMN_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];

impl ApiType for CustomResourceDefinition {
    fn set_defaults(&mut self) {
        let spec = &mut self.spec;
        if spec.names.singular.as_deref().is_none_or(str::is_empty) {
            spec.names.singular = Some(spec.names.kind.to_lowercase());
        }
        if spec.names.list_kind.as_deref().is_none_or(str::is_empty) && !spec.names.kind.is_empty()
        {
            spec.names.list_kind = Some(format!("{}List", spec.names.kind));
        }
        if spec.conversion.is_none() {
            spec.conversion = Some(CustomResourceConversion {
                strategy: "None".into(),
                webhook: None,
            });
        }
        let service = spec
            .conversion
            .as_mut()
            .and_then(|c| c.webhook.as_mut())
            .and_then(|w| w.client_config.as_mut())
            .and_then(|c| c.service.as_mut());
        if let Some(svc) = service.filter(|s| s.port.is_none()) {
            svc.port = Some(443);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        // apimachinery's ObjectMeta rules, without core's finalizer-name rule (upstream's
        // genericvalidation): the cleanup finalizer is not fully qualified.
        let mut errs = k8rs_machinery::validation::validate_object_meta(
            &self.metadata,
            false,
            k8rs_machinery::validation::name_is_dns_subdomain,
            &Path::new("metadata"),
        );
        errs.extend(name_matches_spec(self));
        errs.extend(validate_spec(&self.spec));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = k8rs_machinery::validation::validate_object_meta_update(
            &self.metadata,
            &old.metadata,
            &Path::new("metadata"),
        );
        errs.extend(validate_spec(&self.spec));
        let sp = Path::new("spec");
        if !old.spec.scope.is_empty() && self.spec.scope != old.spec.scope {
            errs.push(immutable(&sp.child("scope"), self.spec.scope.as_str()));
        }
        if self.spec.group != old.spec.group {
            errs.push(immutable(&sp.child("group"), self.spec.group.as_str()));
        }
        if self.spec.names.plural != old.spec.names.plural {
            let at = sp.child("names").child("plural");
            errs.push(immutable(&at, self.spec.names.plural.as_str()));
        }
        errs
    }
}

/// `metadata.name` must be `<plural>.<group>`.
fn name_matches_spec(crd: &CustomResourceDefinition) -> Vec<FieldError> {
    let name = crd.metadata.name.as_deref().unwrap_or("");
    let want = format!("{}.{}", crd.spec.names.plural, crd.spec.group);
    if name.is_empty() || name == want {
        return vec![];
    }
    vec![invalid(
        &Path::new("metadata").child("name"),
        name,
        r#"must be spec.names.plural+"."+spec.group"#,
    )]
}

fn validate_spec(spec: &CustomResourceDefinitionSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = validate_group(&spec.group, &sp.child("group"));
    if spec.scope.is_empty() {
        errs.push(required(&sp.child("scope"), ""));
    } else if !SCOPES.contains(&spec.scope.as_str()) {
        errs.push(not_supported(
            &sp.child("scope"),
            spec.scope.as_str(),
            SCOPES,
        ));
    }
    for (i, v) in spec.versions.iter().enumerate() {
        errs.extend(validate_version(v, &sp.child("versions").index(i)));
    }
    errs.extend(validate_version_set(&spec.versions, &sp.child("versions")));
    errs.extend(validate_names(&spec.names, &sp.child("names")));
    if spec.preserve_unknown_fields == Some(true) {
        errs.push(invalid(
            &sp.child("preserveUnknownFields"),
            true,
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    if let Some(c) = &spec.conversion {
        errs.extend(validate_conversion(c, &sp.child("conversion")));
    }
    errs
}

fn validate_group(group: &str, at: &Path) -> Vec<FieldError> {
    if group.is_empty() {
        return vec![required(at, "")];
    }
    let problems = is_dns1123_subdomain(group);
    if !problems.is_empty() {
        return vec![invalid(at, group, &problems.join(","))];
    }
    if !group.contains('.') {
        return vec![invalid(
            at,
            group,
            "should be a domain with at least one dot",
        )];
    }
    vec![]
}

/// Unique names, exactly one storage version.
fn validate_version_set(
    versions: &[CustomResourceDefinitionVersion],
    at: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let unique = versions
        .iter()
        .enumerate()
        .all(|(i, v)| versions[..i].iter().all(|w| w.name != v.name));
    if !unique {
        errs.push(invalid(
            at,
            bad_json(&versions),
            "must contain unique version names",
        ));
    }
    if versions.iter().filter(|v| v.storage).count() != 1 {
        errs.push(invalid(
            at,
            bad_json(&versions),
            "must have exactly one version marked as storage version",
        ));
    }
    errs
}

fn validate_version(v: &CustomResourceDefinitionVersion, at: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let problems = is_dns1035_label(&v.name);
    if !problems.is_empty() {
        errs.push(invalid(
            &at.child("name"),
            v.name.as_str(),
            &problems.join(","),
        ));
    }
    if v.deprecation_warning.is_some() && v.deprecated != Some(true) {
        let w = v.deprecation_warning.clone().unwrap_or_default();
        errs.push(invalid(
            &at.child("deprecationWarning"),
            w,
            "can only be set for deprecated versions",
        ));
    }
    errs.extend(validate_schema(
        v,
        &at.child("schema").child("openAPIV3Schema"),
    ));
    if let Some(sub) = &v.subresources {
        errs.extend(validate_subresources(sub, &at.child("subresources")));
    }
    for (i, col) in v.additional_printer_columns.iter().flatten().enumerate() {
        errs.extend(validate_column(
            col,
            &at.child("additionalPrinterColumns").index(i),
        ));
    }
    errs
}

fn validate_schema(v: &CustomResourceDefinitionVersion, at: &Path) -> Vec<FieldError> {
    let Some(schema) = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        return vec![required(at, "schemas are required")];
    };
    let json = match serde_json::to_value(schema) {
        Ok(json) => json,
        Err(e) => return vec![FieldError::internal(at, e.to_string())],
    };
    let mut errs = match Structural::new(&json, at) {
        Ok(_) => vec![],
        Err(errs) => errs,
    };
    if has_status(v.subresources.as_ref()) && !json.get("type").is_none_or(|t| t == "object") {
        let t = json.get("type").and_then(|t| t.as_str()).unwrap_or("");
        errs.push(invalid(
            &at.child("type"),
            t,
            r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
        ));
    }
    errs
}

fn has_status(sub: Option<&CustomResourceSubresources>) -> bool {
    sub.is_some_and(|s| s.status.is_some())
}

fn validate_names(names: &CustomResourceDefinitionNames, at: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let singular = names.singular.as_deref().unwrap_or("");
    let list_kind = names.list_kind.as_deref().unwrap_or("");
    for (field, value) in [
        ("plural", names.plural.as_str()),
        ("singular", singular),
        ("kind", names.kind.as_str()),
        ("listKind", list_kind),
    ] {
        if value.is_empty() {
            errs.push(required(&at.child(field), ""));
        }
    }
    for (field, value) in [("plural", names.plural.as_str()), ("singular", singular)] {
        let problems = is_dns1035_label(value);
        if !value.is_empty() && !problems.is_empty() {
            errs.push(invalid(&at.child(field), value, &problems.join(",")));
        }
    }
    for (field, value) in [("kind", names.kind.as_str()), ("listKind", list_kind)] {
        let problems = is_dns1035_label(&value.to_lowercase());
        if !value.is_empty() && !problems.is_empty() {
            let detail = format!(
                "may have mixed case, but should otherwise match: {}",
                problems.join(",")
            );
            errs.push(invalid(&at.child(field), value, &detail));
        }
    }
    for (field, list) in [
        ("shortNames", &names.short_names),
        ("categories", &names.categories),
    ] {
        for (i, s) in list.iter().flatten().enumerate() {
            let problems = is_dns1035_label(s);
            if !problems.is_empty() {
                errs.push(invalid(
                    &at.child(field).index(i),
                    s.as_str(),
                    &problems.join(","),
                ));
            }
        }
    }
    if !names.kind.is_empty() && names.kind == list_kind {
        errs.push(invalid(
            &at.child("listKind"),
            list_kind,
            "kind and listKind may not be the same",
        ));
    }
    errs
}

fn validate_subresources(sub: &CustomResourceSubresources, at: &Path) -> Vec<FieldError> {
    let Some(scale) = &sub.scale else {
        return vec![];
    };
    let mut errs = Vec::new();
    let paths = [
        (
            "scale.specReplicasPath",
            scale.spec_replicas_path.as_str(),
            ".spec.",
            "should be a json path under .spec",
        ),
        (
            "scale.statusReplicasPath",
            scale.status_replicas_path.as_str(),
            ".status.",
            "should be a json path under .status",
        ),
    ];
    for (field, value, prefix, detail) in paths {
        let p = at.child(field);
        if value.is_empty() {
            errs.push(required(&p, ""));
        } else if let Some(e) = simple_json_path(value, &p) {
            errs.push(e);
        } else if !value.starts_with(prefix) {
            errs.push(invalid(&p, value, detail));
        }
    }
    if let Some(sel) = scale
        .label_selector_path
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        let p = at.child("scale.labelSelectorPath");
        if let Some(e) = simple_json_path(sel, &p) {
            errs.push(e);
        } else if !sel.starts_with(".spec.") && !sel.starts_with(".status.") {
            errs.push(invalid(
                &p,
                sel,
                "should be a json path under either .spec or .status",
            ));
        }
    }
    errs
}

/// `validateSimpleJSONPath`.
fn simple_json_path(s: &str, at: &Path) -> Option<FieldError> {
    if s.is_empty() {
        return Some(invalid(at, s, "must not be empty"));
    }
    if !s.starts_with('.') {
        return Some(invalid(at, s, "must be a simple json path starting with ."));
    }
    None
}

fn validate_column(col: &CustomResourceColumnDefinition, at: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if col.name.is_empty() {
        errs.push(required(&at.child("name"), ""));
    }
    let types = format!("must be one of {}", COLUMN_TYPES.join(","));
    if col.type_.is_empty() {
        errs.push(required(&at.child("type"), &types));
    } else if !COLUMN_TYPES.contains(&col.type_.as_str()) {
        errs.push(invalid(&at.child("type"), col.type_.as_str(), &types));
    }
    if let Some(f) = col
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && !COLUMN_FORMATS.contains(f))
    {
        let detail = format!("must be one of {}", COLUMN_FORMATS.join(","));
        errs.push(invalid(&at.child("format"), f, &detail));
    }
    if col.json_path.is_empty() {
        errs.push(required(&at.child("JSONPath"), ""));
    } else if let Some(e) = simple_json_path(&col.json_path, &at.child("JSONPath")) {
        errs.push(e);
    }
    errs
}

fn validate_conversion(c: &CustomResourceConversion, at: &Path) -> Vec<FieldError> {
    let strategy = at.child("strategy");
    match c.strategy.as_str() {
        "" => vec![required(&strategy, "")],
        "None" if c.webhook.is_some() => vec![forbidden(
            &at.child("webhook"),
            "should not be set when strategy is not set to Webhook",
        )],
        "None" => vec![],
        "Webhook" => vec![forbidden(
            &strategy,
            "Webhook conversion is not supported by this server: use None (all versions must share one schema-compatible shape)",
        )],
        other => vec![not_supported(&strategy, other, STRATEGIES)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    type Edit = Box<dyn FnOnce(&mut Value)>;

    fn crd_json() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer", "maximum": 10}}}
                    }}},
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]
                }]
            }
        })
    }

    fn crd_with(edit: impl FnOnce(&mut Value)) -> CustomResourceDefinition {
        let mut v = crd_json();
        edit(&mut v);
        let mut crd: CustomResourceDefinition =
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        crd.set_defaults();
        crd
    }

    fn errs(crd: &CustomResourceDefinition) -> Vec<String> {
        crd.validate().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_fill_names_and_conversion() {
        let crd = crd_with(|_| {});
        assert_eq!(crd.spec.names.singular.as_deref(), Some("widget"));
        assert_eq!(crd.spec.names.list_kind.as_deref(), Some("WidgetList"));
        assert_eq!(
            crd.spec.conversion.as_ref().map(|c| c.strategy.as_str()),
            Some("None")
        );
    }

    #[test]
    fn a_valid_crd_passes() {
        assert_eq!(errs(&crd_with(|_| {})), Vec::<String>::new());
    }

    #[test]
    fn each_rule_broken_once() {
        let v0 = "spec.versions[0]";
        let cases: Vec<(Edit, String)> = vec![
            (Box::new(|v| v["metadata"]["name"] = json!("gadgets.example.com")),
             r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#.into()),
            (Box::new(|v| { v["spec"]["group"] = json!("example"); v["metadata"]["name"] = json!("widgets.example"); }),
             r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#.into()),
            (Box::new(|v| v["spec"]["scope"] = json!("Global")),
             r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#.into()),
            (Box::new(|v| v["spec"]["names"]["shortNames"] = json!(["W D"])),
             r#"spec.names.shortNames[0]: Invalid value: "W D": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#.into()),
            (Box::new(|v| v["spec"]["names"]["listKind"] = json!("Widget")),
             r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#.into()),
            (Box::new(|v| v["spec"]["versions"][0]["storage"] = json!(false)),
             "must have exactly one version marked as storage version".into()),
            (Box::new(|v| { let mut x = v["spec"]["versions"][0].clone(); x["storage"] = json!(false); if let Some(a) = v["spec"]["versions"].as_array_mut() { a.push(x); } }),
             "must contain unique version names".into()),
            (Box::new(|v| v["spec"]["versions"][0]["name"] = json!("V1")),
             format!(r#"{v0}.name: Invalid value: "V1": a DNS-1035 label"#)),
            (Box::new(|v| { if let Some(o) = v["spec"]["versions"][0].as_object_mut() { o.remove("schema"); } }),
             format!("{v0}.schema.openAPIV3Schema: Required value: schemas are required")),
            (Box::new(|v| v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({"properties": {}})),
             format!("{v0}.schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields")),
            (Box::new(|v| v["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] = json!(".status.size")),
             format!(r#"{v0}.subresources.scale.specReplicasPath: Invalid value: ".status.size": should be a json path under .spec"#)),
            (Box::new(|v| v["spec"]["versions"][0]["subresources"]["scale"]["statusReplicasPath"] = json!("status.size")),
             format!(r#"{v0}.subresources.scale.statusReplicasPath: Invalid value: "status.size": must be a simple json path starting with ."#)),
            (Box::new(|v| v["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("float")),
             format!(r#"{v0}.additionalPrinterColumns[0].type: Invalid value: "float": must be one of boolean,date,integer,number,string"#)),
            (Box::new(|v| v["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = json!("")),
             format!("{v0}.additionalPrinterColumns[0].JSONPath: Required value")),
            (Box::new(|v| v["spec"]["conversion"] = json!({"strategy": "Webhook"})),
             "spec.conversion.strategy: Forbidden: Webhook conversion is not supported".into()),
            (Box::new(|v| v["spec"]["conversion"] = json!({"strategy": "Magic"})),
             r#"spec.conversion.strategy: Unsupported value: "Magic": supported values: "None", "Webhook""#.into()),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            let got = errs(&crd_with(edit));
            assert_eq!(got.len(), 1, "case {i}: {got:?}");
            assert!(
                got[0].starts_with(&want) || got[0].contains(&want),
                "case {i}: {got:?} vs {want}"
            );
        }
    }

    #[test]
    fn update_keeps_scope_group_and_plural() {
        let old = crd_with(|_| {});
        let mut new = crd_with(|v| v["spec"]["scope"] = json!("Cluster"));
        new.metadata.resource_version = Some("1".into());
        let got: Vec<String> = new
            .validate_update(&old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec![r#"spec.scope: Invalid value: "Cluster": field is immutable"#]
        );
    }
}
