//! The OpenAPI documents (`/openapi/v2`, `/openapi/v3`), generated from the k8s-openapi types'
//! schemas with upstream's patch metadata and group-version-kind extensions, and the same schema
//! graph used for strategic merge patches.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use k8rs_machinery::smp::{FieldPatchInfo, JsonSchemaDefinitions, PatchSchema};
use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceDef};

const REF_V3: &str = "#/components/schemas/";
const REF_V2: &str = "#/definitions/";

pub struct Schemas {
    /// Definitions by name, with `$ref`s in the OpenAPI v3 form.
    components: Map<String, Value>,
    names: HashMap<(&'static str, &'static str, &'static str), String>,
    patch: JsonSchemaDefinitions,
    v2: OnceLock<Bytes>,
    v2_pb: OnceLock<Bytes>,
    /// The index entries of the built-in group versions.
    v3_index: OnceLock<Map<String, Value>>,
    v3_docs: Mutex<HashMap<String, Bytes>>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schemas({} definitions)", self.components.len())
    }
}

fn ref_name(schema: &Value) -> Option<String> {
    let r = schema.get("$ref")?.as_str()?;
    r.rsplit('/').next().map(str::to_string)
}

impl Schemas {
    pub fn build(registry: &Registry) -> Schemas {
        let settings = schemars::generate::SchemaSettings::openapi3();
        let mut generator = schemars::SchemaGenerator::new(settings);
        let mut names = HashMap::new();
        for def in registry.all() {
            let schema = def.typed.schema(&mut generator);
            if let Some(name) = ref_name(schema.as_value()) {
                names.insert((def.group, def.version, def.kind), name);
            }
        }
        for extra in [
            generator.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>(),
            generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>(),
        ] {
            let _ = extra;
        }
        let mut components: Map<String, Value> =
            generator.take_definitions(true).into_iter().collect();
        for (name, schema) in components.iter_mut() {
            strip_openapi3_only(schema);
            let _ = name;
        }
        for def in registry.all() {
            if let Some(name) = names.get(&(def.group, def.version, def.kind))
                && let Some(s) = components.get_mut(name)
            {
                s["x-kubernetes-group-version-kind"] =
                    json!([{"group": def.group, "version": def.version, "kind": def.kind}]);
            }
        }
        for &(definition, field, strategy, merge_key) in k8rs_machinery::patchmeta::PATCH_METADATA {
            if let Some(prop) = components
                .get_mut(definition)
                .and_then(|d| d.get_mut("properties"))
                .and_then(|p| p.get_mut(field))
            {
                prop["x-kubernetes-patch-strategy"] = strategy.into();
                if let Some(k) = merge_key {
                    prop["x-kubernetes-patch-merge-key"] = k.into();
                }
            }
        }
        let patch = JsonSchemaDefinitions::new(&components);
        Schemas {
            components,
            names,
            patch,
            v2: OnceLock::new(),
            v2_pb: OnceLock::new(),
            v3_index: OnceLock::new(),
            v3_docs: Mutex::new(HashMap::new()),
        }
    }

    /// Every definition, by name, in the OpenAPI v3 form.
    pub fn definitions(&self) -> &Map<String, Value> {
        &self.components
    }

    /// `/openapi/v2` in gnostic's protobuf, as kubectl asks for it.
    pub fn v2_protobuf(&self) -> Bytes {
        self.v2_pb
            .get_or_init(|| {
                let doc: Value = serde_json::from_slice(&self.v2()).unwrap_or(Value::Null);
                Bytes::from(k8rs_protobuf::encode_openapi_v2(&doc))
            })
            .clone()
    }

    /// The definition name of a resource's type (e.g. `io.k8s.api.core.v1.Pod`).
    pub fn definition_name(&self, def: &ResourceDef) -> String {
        if let Some(custom) = &def.custom {
            return custom.definition.clone();
        }
        self.names
            .get(&(def.group, def.version, def.kind))
            .cloned()
            .unwrap_or_default()
    }

    /// `/openapi/v3`: the index of group-version documents. The hash of a built-in group
    /// version changes with the binary, that of a custom one with its definitions' schemas.
    pub fn v3_index(&self, registry: &Registry) -> Bytes {
        let mut paths = self
            .v3_index
            .get_or_init(|| {
                let mut paths = Map::new();
                for path in v3_paths_of(registry, |d| d.custom.is_none()) {
                    let hash = fxhash(format!("{}{path}", env!("CARGO_PKG_VERSION")).as_bytes());
                    paths.insert(path.clone(), index_entry(&path, hash));
                }
                paths
            })
            .clone();
        for path in v3_paths_of(registry, |d| d.custom.is_some()) {
            let schemas: Vec<String> = custom_defs_at(registry, &path)
                .iter()
                .filter_map(|d| d.custom.as_ref())
                .map(|c| c.openapi.to_string())
                .collect();
            let hash = fxhash(format!("{path}{}", schemas.concat()).as_bytes());
            paths.insert(path.clone(), index_entry(&path, hash));
        }
        Bytes::from(serde_json::to_vec(&json!({"paths": paths})).unwrap_or_default())
    }

