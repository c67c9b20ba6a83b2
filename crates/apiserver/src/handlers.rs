//! The REST handlers of resource requests: one entry point that parses the request as
//! upstream's RequestInfo, finds the resource, and dispatches on verb and subresource.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use k8rs_auth::authn::UserInfo;
use k8rs_machinery::fields::FieldSelector;
use k8rs_machinery::labels::Selector;
use serde_json::{Value, json};

use crate::ApiServer;
use crate::cache::CachedObject;
use crate::convert;
use crate::decode::{self, MAX_BODY};
use crate::error::{ApiError, ApiResult};
use crate::objects::{DeleteOptions, Deleted, WriteOptions, Written, details};
use crate::patch::PatchType;
use crate::registry::{Def, ResourceDef};
use crate::request::{BodyType, Output, Params, RequestInfo, content_type, negotiate};
use crate::subresources;
use crate::table;

/// Serves `/api/v1/...` and `/apis/{group}/{version}/...` resource requests.
pub async fn resource(api: Arc<ApiServer>, info: RequestInfo, req: Request<Body>) -> Response {
    match dispatch(&api, &info, req).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

async fn dispatch(
    api: &Arc<ApiServer>,
    info: &RequestInfo,
    req: Request<Body>,
) -> ApiResult<Response> {
    if info.group == crate::metrics::GROUP {
        return crate::metrics::serve(api, info, req).await;
    }
    let entry = api
        .registry
        .lookup(&info.group, &info.version, &info.resource)
        .ok_or_else(|| ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: Default::default(),
        })?;
    let def: &ResourceDef = &entry;
    if info.namespace.is_some() && !def.namespaced {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: Default::default(),
        });
    }
    if def.namespaced && info.namespace.is_none() && info.name.is_some() {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: Default::default(),
        });
    }
    let params = Params::parse(req.uri().query())?;
    let ns = info.namespace.as_deref();
    let sub = match info.subresource.as_deref() {
        Some(s) => Some(
            def.subresources
                .iter()
                .copied()
                .find(|x| x.name() == s)
                .ok_or_else(|| ApiError::NotFound {
                    message: "the server could not find the requested resource".into(),
                    details: Default::default(),
                })?,
        ),
        None => None,
    };
    if let Some(sub) = sub {
        return subresources::serve(api, entry.clone(), info, sub, params, req).await;
    }
    let output = negotiate(req.headers())?;
    match (info.verb, info.name.as_deref()) {
        ("get", Some(name)) => get(api, def, ns, name, output).await,
        ("list", None) => list(api, def, ns, &params, output).await,
        ("watch", _) => crate::watch::serve(api.clone(), entry.clone(), info, params, output).await,
        ("create", None) => {
            if def.custom.as_ref().is_some_and(|c| c.terminating) {
                return Err(ApiError::MethodNotAllowed(
                    "create not allowed while custom resource definition is terminating".into(),
                ));
            }
            let requester = req.extensions().get::<UserInfo>().cloned();
            let mut body = read_object(api, def.types(), req).await?;
            if (def.group, def.plural) == ("certificates.k8s.io", "certificatesigningrequests") {
                stamp_requester(&mut body, requester.as_ref());
            }
            let opts = write_options(&params);
            let written = with_storage(api, &entry, body, |sdef, body| async move {
                api.create(&sdef, ns, body, &opts).await
            })
            .await?;
            Ok(written_response(
                api,
                def,
                written,
                StatusCode::CREATED,
                output,
            ))
        }
        ("update", Some(name)) => {
            let body = read_object(api, def.types(), req).await?;
            let opts = write_options(&params);
            let written = with_storage(api, &entry, body, |sdef, body| async move {
                api.update(&sdef, ns, name, None, body, &opts).await
            })
            .await?;
            Ok(written_response(api, def, written, StatusCode::OK, output))
        }
        ("patch", Some(name)) => {
            let kind = PatchType::from_body_type(content_type(req.headers())?)?;
            let body = read_body(req).await?;
            let written = patch_or_apply(api, def, ns, name, None, kind, &body, &params).await?;
            let code = if written.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(written_response(api, def, written, code, output))
        }
        ("delete", Some(name)) => {
            let opts = delete_options(api, &params, req).await?;
            delete(api, def, ns, name, &opts, output).await
        }
        ("deletecollection", None) => {
            let opts = delete_options(api, &params, req).await?;
            delete_collection(api, def, ns, &params, &opts, output).await
        }
        _ => Err(ApiError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

/// Runs a write against the stored form: converts the body when this version is not the
/// storage version, and converts the result back.
async fn with_storage<F, Fut>(
    api: &ApiServer,
    def: &Def,
    body: Value,
    write: F,
) -> ApiResult<Written>
where
    F: FnOnce(Def, Value) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Written>>,
{
    if !def.converts() {
        return write(def.clone(), body).await;
    }
    crate::objects::check_type(def, &body, def.kind)?;
    let sdef = api.storage_def(def);
    let stored = convert::to_storage(def, body)?;
    let mut written = write(sdef, stored).await?;
    written.object = convert::from_storage(def, written.object);
    Ok(written)
}

#[allow(clippy::too_many_arguments)]
pub async fn patch_or_apply(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    kind: PatchType,
    body: &[u8],
    params: &Params,
) -> ApiResult<Written> {
    let opts = write_options(params);
    if kind == PatchType::Strategic && def.custom.is_some() {
        // Custom resources have no patch strategies to merge by, as upstream.
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    if kind == PatchType::Apply && params.field_manager.is_none() {
        return Err(ApiError::BadRequest(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
        ));
    }
    let sdef = &api.storage_def(def);
    let result = if def.converts() {
        // Patches apply to the object in the version the client speaks.
        let (current, _) = api.read(sdef, ns, name).await?;
        let served = convert::from_storage(def, current);
        let patch = crate::patch::parse(kind, body)?;
        let patched = crate::patch::apply(
            kind,
            &served,
            &patch,
            &api.schemas,
            &api.schemas.definition_name(def),
        )
        .map_err(|e| e.into_api_error(def.kind, def.group, name))?;
        let stored = convert::to_storage(def, patched)?;
        let mut w = api.update(sdef, ns, name, sub, stored, &opts).await?;
        w.object = convert::from_storage(def, w.object);
        return Ok(w);
    } else {
        api.patch(def, ns, name, sub, kind, body, &opts).await
    };
    match result {
        Err(ApiError::NotFound { .. }) if kind == PatchType::Apply && sub.is_none() => {
            let mut obj = decode::yaml_or_json(body)?;
            obj["metadata"]["name"] = name.into();
            api.create(def, ns, obj, &opts).await
        }
        other => other,
    }
}

pub fn write_options(params: &Params) -> WriteOptions {
    WriteOptions {
        dry_run: params.dry_run,
        field_validation: params.field_validation.clone(),
    }
}

/// Reads a request body, refusing more than 3 MiB. The rest of an oversized body is read and
/// dropped (up to a bound) so that the client sees the 413 rather than a broken connection.
pub async fn read_body(req: Request<Body>) -> ApiResult<Bytes> {
    let mut body = req.into_body();
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("error reading request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > MAX_BODY {
            if seen > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        out.extend_from_slice(&data);
    }
    if seen > MAX_BODY {
        return Err(too_large());
    }
    Ok(Bytes::from(out))
}

/// How much of an oversized body is read before the connection is given up.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

fn too_large() -> ApiError {
    ApiError::RequestEntityTooLarge("Request entity too large: limit is 3145728".into())
}

/// Reads an object body in JSON, YAML or protobuf; `types` is the apiVersion and kind a
/// protobuf body is decoded as when its envelope names none.
pub async fn read_object(
    api: &ApiServer,
    types: (&str, &str),
    req: Request<Body>,
) -> ApiResult<Value> {
    let kind = content_type(req.headers())?;
    let body = read_body(req).await?;
    let value = match kind {
        BodyType::Json => decode::json(&body)?,
        BodyType::Yaml => decode::yaml_or_json(&body)?,
        BodyType::Protobuf => decode_protobuf(api, types, &body)?,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".into(),
            ));
        }
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

/// Decodes a protobuf body (`k8s\0` envelope) into its JSON form.
pub fn decode_protobuf(api: &ApiServer, types: (&str, &str), body: &[u8]) -> ApiResult<Value> {
    api.codec
        .decode_as(body, types.0, types.1)
        .map_err(|e| match e {
            k8rs_protobuf::Error::NotProtobuf => ApiError::UnsupportedMediaType(format!(
                "the body of the request is not a Kubernetes protobuf message: {e}"
            )),
            e => ApiError::BadRequest(format!("error decoding protobuf body: {e}")),
        })
}

async fn delete_options(
    api: &ApiServer,
    params: &Params,
    req: Request<Body>,
) -> ApiResult<DeleteOptions> {
    let protobuf = content_type(req.headers()).ok() == Some(BodyType::Protobuf);
    let body = read_body(req).await?;
    let mut opts = DeleteOptions {
        grace_period_seconds: params.grace_period_seconds,
        propagation_policy: params.propagation_policy.clone(),
        orphan_dependents: params.orphan_dependents,
        dry_run: params.dry_run,
        ..Default::default()
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = if protobuf {
            decode_protobuf(api, ("meta.k8s.io/v1", "DeleteOptions"), &body)?
        } else {
            decode::json(&body)?
        };
        if let Some(g) = v["gracePeriodSeconds"].as_i64() {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(p) = v["propagationPolicy"].as_str() {
            opts.propagation_policy = Some(p.to_string());
        }
        if let Some(o) = v["orphanDependents"].as_bool() {
            opts.orphan_dependents = Some(o);
        }
        if v["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"))
        {
            opts.dry_run = true;
        }
        opts.precondition_uid = v["preconditions"]["uid"].as_str().map(str::to_string);
        opts.precondition_rv = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
    }
    if let Some(p) = &opts.propagation_policy
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::UnprocessableEntity {
            message: format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ),
        });
    }
    Ok(opts)
}

