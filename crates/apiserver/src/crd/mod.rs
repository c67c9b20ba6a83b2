//! CustomResourceDefinitions, as upstream's apiextensions-apiserver: each served version of a
//! definition whose names are accepted becomes a registry entry (stored under
//! `/registry/<group>/<plural>`, validated, pruned and defaulted by its structural schema), the
//! definition's status says so (`NamesAccepted`, `Established`), and a deleted definition takes
//! its custom resources with it (the `customresourcecleanup.apiextensions.k8s.io` finalizer).
//! Versions convert with the `None` strategy: only `apiVersion` changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use k8rs_machinery::structural::Structural;
use k8rs_machinery::validation::{
    ErrorKind, FieldError, Path, name_is_dns_subdomain, validate_object_meta,
    validate_object_meta_update,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::ApiServer;
use crate::error::{ApiError, ApiResult};
use crate::objects::{DeleteOptions, Deleted, WriteOptions, now_rfc3339};
use crate::registry::{Def, Generation, ResourceDef, Sub, TypedOps};

pub const GROUP: &str = "apiextensions.k8s.io";
pub const PLURAL: &str = "customresourcedefinitions";
/// Held by every definition until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// How often definitions are looked at again without a change while a cleanup waits on
/// custom resources' own finalizers, or after a failed pass.
const RESYNC: Duration = Duration::from_secs(5);

mod rules;

pub use rules::syntax_errors as rule_syntax_errors;

/// The typed operations of one version of a custom resource: its structural schema and its
/// CEL rules.
struct CustomOps {
    namespaced: bool,
    schema: Structural,
    rules: Option<kube_cel::CompiledSchema>,
}

impl CustomOps {
    /// The schema's errors, then the rules' (as upstream, the rules are not run on an object
    /// with fields of the wrong type).
    fn schema_errors(&self, value: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = self.schema.validate(value);
        let typed = !errs.iter().any(|e| e.kind == ErrorKind::TypeInvalid);
        if let (Some(rules), true) = (&self.rules, typed) {
            errs.extend(rules::check(rules, value, old));
        }
        errs
    }
}

impl TypedOps for CustomOps {
    fn normalize(&self, value: &Value, defaults: bool) -> Result<(Value, Vec<String>), String> {
        let mut out = value.clone();
        let mut unknown = Vec::new();
        if let Some(meta) = value.get("metadata").filter(|m| !m.is_null()) {
            let typed: ObjectMeta =
                serde_json::from_value(meta.clone()).map_err(|e| format!("metadata: {e}"))?;
            let typed = serde_json::to_value(typed).map_err(|e| e.to_string())?;
            crate::registry::unknown_fields(
                meta,
                &typed,
                &mut "metadata".to_string(),
                &mut unknown,
            );
            if let Some(m) = out.as_object_mut() {
                m.insert("metadata".into(), typed);
            }
        }
        if defaults {
            self.schema.apply_defaults(&mut out);
        }
        unknown.extend(self.schema.prune(&mut out));
        Ok((out, unknown))
    }

    fn validate(&self, value: &Value) -> Vec<FieldError> {
        let mut errs = match object_meta(value) {
            Ok(meta) => validate_object_meta(
                &meta,
                self.namespaced,
                name_is_dns_subdomain,
                &Path::new("metadata"),
            ),
            Err(e) => vec![e],
        };
        errs.extend(self.schema_errors(value, None));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = match (object_meta(new), object_meta(old)) {
            (Ok(n), Ok(o)) => {
                let mut errs = validate_object_meta(
                    &n,
                    self.namespaced,
                    name_is_dns_subdomain,
                    &Path::new("metadata"),
                );
                errs.extend(validate_object_meta_update(&n, &o, &Path::new("metadata")));
                errs
            }
            (Err(e), _) | (_, Err(e)) => vec![e],
        };
        errs.extend(self.schema_errors(new, Some(old)));
        errs
    }

    fn rust_type(&self) -> &'static str {
        "custom resource"
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let _ = generator;
        schemars::Schema::default()
    }
}

