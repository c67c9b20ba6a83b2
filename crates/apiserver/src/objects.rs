//! The generic object store of the API server, as upstream's `genericregistry.Store`: create,
//! update, patch and delete with optimistic concurrency, strategies, admission and validation,
//! on top of the [`Store`](k8rs_store::Store).

use std::sync::Arc;

use bytes::Bytes;
use k8rs_store::KeyValue;
use serde_json::{Map, Value, json};

use crate::admission::Operation;
use crate::error::{ApiError, ApiResult, Details};
use crate::patch::{self, PatchType};
use crate::registry::{Generation, ResourceDef};
use crate::strategy;
use crate::{ApiServer, cache::CachedObject};

/// How a write was asked for.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// `Strict`, `Warn` or `Ignore` (the default for internal callers).
    pub field_validation: Option<String>,
}

/// The result of a write: the object as stored, and warnings for the client.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

/// What DELETE did.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// Deletion started (finalizers or grace period) and the object remains.
    Pending(Value),
}

/// Options of a DELETE.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn details(def: &ResourceDef, name: &str) -> Details {
    Details::new(name, def.group, def.plural)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Stamps the resourceVersion of a stored key-value onto its decoded object.
pub fn decode_kv(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

fn set_rv(v: &mut Value, rev: i64) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), rev.to_string().into());
    }
}

fn encode(v: &Value) -> ApiResult<Bytes> {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

pub fn meta(v: &Value) -> &Value {
    &v["metadata"]
}

pub fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v["metadata"].is_object() {
        v["metadata"] = json!({});
    }
    v["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let prefix = &prefix[..prefix.len().min(58)];
    let suffix: String = (0..5)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Checks apiVersion and kind of a body against the resource it was sent to.
pub fn check_type(def: &ResourceDef, body: &Value, want_kind: &str) -> ApiResult<()> {
    let api_version = str_of(body, "apiVersion");
    let kind = str_of(body, "kind");
    let expected = def.api_version();
    if !api_version.is_empty() && api_version != expected {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected})"
        )));
    }
    if !kind.is_empty() && kind != want_kind {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({want_kind})"
        )));
    }
    Ok(())
}

