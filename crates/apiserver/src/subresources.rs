//! Subresources: status, scale, pods/binding, pods/eviction, pods/log,
//! serviceaccounts/token, namespaces/finalize and certificatesigningrequests/approval.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::error::{ApiError, ApiResult, Details};
use crate::handlers::{
    self, json_response, read_body, read_object, write_options, written_response,
};
use crate::objects::{DeleteOptions, details, meta};
use crate::patch::PatchType;
use crate::registry::{Def, ResourceDef, Sub};
use crate::request::{Params, RequestInfo, content_type, negotiate};

pub async fn serve(
    api: &Arc<ApiServer>,
    entry: Def,
    info: &RequestInfo,
    sub: Sub,
    params: Params,
    req: Request<Body>,
) -> ApiResult<Response> {
    let def: &ResourceDef = &entry;
    let ns = info.namespace.as_deref();
    let name = info.name.as_deref().unwrap_or_default();
    let verb = info.verb;
    if !sub.verbs().contains(&verb) {
        return Err(ApiError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        ));
    }
    let output = negotiate(req.headers())?;
    match (sub, verb) {
        (Sub::Scale, _) => scale(api, def, ns, name, verb, &params, req).await,
        (Sub::Binding, _) => binding(api, def, ns, name, req).await,
        (Sub::Eviction, _) => eviction(api, def, ns, name, req).await,
        (Sub::Log, _) => log(api, def, ns, name, req.uri().query()).await,
        (Sub::Token, _) => token(api, def, ns, name, req).await,
        (_, "get") => {
            let (obj, _) = api.read(&api.storage_def(def), ns, name).await?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        (_, "update") => {
            let body = read_object(api, def.types(), req).await?;
            let body = merge_subresource(api, def, ns, name, sub, body).await?;
            let w = api
                .update(
                    def,
                    ns,
                    name,
                    Some(sub.name()),
                    body,
                    &write_options(&params),
                )
                .await?;
            Ok(written_response(api, def, w, StatusCode::OK, output))
        }
        (_, "patch") => {
            let kind = PatchType::from_body_type(content_type(req.headers())?)?;
            let body = read_body(req).await?;
            let w = handlers::patch_or_apply(
                api,
                def,
                ns,
                name,
                Some(sub.name()),
                kind,
                &body,
                &params,
            )
            .await?;
            Ok(written_response(api, def, w, StatusCode::OK, output))
        }
        _ => Err(ApiError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        )),
    }
}

/// For subresources that change one part of the object (finalize: spec.finalizers; approval
/// and ephemeralcontainers), the body's part is put into the current object; `status` takes
/// the body whole (the strategy keeps everything but the status).
async fn merge_subresource(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    sub: Sub,
    body: Value,
) -> ApiResult<Value> {
    let part: &[&str] = match sub {
        Sub::Finalize => &["spec", "finalizers"],
        Sub::Approval => &["status", "conditions"],
        Sub::Ephemeral => &["spec", "ephemeralContainers"],
        _ => return Ok(body),
    };
    let (mut current, rev) = api.read(def, ns, name).await?;
    let body_rv = meta(&body)["resourceVersion"].as_str().unwrap_or_default();
    if !body_rv.is_empty() && body_rv != rev.to_string() {
        return Err(ApiError::conflict(details(def, name)));
    }
    current[part[0]][part[1]] = body[part[0]][part[1]].clone();
    Ok(current)
}

fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// The JSON paths (`.spec.replicas`) of a resource's scale: spec replicas, status replicas,
/// and the label selector (a string) if it has one.
fn scale_paths(def: &ResourceDef) -> (String, String, Option<String>) {
    let text = |v: &Value| v.as_str().map(str::to_string);
    match &def.custom {
        Some(custom) => (
            text(&custom.scale["specReplicasPath"]).unwrap_or_else(|| ".spec.replicas".into()),
            text(&custom.scale["statusReplicasPath"]).unwrap_or_else(|| ".status.replicas".into()),
            text(&custom.scale["labelSelectorPath"]),
        ),
        None => (".spec.replicas".into(), ".status.replicas".into(), None),
    }
}