async fn get(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    output: Output,
) -> ApiResult<Response> {
    api.cache.sync().await?;
    let sdef = &api.storage_def(def);
    let obj = api
        .cache
        .get(&sdef.key(ns, name))
        .ok_or_else(|| ApiError::not_found(details(def, name)))?;
    match output {
        Output::Table => {
            let value = served_value(def, &obj);
            let t = table::table(def, std::iter::once(value), None, "", None);
            Ok(json_response(StatusCode::OK, &t))
        }
        Output::Protobuf => Ok(object_response(
            api,
            StatusCode::OK,
            &served_value(def, &obj),
            output,
        )),
        Output::PartialMetadata => Ok(json_response(
            StatusCode::OK,
            &table::partial(&served_value(def, &obj)),
        )),
        Output::Yaml => Ok(yaml_response(&served_value(def, &obj))),
        _ if def.converts() => Ok(json_response(StatusCode::OK, &served_value(def, &obj))),
        _ => Ok(raw_json(StatusCode::OK, obj.json.clone())),
    }
}

/// The object in the version `def` serves.
pub fn served_value(def: &ResourceDef, obj: &CachedObject) -> Value {
    let v = obj.value();
    if def.converts() {
        convert::from_storage(def, v)
    } else {
        v
    }
}

/// Parsed selectors of a list or watch, checked against what the resource supports.
pub struct Filter {
    labels: Selector,
    fields: Option<FieldSelector>,
    field_names: Vec<&'static str>,
    /// The JSON paths of a custom resource's selectable fields, read from the object itself
    /// (its cached field values may predate its definition's).
    custom_paths: Option<Vec<&'static str>>,
}