impl ApiServer {
    /// Decodes `body` through the typed schema and applies defaults; unknown fields are errors
    /// under `Strict` and warnings under `Warn`, as upstream's fieldValidation.
    fn normalize(
        &self,
        def: &ResourceDef,
        body: &Value,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let (mut out, unknown) = def
            .typed
            .normalize(body, true)
            .map_err(|e| ApiError::BadRequest(format!("error decoding {}: {e}", def.kind)))?;
        if !unknown.is_empty() {
            match opts.field_validation.as_deref() {
                Some("Strict") => {
                    let list: Vec<String> = unknown
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::BadRequest(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                Some("Warn") | None => {
                    warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
                }
                _ => {}
            }
        }
        out["apiVersion"] = def.api_version().into();
        out["kind"] = def.kind.into();
        Ok(out)
    }

    /// Creates an object (POST).
    pub async fn create(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        check_type(def, &body, def.kind)?;
        let mut warnings = Vec::new();
        let mut obj = self.normalize(def, &body, opts, &mut warnings)?;
        let m = meta_mut(&mut obj);
        if let (Some(ns), Some(body_ns)) = (namespace, m.get("namespace").and_then(Value::as_str))
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                ));
        }
        match namespace {
            Some(ns) if def.namespaced => m.insert("namespace".into(), ns.into()),
            _ => m.remove("namespace"),
        };
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::BadRequest(
                "resourceVersion should not be set on objects to be created".into(),
            ));
        }
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let generate = m
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name.is_empty() && !generate.is_empty() {
            let generated = generate_name(generate);
            m.insert("name".into(), generated.into());
        }
        m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        m.insert("creationTimestamp".into(), now_rfc3339().into());
        for field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(field);
        }
        match def.generation {
            Generation::None => m.remove("generation"),
            _ => m.insert("generation".into(), 1.into()),
        };
        // Mutating admission runs before the strategy, as upstream (QoS sees LimitRanger's defaults).
        self.admit(def, Operation::Create, &mut obj, None, &mut warnings)
            .await?;
        strategy::prepare_for_create(def, &mut obj);
        self.validate(def, &obj, None)?;
        strategy::allocate(self, def, &mut obj, None, opts.dry_run)?;
        let name = str_of(meta(&obj), "name").to_string();
        let key = def.key(namespace, &name);
        if opts.dry_run {
            if self.store.get(&key).await?.is_some() {
                return Err(ApiError::already_exists(details(def, &name)));
            }
            return Ok(Written {
                object: obj,
                warnings,
                created: true,
            });
        }
        match self.store.create(&key, encode(&obj)?).await {
            Ok(kv) => {
                set_rv(&mut obj, kv.mod_revision);
                Ok(Written {
                    object: obj,
                    warnings,
                    created: true,
                })
            }
            Err(k8rs_store::Error::AlreadyExists(_)) => {
                strategy::release(self, def, &obj);
                Err(ApiError::already_exists(details(def, &name)))
            }
            Err(e) => {
                strategy::release(self, def, &obj);
                Err(e.into())
            }
        }
    }

    fn validate(&self, def: &ResourceDef, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        let mut errors = match old {
            None => def.typed.validate(obj),
            Some(old) => def.typed.validate_update(obj, old),
        };
        if (def.group, def.plural) == (crate::crd::GROUP, crate::crd::PLURAL) {
            errors.extend(crate::crd::rule_syntax_errors(obj));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                def.kind,
                def.group,
                str_of(meta(obj), "name"),
                errors,
            ))
        }
    }

    /// Reads the current stored object.
    pub async fn read(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<(Value, i64)> {
        match self.store.get(&def.key(ns, name)).await? {
            Some(kv) => Ok((decode_kv(&kv)?, kv.mod_revision)),
            None => Err(ApiError::not_found(details(def, name))),
        }
    }

    /// Replaces an object (PUT) on the main resource or a subresource (`status`, ...).
    pub async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        check_type(def, &body, def.kind)?;
        let body_name = str_of(meta(&body), "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = meta(&body)["resourceVersion"].as_str().map(str::to_string);
        let body = Arc::new(body);
        self.guaranteed_update(def, ns, name, sub, opts, precondition, move |_| {
            Ok((*body).clone())
        })
        .await
    }

    /// Applies a patch to the current object and stores the result, retrying on conflicts
    /// unless the patch itself asks for a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        kind: PatchType,
        patch_body: &[u8],
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let schemas = self.schemas.clone();
        let patch_value = patch::parse(kind, patch_body)?;
        let precondition = patch::resource_version_of(&patch_value);
        let def_kind = def.kind;
        let def_group = def.group;
        let definition = self.schemas.definition_name(def);
        self.guaranteed_update(def, ns, name, sub, opts, precondition, move |current| {
            patch::apply(kind, current, &patch_value, &schemas, &definition)
                .map_err(|e| e.into_api_error(def_kind, def_group, name))
        })
        .await
    }

    /// The read-modify-write loop of every update: read, compute the new object, prepare,
    /// admit, validate, compare-and-swap, and retry when someone else wrote in between.
    #[allow(clippy::too_many_arguments)]
    async fn guaranteed_update<F>(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        opts: &WriteOptions,
        precondition: Option<String>,
        compute: F,
    ) -> ApiResult<Written>
    where
        F: Fn(&Value) -> ApiResult<Value>,
    {
        let key = def.key(ns, name);
        for _attempt in 0..16 {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(details(def, name)));
            };
            let old = decode_kv(&kv)?;
            if let Some(rv) = &precondition
                && !rv.is_empty()
                && *rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(details(def, name)));
            }
            let input = compute(&old)?;
            check_type(def, &input, def.kind)?;
            let mut warnings = Vec::new();
            let mut new = self.normalize(def, &input, opts, &mut warnings)?;
            let old_meta_name = str_of(meta(&new), "name");
            if !old_meta_name.is_empty() && old_meta_name != name {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({old_meta_name}) does not match the name on the URL ({name})"
                )));
            }
            strategy::prepare_for_update(def, sub, &mut new, &old);
            if sub.is_none() {
                self.admit(def, Operation::Update, &mut new, Some(&old), &mut warnings)
                    .await?;
            }
            set_rv(&mut new, kv.mod_revision);
            self.validate(def, &new, Some(&old))?;
            strategy::allocate(self, def, &mut new, Some(&old), opts.dry_run)?;
            if new == old {
                return Ok(Written {
                    object: new,
                    warnings,
                    created: false,
                });
            }
            // The last finalizer of an object being deleted is gone: the object goes too.
            if is_deleting(&new) && finalizers(&new).is_empty() && spec_finalizers_done(def, &new) {
                if opts.dry_run {
                    return Ok(Written {
                        object: new,
                        warnings,
                        created: false,
                    });
                }
                let deleted = self.store.delete(&key, Some(kv.mod_revision)).await;
                if let Cas::Done((_, rev)) = cas(deleted, def, name, true)? {
                    strategy::release(self, def, &new);
                    set_rv(&mut new, rev);
                    return Ok(Written {
                        object: new,
                        warnings,
                        created: false,
                    });
                }
                continue;
            }
            if opts.dry_run {
                return Ok(Written {
                    object: new,
                    warnings,
                    created: false,
                });
            }
            let updated = self
                .store
                .update(&key, encode(&new)?, kv.mod_revision)
                .await;
            if let Cas::Done(kv) = cas(updated, def, name, precondition.is_none())? {
                set_rv(&mut new, kv.mod_revision);
                strategy::release_replaced(self, def, &new, &old);
                return Ok(Written {
                    object: new,
                    warnings,
                    created: false,
                });
            }
        }
        Err(ApiError::conflict(details(def, name)))
    }

    /// Deletes an object, or starts its deletion when finalizers or a grace period keep it.
    pub async fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let key = def.key(ns, name);
        for _attempt in 0..16 {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(details(def, name)));
            };
            let old = decode_kv(&kv)?;
            check_preconditions(def, name, &old, opts)?;
            if def.plural == "namespaces" && strategy::is_protected_namespace(name) {
                return Err(ApiError::forbidden(
                    details(def, name),
                    "this namespace may not be deleted",
                ));
            }
            let mut new = old.clone();
            let pending = strategy::prepare_for_delete(def, &mut new, opts);
            if pending {
                if new == old {
                    return Ok(Deleted::Pending(old));
                }
                if opts.dry_run {
                    return Ok(Deleted::Pending(new));
                }
                let updated = self
                    .store
                    .update(&key, encode(&new)?, kv.mod_revision)
                    .await;
                if let Cas::Done(kv) = cas(updated, def, name, true)? {
                    set_rv(&mut new, kv.mod_revision);
                    return Ok(Deleted::Pending(new));
                }
                continue;
            }
            if opts.dry_run {
                return Ok(Deleted::Gone(old));
            }
            let deleted = self.store.delete(&key, Some(kv.mod_revision)).await;
            if let Cas::Done((_, rev)) = cas(deleted, def, name, true)? {
                strategy::release(self, def, &old);
                let mut gone = old;
                set_rv(&mut gone, rev);
                return Ok(Deleted::Gone(gone));
            }
        }
        Err(ApiError::conflict(details(def, name)))
    }

    /// Changes an object in storage with `f`, retrying on conflicts, without the update
    /// strategy's validation: for subresources whose own checks replace it (pods/binding sets
    /// the otherwise immutable `spec.nodeName`, as upstream's binding storage does).
    pub async fn mutate<F>(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        f: F,
    ) -> ApiResult<Value>
    where
        F: Fn(&mut Value) -> ApiResult<()>,
    {
        let key = def.key(ns, name);
        for _attempt in 0..16 {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(details(def, name)));
            };
            let mut obj = decode_kv(&kv)?;
            f(&mut obj)?;
            let updated = self
                .store
                .update(&key, encode(&obj)?, kv.mod_revision)
                .await;
            if let Cas::Done(kv) = cas(updated, def, name, true)? {
                set_rv(&mut obj, kv.mod_revision);
                return Ok(obj);
            }
        }
        Err(ApiError::conflict(details(def, name)))
    }

    /// The objects of a resource in a namespace (or all), from the cache at its revision.
    pub async fn list_cached(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
    ) -> ApiResult<(Vec<Arc<CachedObject>>, i64)> {
        self.cache.sync().await?;
        let (snapshot, rev) = self.cache.snapshot();
        let prefix = def.key(ns, "");
        let prefix = if ns.is_some() {
            prefix
        } else {
            format!("{}/", def.prefix)
        };
        Ok((
            crate::cache::range(&snapshot, &prefix, None)
                .cloned()
                .collect(),
            rev,
        ))
    }
}