fn object_meta(obj: &Value) -> Result<ObjectMeta, FieldError> {
    serde_json::from_value(obj["metadata"].clone())
        .map_err(|e| FieldError::invalid(&Path::new("metadata"), Value::Null, e.to_string()))
}

/// A name of a definition, kept for the life of the process: registry entries name their
/// resources with `&'static str`, and a definition's names are few and rarely change.
fn intern(s: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = names.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

fn intern_list(v: &Value) -> &'static [&'static str] {
    static LISTS: LazyLock<Mutex<HashSet<&'static [&'static str]>>> =
        LazyLock::new(Default::default);
    let items: Vec<&'static str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(intern)
        .collect();
    if items.is_empty() {
        return &[];
    }
    let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = lists.get(items.as_slice()) {
        return known;
    }
    let leaked: &'static [&'static str] = Box::leak(items.into_boxed_slice());
    lists.insert(leaked);
    leaked
}

/// Field selectors with the JSON path of each, as registry entries name them.
type FieldSelectors = &'static [(&'static str, &'static str)];

/// A version's `selectableFields` as field selectors: `.spec.color` selects as `spec.color`.
fn selectable_fields(v: &Value) -> FieldSelectors {
    static LISTS: LazyLock<Mutex<HashSet<FieldSelectors>>> = LazyLock::new(Default::default);
    let fields: Vec<(&'static str, &'static str)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["jsonPath"].as_str())
        .map(|path| {
            let name = intern(path.trim_start_matches('.'));
            (name, name)
        })
        .collect();
    if fields.is_empty() {
        return &[];
    }
    let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = lists.get(fields.as_slice()) {
        return known;
    }
    let leaked: FieldSelectors = Box::leak(fields.into_boxed_slice());
    lists.insert(leaked);
    leaked
}

/// The registry entries of a definition's served versions.
pub fn defs_of(crd: &Value) -> Result<Vec<ResourceDef>, String> {
    let spec = &crd["spec"];
    let group = intern(spec["group"].as_str().unwrap_or_default());
    let names = &spec["names"];
    let plural = intern(names["plural"].as_str().unwrap_or_default());
    let kind = intern(names["kind"].as_str().unwrap_or_default());
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err("the definition has no group, plural or kind".into());
    }
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map_or_else(|| kind.to_ascii_lowercase(), str::to_string);
    let namespaced = spec["scope"] != "Cluster";
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .ok_or("the definition has no storage version")?;
    let storage_version = intern(&format!("{group}/{storage}"));
    let prefix = intern(&format!("/registry/{group}/{plural}"));
    let mut defs = Vec::new();
    for v in versions
        .iter()
        .filter(|v| v["served"] == true || v["storage"] == true)
    {
        let name = intern(v["name"].as_str().unwrap_or_default());
        let at = Path::new("spec")
            .child("versions")
            .key(name)
            .child("schema")
            .child("openAPIV3Schema");
        let schema_json = &v["schema"]["openAPIV3Schema"];
        let schema = Structural::new(schema_json, &at)
            .map_err(|errs| k8rs_machinery::validation::aggregate(&errs))?;
        let has = |s: &str| !v["subresources"][s].is_null();
        let subresources: &'static [Sub] = match (has("status"), has("scale")) {
            (true, true) => &[Sub::Status, Sub::Scale],
            (true, false) => &[Sub::Status],
            (false, true) => &[Sub::Scale],
            (false, false) => &[],
        };
        defs.push(ResourceDef {
            group,
            version: name,
            kind,
            plural,
            singular: singular.clone(),
            namespaced,
            short_names: intern_list(&names["shortNames"]),
            categories: intern_list(&names["categories"]),
            subresources,
            prefix,
            storage_version,
            served_api_version: intern(&format!("{group}/{name}")),
            generation: Generation::Spec,
            field_selectors: selectable_fields(&v["selectableFields"]),
            return_deleted: false,
            typed: Box::new(CustomOps {
                namespaced,
                schema,
                rules: rules::compile(schema_json),
            }),
            custom: Some(Arc::new(CustomInfo {
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                scale: v["subresources"]["scale"].clone(),
                definition: definition_name(group, name, kind),
                openapi: openapi_schema(schema_json, group, name, kind),
                terminating: crd["metadata"]["deletionTimestamp"].is_string(),
                served: v["served"] == true,
            })),
        });
    }
    Ok(defs)
}