impl Filter {
    pub fn new(def: &ResourceDef, params: &Params) -> ApiResult<Filter> {
        let labels = match params.label_selector.as_deref() {
            Some(s) => Selector::parse(s)
                .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?,
            None => Selector::everything(),
        };
        let field_names: Vec<&'static str> = def.field_selectors.iter().map(|(n, _)| *n).collect();
        let fields = match params.field_selector.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let sel = FieldSelector::parse(s)
                    .map_err(|e| ApiError::BadRequest(format!("invalid field selector: {e}")))?;
                sel.ensure_supported(|f| {
                    f == "metadata.name" || f == "metadata.namespace" || field_names.contains(&f)
                })
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                Some(sel)
            }
            None => None,
        };
        let custom_paths = def
            .custom
            .as_ref()
            .map(|_| def.field_selectors.iter().map(|(_, p)| *p).collect());
        Ok(Filter {
            labels,
            fields,
            field_names,
            custom_paths,
        })
    }

    pub fn matches(&self, obj: &CachedObject) -> bool {
        if !self.labels.matches(&obj.labels) {
            return false;
        }
        match &self.fields {
            None => true,
            Some(sel) => sel.matches(|field| match field {
                "metadata.name" => Some(obj.name.clone()),
                "metadata.namespace" => Some(obj.namespace.clone()),
                f => {
                    let i = self.field_names.iter().position(|n| *n == f)?;
                    match &self.custom_paths {
                        Some(paths) => paths
                            .get(i)
                            .map(|path| crate::cache::field_value(&obj.value(), path)),
                        None => obj.fields.get(i).cloned(),
                    }
                }
            }),
        }
    }
}