/// How a compare-and-swap write ended: done, or lost a race and is to be retried.
enum Cas<T> {
    Done(T),
    Retry,
}

/// Maps a store write's result: conflicts are retried when `retry` (no resourceVersion
/// precondition), else upstream's 409; a vanished key is 404.
fn cas<T>(
    result: k8rs_store::Result<T>,
    def: &ResourceDef,
    name: &str,
    retry: bool,
) -> ApiResult<Cas<T>> {
    match result {
        Ok(v) => Ok(Cas::Done(v)),
        Err(k8rs_store::Error::Conflict { .. }) if retry => Ok(Cas::Retry),
        Err(k8rs_store::Error::Conflict { .. }) => Err(ApiError::conflict(details(def, name))),
        Err(k8rs_store::Error::NotFound(_)) => Err(ApiError::not_found(details(def, name))),
        Err(e) => Err(e.into()),
    }
}

/// Namespaces also wait for their `spec.finalizers` (the namespace finalizer's work).
fn spec_finalizers_done(def: &ResourceDef, obj: &Value) -> bool {
    def.plural != "namespaces"
        || obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
}

fn check_preconditions(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    let m = meta(obj);
    if let Some(uid) = &opts.precondition_uid
        && str_of(m, "uid") != uid
    {
        return Err(ApiError::conflict_msg(
            details(def, name),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                str_of(m, "uid")
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && str_of(m, "resourceVersion") != rv
    {
        return Err(ApiError::conflict_msg(
            details(def, name),
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                str_of(m, "resourceVersion")
            ),
        ));
    }
    Ok(())
}

pub fn is_deleting(obj: &Value) -> bool {
    meta(obj)["deletionTimestamp"].is_string()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