/// What a custom resource's entry knows beyond a built-in one.
#[derive(Debug, Default)]
pub struct CustomInfo {
    /// `additionalPrinterColumns` of the version, for `kubectl get`.
    pub printer_columns: Vec<Value>,
    /// `subresources.scale` (its JSON paths), or null.
    pub scale: Value,
    /// The OpenAPI definition name, as upstream's: the group reversed, version, kind
    /// (`com.example.v1.Widget`).
    pub definition: String,
    /// The published OpenAPI schema of the version.
    pub openapi: Value,
    /// Whether the definition is being deleted: its resources may still be read and deleted,
    /// but not created.
    pub terminating: bool,
    /// Whether the version is served (the storage version may not be).
    pub served: bool,
}

fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The version's schema as OpenAPI publishes it: with `apiVersion`, `kind` and `metadata` (a
/// reference to ObjectMeta) at the root, and the group-version-kind extension.
fn openapi_schema(schema: &Value, group: &str, version: &str, kind: &str) -> Value {
    let mut out = if schema.is_object() {
        schema.clone()
    } else {
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
    };
    let standard = json!({
        "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."},
        "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase."},
        "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata."},
    });
    if let Some(root) = out.as_object_mut() {
        let properties = root.entry("properties").or_insert_with(|| json!({}));
        if let (Some(props), Value::Object(std_props)) = (properties.as_object_mut(), standard) {
            for (k, v) in std_props {
                props.insert(k, v);
            }
        }
        root.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": group, "version": version, "kind": kind}]),
        );
    }
    out
}