async fn list(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    params: &Params,
    output: Output,
) -> ApiResult<Response> {
    let filter = Filter::new(def, params)?;
    let page = crate::list::page(api, def, ns, params, &filter).await?;
    let cont = page.continue_token.as_deref();
    match output {
        Output::Table => {
            let values = page.items.iter().map(|o| served_value(def, o));
            let include = params.include_object.as_deref();
            let t = table::table(
                def,
                values,
                Some(page.revision),
                cont.unwrap_or(""),
                include,
            );
            Ok(json_response(StatusCode::OK, &t))
        }
        Output::PartialMetadata => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| table::partial(&served_value(def, o)))
                .collect();
            let list = json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta(page.revision, cont, page.remaining),
                "items": items,
            });
            Ok(json_response(StatusCode::OK, &list))
        }
        Output::Protobuf => {
            let items: Vec<Value> = page.items.iter().map(|o| served_value(def, o)).collect();
            let list = json!({
                "kind": format!("{}List", def.kind),
                "apiVersion": def.api_version(),
                "metadata": list_meta(page.revision, cont, page.remaining),
                "items": items,
            });
            Ok(object_response(api, StatusCode::OK, &list, output))
        }
        _ => {
            let mut out = Vec::with_capacity(
                page.items.iter().map(|o| o.json.len() + 1).sum::<usize>() + 256,
            );
            let head = json!({
                "kind": format!("{}List", def.kind),
                "apiVersion": def.api_version(),
                "metadata": list_meta(page.revision, cont, page.remaining),
            });
            let head = serde_json::to_vec(&head).map_err(ApiError::internal)?;
            out.extend_from_slice(&head[..head.len() - 1]);
            out.extend_from_slice(b",\"items\":[");
            for (i, obj) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if def.converts() {
                    let v = served_value(def, obj);
                    out.extend_from_slice(&serde_json::to_vec(&v).map_err(ApiError::internal)?);
                } else {
                    out.extend_from_slice(&obj.json);
                }
            }
            out.extend_from_slice(b"]}");
            if output == Output::Yaml {
                let v: Value = serde_json::from_slice(&out).map_err(ApiError::internal)?;
                return Ok(yaml_response(&v));
            }
            Ok(raw_json(StatusCode::OK, Bytes::from(out)))
        }
    }
}

fn list_meta(revision: i64, cont: Option<&str>, remaining: Option<i64>) -> Value {
    let mut m = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = cont {
        m["continue"] = c.into();
    }
    if let Some(r) = remaining {
        m["remainingItemCount"] = r.into();
    }
    m
}