/// The value at a simple JSON path (`.spec.replicas`).
fn at_path<'v>(obj: &'v Value, path: &str) -> &'v Value {
    path.split('.')
        .filter(|s| !s.is_empty())
        .fold(obj, |v, field| &v[field])
}

/// Sets the value at a simple JSON path, creating the objects on the way.
fn set_at_path(obj: &mut Value, path: &str, value: Value) {
    let fields: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = fields.split_last() else {
        return;
    };
    let mut at = obj;
    for field in parents {
        let Some(m) = at.as_object_mut() else { return };
        at = m
            .entry(field.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        if at.is_null() {
            *at = Value::Object(Default::default());
        }
    }
    if let Some(m) = at.as_object_mut() {
        m.insert(last.to_string(), value);
    }
}

fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
    let m = meta(obj);
    if def.custom.is_some() {
        let (spec, status, selector) = scale_paths(def);
        let mut scale = json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
            },
            "spec": {"replicas": at_path(obj, &spec).as_i64().unwrap_or(0)},
            "status": {"replicas": at_path(obj, &status).as_i64().unwrap_or(0)},
        });
        if let Some(s) = selector.and_then(|p| at_path(obj, &p).as_str().map(str::to_string)) {
            scale["status"]["selector"] = s.into();
        }
        return scale;
    }
    let selector = if def.kind == "ReplicationController" {
        selector_string(&json!({"matchLabels": obj["spec"]["selector"]}))
    } else {
        selector_string(&obj["spec"]["selector"])
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

async fn scale(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    verb: &str,
    params: &Params,
    req: Request<Body>,
) -> ApiResult<Response> {
    let (current, _) = api.read(def, ns, name).await?;
    let scale = scale_of(def, &current);
    let new_scale = match verb {
        "get" => return Ok(json_response(StatusCode::OK, &scale)),
        "update" => read_object(api, ("autoscaling/v1", "Scale"), req).await?,
        _ => {
            let kind = PatchType::from_body_type(content_type(req.headers())?)?;
            let body = read_body(req).await?;
            let patch = crate::patch::parse(kind, &body)?;
            crate::patch::apply(
                kind,
                &scale,
                &patch,
                &api.schemas,
                "io.k8s.api.autoscaling.v1.Scale",
            )
            .map_err(|e| e.into_api_error("Scale", "autoscaling", name))?
        }
    };
    let replicas = new_scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::UnprocessableEntity {
            message: format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ),
        });
    }
    let rv = meta(&new_scale)["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut obj = current;
    if !rv.is_empty() {
        obj["metadata"]["resourceVersion"] = rv.into();
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    set_at_path(&mut obj, &scale_paths(def).0, replicas.into());
    let w = api
        .update(def, ns, name, None, obj, &write_options(params))
        .await?;
    Ok(json_response(StatusCode::OK, &scale_of(def, &w.object)))
}

fn success(code: StatusCode) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()}),
    )
}