/// The OpenAPI definition name of ObjectMeta.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The status a definition should have, given whether its names are accepted.
fn desired_status(crd: &Value, conflict: Option<&str>) -> Value {
    let mut status = crd["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let now = now_rfc3339();
    let accepted = conflict.is_none();
    let names_accepted = match conflict {
        None => ("True", "NoConflicts", "no conflicts found".to_string()),
        Some(why) => ("False", "NameConflict", why.to_string()),
    };
    set_condition(&mut status, "NamesAccepted", names_accepted, &now);
    if accepted {
        let mut names = crd["spec"]["names"].clone();
        if names["singular"].as_str().is_none_or(str::is_empty) {
            names["singular"] = crd["spec"]["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .into();
        }
        if names["listKind"].as_str().is_none_or(str::is_empty) {
            names["listKind"] = format!(
                "{}List",
                crd["spec"]["names"]["kind"].as_str().unwrap_or_default()
            )
            .into();
        }
        status["acceptedNames"] = names;
        set_condition(
            &mut status,
            "Established",
            (
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted".into(),
            ),
            &now,
        );
    } else if status["acceptedNames"].is_null() {
        status["acceptedNames"] = json!({"plural": "", "kind": ""});
    }
    if crd["metadata"]["deletionTimestamp"].is_string() {
        set_condition(
            &mut status,
            "Terminating",
            (
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress".into(),
            ),
            &now,
        );
    }
    let mut stored: Vec<Value> = status["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(storage) = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        && !stored.contains(&storage)
    {
        stored.push(storage);
    }
    status["storedVersions"] = Value::Array(stored);
    status
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(
    status: &mut Value,
    type_: &str,
    (s, reason, message): (&str, &str, String),
    now: &str,
) {
    let mut conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let condition = json!({"type": type_, "status": s, "reason": reason, "message": message});
    match conditions.iter_mut().find(|c| c["type"] == type_) {
        Some(c) if c["status"] == s => {
            c["reason"] = reason.into();
            c["message"] = message.into();
        }
        Some(c) => {
            *c = condition;
            c["lastTransitionTime"] = now.into();
        }
        None => {
            let mut c = condition;
            c["lastTransitionTime"] = now.into();
            conditions.push(c);
        }
    }
    status["conditions"] = Value::Array(conditions);
}

/// Definitions compiled into registry entries, by definition name, with the version of the
/// definition they were compiled from.
#[derive(Default)]
pub(crate) struct Compiled(HashMap<String, (Version, Vec<Def>)>);

/// What a definition's entries depend on.
#[derive(PartialEq, Eq)]
struct Version {
    uid: String,
    generation: i64,
    terminating: bool,
}

impl ApiServer {
    /// Serves the custom resources of the stored definitions and keeps them in step with the
    /// definitions until `shutdown`.
    pub(crate) async fn serve_custom_resources(
        self: Arc<Self>,
        mut compiled: Compiled,
        shutdown: CancellationToken,
    ) {
        let prefix = format!("/registry/{GROUP}/{PLURAL}/");
        loop {
            let (_, _, mut events) = self.cache.snapshot_and_subscribe();
            // Without a change, a pass is needed again only to go on with a cleanup (or after
            // a failure).
            let again = match self.sync_custom_resources(&mut compiled).await {
                Ok(cleaning) => cleaning,
                Err(err) => {
                    tracing::warn!(%err, "serving custom resource definitions failed");
                    true
                }
            };
            let deadline = tokio::time::sleep(RESYNC);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut deadline, if again => break,
                    event = events.recv() => match event {
                        Ok(e) if e.obj.key.starts_with(&prefix) => break,
                        Ok(_) => {}
                        Err(_) => break,
                    },
                }
            }
        }
    }

    /// One pass: compiles changed definitions, serves the accepted ones, writes their status,
    /// and cleans up deleted ones. Answers whether a cleanup is under way.
    pub(crate) async fn sync_custom_resources(&self, compiled: &mut Compiled) -> ApiResult<bool> {
        let crds_def = self.def(GROUP, "v1", PLURAL);
        let (objects, _) = self.list_cached(&crds_def, None).await?;
        let mut crds: Vec<Value> = objects.iter().map(|o| o.value()).collect();
        // Older definitions keep their names when a newer one asks for the same.
        crds.sort_by(|a, b| {
            let created = |v: &Value| {
                v["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            created(a).cmp(&created(b)).then_with(|| {
                a["metadata"]["name"]
                    .as_str()
                    .cmp(&b["metadata"]["name"].as_str())
            })
        });
        let live: HashSet<&str> = crds
            .iter()
            .filter_map(|c| c["metadata"]["name"].as_str())
            .collect();
        compiled.0.retain(|name, _| live.contains(name.as_str()));
        let mut served: Vec<Def> = Vec::new();
        let mut taken: HashSet<(String, String)> = HashSet::new();
        let mut statuses = Vec::new();
        for crd in &crds {
            let name = crd["metadata"]["name"].as_str().unwrap_or_default();
            let conflict = self.name_conflict(crd, &taken);
            if conflict.is_none() {
                let group = crd["spec"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                for field in ["plural", "kind"] {
                    let n = crd["spec"]["names"][field].as_str().unwrap_or_default();
                    taken.insert((group.clone(), n.to_string()));
                }
                match compile(compiled, crd) {
                    Ok(defs) => served.extend(defs.iter().cloned()),
                    Err(err) => tracing::warn!(crd = name, %err, "not serving a definition"),
                }
            }
            let status = desired_status(crd, conflict.as_deref());
            if !same_status(&status, &crd["status"]) {
                statuses.push((name.to_string(), status));
            }
        }
        self.registry.set_custom(served);
        for (name, status) in statuses {
            let result = self
                .mutate(&crds_def, None, &name, |crd| {
                    crd["status"] = status.clone();
                    Ok(())
                })
                .await;
            match result {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut cleaning = false;
        for crd in crds
            .iter()
            .filter(|c| c["metadata"]["deletionTimestamp"].is_string())
        {
            self.clean_up_definition(&crds_def, crd).await?;
            cleaning = true;
        }
        Ok(cleaning)
    }

    /// Why a definition's names cannot be accepted: a built-in resource or an older
    /// definition of the group has them.
    fn name_conflict(&self, crd: &Value, taken: &HashSet<(String, String)>) -> Option<String> {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        let builtin = self
            .registry
            .builtin_defs()
            .iter()
            .any(|d| d.group == group && (d.plural == plural || d.kind == kind));
        if builtin || taken.contains(&(group.to_string(), plural.to_string())) {
            return Some(format!("\"{plural}\" is already in use"));
        }
        if taken.contains(&(group.to_string(), kind.to_string())) {
            return Some(format!("\"{kind}\" is already in use"));
        }
        None
    }

    /// Deletes a terminating definition's custom resources; once none is left, removes the
    /// cleanup finalizer so that the definition goes.
    async fn clean_up_definition(&self, crds_def: &ResourceDef, crd: &Value) -> ApiResult<()> {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let finalizers = crd["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            return Ok(());
        }
        let mut remaining = 0;
        let prefix = format!(
            "/registry/{}/{}",
            crd["spec"]["group"].as_str().unwrap_or_default(),
            crd["spec"]["names"]["plural"].as_str().unwrap_or_default()
        );
        let storage = self
            .registry
            .stored_at(&prefix)
            .filter(|d| d.custom_of(crd));
        if let Some(def) = storage {
            let (objects, _) = self.list_cached(&def, None).await?;
            for obj in objects {
                remaining += 1;
                if obj.value()["metadata"]["deletionTimestamp"].is_string() {
                    continue;
                }
                let ns = obj.value()["metadata"]["namespace"]
                    .as_str()
                    .map(str::to_string);
                match self
                    .delete(&def, ns.as_deref(), &obj.name, &DeleteOptions::default())
                    .await
                {
                    Ok(Deleted::Gone(_)) => remaining -= 1,
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if remaining > 0 {
            return Ok(());
        }
        // An update (not a raw write), so that the definition goes with its last finalizer.
        let mut new = crd.clone();
        let kept: Vec<Value> = finalizers
            .into_iter()
            .filter(|f| f != CLEANUP_FINALIZER)
            .collect();
        new["metadata"]["finalizers"] = Value::Array(kept);
        let result = self
            .update(crds_def, None, name, None, new, &WriteOptions::default())
            .await;
        match result {
            Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The entries of `crd`, compiled again only when its uid, generation or deletion changed.
fn compile<'c>(compiled: &'c mut Compiled, crd: &Value) -> Result<&'c Vec<Def>, String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let name = text(&crd["metadata"]["name"]);
    let version = Version {
        uid: text(&crd["metadata"]["uid"]),
        generation: crd["metadata"]["generation"].as_i64().unwrap_or(0),
        terminating: crd["metadata"]["deletionTimestamp"].is_string(),
    };
    let fresh = compiled.0.get(&name).is_some_and(|(v, _)| *v == version);
    if !fresh {
        let defs = defs_of(crd)?.into_iter().map(Arc::new).collect();
        compiled.0.insert(name.clone(), (version, defs));
    }
    Ok(&compiled.0[&name].1)
}

/// Whether two statuses say the same, transition times aside.
fn same_status(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        for c in v["conditions"].as_array_mut().into_iter().flatten() {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastTransitionTime");
            }
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests;