async fn delete(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
    output: Output,
) -> ApiResult<Response> {
    let sdef = &api.storage_def(def);
    let result = api.delete(sdef, ns, name, opts).await?;
    let (obj, code, gone) = match result {
        Deleted::Gone(v) => (v, StatusCode::OK, true),
        Deleted::Pending(v) => (v, StatusCode::OK, false),
    };
    let obj = if def.converts() {
        convert::from_storage(def, obj)
    } else {
        obj
    };
    if def.return_deleted || !gone {
        return Ok(object_response(api, code, &obj, output));
    }
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": name,
            "group": def.group,
            "kind": def.plural,
            "uid": obj["metadata"]["uid"],
        }
    });
    Ok(object_response(api, code, &status, output))
}

async fn delete_collection(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    params: &Params,
    opts: &DeleteOptions,
    output: Output,
) -> ApiResult<Response> {
    let filter = Filter::new(def, params)?;
    let sdef = &api.storage_def(def);
    let (objects, rev) = api.list_cached(sdef, ns).await?;
    let mut items = Vec::new();
    for obj in objects.iter().filter(|o| filter.matches(o)) {
        let ns = (!obj.namespace.is_empty()).then_some(obj.namespace.as_str());
        match api.delete(sdef, ns, &obj.name, opts).await {
            Ok(Deleted::Gone(v) | Deleted::Pending(v)) => items.push(v),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": rev.to_string()},
        "items": items,
    });
    Ok(object_response(api, StatusCode::OK, &list, output))
}

pub fn written_response(
    api: &ApiServer,
    def: &ResourceDef,
    w: Written,
    code: StatusCode,
    output: Output,
) -> Response {
    let mut resp = match output {
        Output::Table => json_response(
            code,
            &table::table(def, std::iter::once(w.object), None, "", None),
        ),
        _ => object_response(api, code, &w.object, output),
    };
    add_warnings(&mut resp, &w.warnings);
    resp
}

pub fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "'"));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
}

/// An object in the negotiated form: protobuf for the built-in types when asked for (JSON
/// otherwise, which every client accepts), YAML, or JSON.
pub fn object_response(api: &ApiServer, code: StatusCode, v: &Value, output: Output) -> Response {
    match output {
        Output::Protobuf => {
            let known = api.codec.knows(
                v["apiVersion"].as_str().unwrap_or_default(),
                v["kind"].as_str().unwrap_or_default(),
            );
            match known.then(|| api.codec.encode(v)) {
                Some(Ok(bytes)) => {
                    let mut resp = (code, bytes).into_response();
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(k8rs_protobuf::MEDIA_TYPE),
                    );
                    resp
                }
                Some(Err(err)) => ApiError::internal(err).into_response(),
                None => json_response(code, v),
            }
        }
        Output::Yaml => {
            let mut resp = yaml_response(v);
            *resp.status_mut() = code;
            resp
        }
        _ => json_response(code, v),
    }
}

pub fn json_response(code: StatusCode, v: &Value) -> Response {
    raw_json(code, Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
}

pub fn raw_json(code: StatusCode, body: Bytes) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn yaml_response(v: &Value) -> Response {
    let text = serde_saphyr::to_string(v).unwrap_or_default();
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    resp
}

#[allow(dead_code)]
fn _assert_send(api: Arc<ApiServer>, info: RequestInfo, req: Request<Body>) {
    fn is_send<T: Send>(_: T) {}
    is_send(resource(api, info, req));
}

/// A CSR names who asked for it, as upstream's strategy sets it: whatever the body says is
/// replaced by the authenticated user.
fn stamp_requester(csr: &mut Value, user: Option<&UserInfo>) {
    let Some(spec) = csr.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    let Some(user) = user else { return };
    spec.insert("username".into(), user.name.clone().into());
    if !user.uid.is_empty() {
        spec.insert("uid".into(), user.uid.clone().into());
    }
    if !user.groups.is_empty() {
        spec.insert("groups".into(), user.groups.clone().into());
    }
    if !user.extra.is_empty() {
        spec.insert(
            "extra".into(),
            serde_json::to_value(&user.extra).unwrap_or_default(),
        );
    }
}