    /// `/openapi/v3/{api/v1 | apis/group/version}`: the group version's operations and the
    /// definitions they reach, built on first request and kept.
    pub fn v3_doc(&self, registry: &Registry, path: &str) -> Option<Bytes> {
        let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => return None,
        };
        registry.resources(group, version).next()?;
        if registry
            .resources(group, version)
            .any(|d| d.custom.is_some())
        {
            return Some(self.v3_custom_doc(registry, group, version));
        }
        let mut docs = self.v3_docs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(doc) = docs.get(path) {
            return Some(doc.clone());
        }
        let roots: Vec<String> = registry
            .resources(group, version)
            .map(|d| self.definition_name(&d))
            .collect();
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": self.v3_paths(registry, group, version),
            "components": {"schemas": self.reachable(&roots)},
        });
        let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        docs.insert(path.to_string(), bytes.clone());
        Some(bytes)
    }

    /// The document of a group version of custom resources, built on each request (their
    /// definitions change while the server runs).
    fn v3_custom_doc(&self, registry: &Registry, group: &str, version: &str) -> Bytes {
        let mut custom = Map::new();
        let mut refs = Vec::new();
        for def in registry.resources(group, version) {
            match &def.custom {
                Some(c) => {
                    collect_refs(&c.openapi, &mut refs);
                    custom.insert(c.definition.clone(), c.openapi.clone());
                }
                None => refs.push(self.definition_name(&def)),
            }
        }
        let mut schemas = self.reachable(&refs);
        schemas.extend(custom);
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
            "paths": self.v3_paths(registry, group, version),
            "components": {"schemas": schemas},
        });
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    }

    /// The definitions `roots` refer to, transitively.
    fn reachable(&self, roots: &[String]) -> Map<String, Value> {
        let mut out = Map::new();
        let mut todo: Vec<String> = roots.to_vec();
        while let Some(name) = todo.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(schema) = self.components.get(&name) else {
                continue;
            };
            collect_refs(schema, &mut todo);
            out.insert(name, schema.clone());
        }
        out
    }

    /// The operations of one group version, with the query parameters kubectl probes for
    /// (`fieldValidation`) and the group-version-kind of each.
    fn v3_paths(&self, registry: &Registry, group: &str, version: &str) -> Value {
        let mut paths = Map::new();
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
        let write_params = json!([
            query("dryRun"),
            query("fieldManager"),
            query("fieldValidation")
        ]);
        for def in registry.resources(group, version) {
            let base = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            let collection = if def.namespaced {
                format!("{base}/namespaces/{{namespace}}/{}", def.plural)
            } else {
                format!("{base}/{}", def.plural)
            };
            let gvk = json!({"group": def.group, "version": def.version, "kind": def.kind});
            let reference = json!({"$ref": format!("{REF_V3}{}", self.definition_name(&def))});
            let op = |action: &str, params: &Value| {
                json!({
                    "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
                })
            };
            let none = json!([]);
            paths.insert(
                collection.clone(),
                json!({
                    "get": op("list", &none),
                    "post": op("post", &write_params),
                    "delete": op("deletecollection", &none),
                }),
            );
            paths.insert(
                format!("{collection}/{{name}}"),
                json!({
                    "get": op("get", &none),
                    "put": op("put", &write_params),
                    "patch": op("patch", &write_params),
                    "delete": op("delete", &none),
                }),
            );
        }
        Value::Object(paths)
    }

    /// `/openapi/v2` in JSON.
    pub fn v2(&self) -> Bytes {
        self.v2
            .get_or_init(|| {
                let mut defs = Value::Object(self.components.clone());
                rewrite_refs(&mut defs);
                let doc = json!({
                    "swagger": "2.0",
                    "info": {"title": "Kubernetes", "version": "v1.33.0"},
                    "paths": {},
                    "definitions": defs,
                });
                Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
            })
            .clone()
    }
}

impl PatchSchema for Schemas {
    fn lookup(&self, def: &str, field: &str) -> Option<FieldPatchInfo> {
        self.patch.lookup(def, field)
    }
}

/// Drops the OpenAPI 3.1 / JSON-schema-only keys schemars may emit.
fn strip_openapi3_only(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("$schema");
            for x in m.values_mut() {
                strip_openapi3_only(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_openapi3_only),
        _ => {}
    }
}

/// The document paths (`api/v1`, `apis/apps/v1`) of the group versions with a resource that
/// `which` picks.
fn v3_paths_of(registry: &Registry, which: impl Fn(&ResourceDef) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            if !registry.resources(group, version).any(|d| which(&d)) {
                continue;
            }
            out.push(if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            });
        }
    }
    out
}

/// The custom resources of the group version at a document path (`apis/example.com/v1`).
fn custom_defs_at(registry: &Registry, path: &str) -> Vec<crate::registry::Def> {
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["apis", g, v] => registry
            .resources(g, v)
            .filter(|d| d.custom.is_some())
            .collect(),
        _ => Vec::new(),
    }
}

fn index_entry(path: &str, hash: u64) -> Value {
    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash:016X}")})
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(name) = r.strip_prefix(REF_V3)
            {
                out.push(name.to_string());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix(REF_V3)
            {
                *r = format!("{REF_V2}{name}");
            }
            for x in m.values_mut() {
                rewrite_refs(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn fxhash(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h = (h ^ u64::from(x)).wrapping_mul(0x100000001b3);
    }
    h
}