async fn binding(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    req: Request<Body>,
) -> ApiResult<Response> {
    let body = read_object(api, ("v1", "Binding"), req).await?;
    let node = body["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::UnprocessableEntity {
            message: format!("Binding.core \"{name}\" is invalid: target.name: Required value"),
        });
    }
    let uid = body["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // As upstream's binding storage: set the node and the PodScheduled condition in one write,
    // refusing pods that are deleting or already bound.
    api.mutate(def, ns, name, |pod| {
        if crate::objects::is_deleting(pod) {
            return Err(ApiError::conflict_msg(
                details(def, name),
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let current = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if !current.is_empty() {
            return Err(ApiError::conflict_msg(
                details(def, name),
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        if !uid.is_empty() && pod["metadata"]["uid"] != uid.as_str() {
            return Err(ApiError::conflict_msg(
                details(def, name),
                "the UID in the precondition does not match",
            ));
        }
        pod["spec"]["nodeName"] = node.clone().into();
        let mut conditions = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(json!({
            "type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": crate::objects::now_rfc3339(),
        }));
        pod["status"]["conditions"] = Value::Array(conditions);
        Ok(())
    })
    .await?;
    Ok(success(StatusCode::CREATED))
}

async fn eviction(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    req: Request<Body>,
) -> ApiResult<Response> {
    let body = read_object(api, ("policy/v1", "Eviction"), req).await?;
    let (pod, _) = api.read(def, ns, name).await?;
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !terminal && !crate::objects::is_deleting(&pod) {
        crate::admission::check_disruption_budgets(api, ns.unwrap_or_default(), &pod).await?;
    }
    let opts = DeleteOptions {
        grace_period_seconds: body["deleteOptions"]["gracePeriodSeconds"].as_i64(),
        precondition_uid: body["deleteOptions"]["preconditions"]["uid"]
            .as_str()
            .map(str::to_string),
        ..Default::default()
    };
    api.delete(def, ns, name, &opts).await?;
    Ok(success(StatusCode::CREATED))
}

/// `pods/log`: the container's log streamed from the kubelet of the pod's node.
async fn log(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    query: Option<&str>,
) -> ApiResult<Response> {
    let (pod, _) = api.read(def, ns, name).await?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let asked = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "container")
            .map(|(_, v)| v.into_owned())
    });
    let container = crate::nodeproxy::log_container(&pod, name, asked.as_deref())?;
    let nodes = api
        .registry
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes are not served".into()))?;
    let (node, _) = api.read(&nodes, None, node_name).await?;
    let Some(addr) = crate::metrics::scraper::kubelet_endpoint(&node) else {
        return Err(ApiError::BadRequest(format!(
            "no kubelet endpoint is known for node \"{node_name}\""
        )));
    };
    let ns = ns.unwrap_or_default();
    let path = crate::nodeproxy::log_path(ns, name, &container, query);
    let body = crate::nodeproxy::stream_log(&api.kubelet_connector, addr, name, &path).await?;
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

async fn token(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    req: Request<Body>,
) -> ApiResult<Response> {
    let body = read_object(api, ("authentication.k8s.io/v1", "TokenRequest"), req).await?;
    let (sa, _) = api.read(def, ns, name).await?;
    let ns = ns.unwrap_or_default();
    let spec = &body["spec"];
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::UnprocessableEntity {
            message: format!(
                "TokenRequest.authentication.k8s.io \"{name}\" is invalid: spec.expirationSeconds: Invalid value: {expiration}: may not specify a duration less than 10 minutes"
            ),
        });
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![api.config.issuer.clone()]);
    let bound = &spec["boundObjectRef"];
    let bound_pod = match bound["kind"].as_str() {
        None => None,
        Some("Pod") => {
            let pod_name = bound["name"].as_str().unwrap_or_default();
            let pods = api
                .registry
                .lookup("", "v1", "pods")
                .ok_or_else(|| ApiError::internal("no pods"))?;
            let (pod, _) = api.read(&pods, Some(ns), pod_name).await?;
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if bound["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u != uid)
            {
                return Err(ApiError::conflict_msg(
                    Details::new(pod_name, "", "pods"),
                    "the UID in the bound object reference does not match",
                ));
            }
            Some(k8rs_auth::tokens::ObjectRef {
                name: pod_name.to_string(),
                uid,
            })
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token to object of kind {other}: only Pod is supported"
            )));
        }
    };
    let claims = k8rs_auth::tokens::TokenRequestClaims {
        namespace: ns.to_string(),
        service_account_name: name.to_string(),
        service_account_uid: sa["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        audiences: audiences.clone(),
        expiration_seconds: expiration,
        bound_pod,
        bound_secret: None,
        bound_node: None,
        warn_after_seconds: None,
    };
    let (token, expires) = api
        .tokens
        .issue(&claims, chrono::Utc::now())
        .map_err(ApiError::internal)?;
    let mut out = body.clone();
    out["kind"] = "TokenRequest".into();
    out["apiVersion"] = "authentication.k8s.io/v1".into();
    out["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    out["spec"]["audiences"] = json!(audiences);
    out["spec"]["expirationSeconds"] = expiration.into();
    out["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    Ok(json_response(StatusCode::CREATED, &out))
}
