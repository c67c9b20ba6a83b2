//! The resource metrics API, `metrics.k8s.io/v1beta1`, served by the API server itself as
//! metrics-server serves it behind the aggregator: a [`scraper`] reads every node agent's
//! `/metrics/resource` each resolution period into a [`MetricsStore`], and `NodeMetrics`
//! (`nodes`, cluster-scoped) and `PodMetrics` (`pods`, namespaced) are computed from it on
//! `get` and `list` (label and field selectors as for nodes and pods). `kubectl top` and the
//! HorizontalPodAutoscaler read them.

pub mod prom;
pub mod scraper;
pub mod shapes;
pub mod store;

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::error::{ApiError, ApiResult, Details};
use crate::handlers::{Filter, json_response};
use crate::request::{Params, RequestInfo};

pub use scraper::{ScraperConfig, start_scraper};
pub use store::MetricsStore;

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// Its only version.
pub const VERSION: &str = "v1beta1";

const VERBS: &[&str] = &["get", "list"];

/// `(plural, singular, kind, namespaced)` of the served resources.
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("nodes", "", "NodeMetrics", false),
    ("pods", "", "PodMetrics", true),
];

/// Errors of scraping (the API side answers with [`ApiError`]).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The client certificate could not be loaded: the scraper cannot start.
    #[error("setting up the scraper's TLS client failed: {0}")]
    TlsSetupFailed(String),
    /// One endpoint could not be scraped (it is skipped this cycle).
    #[error("scraping {endpoint} failed: {reason}")]
    ScrapeFailed { endpoint: String, reason: String },
}

/// Serves a request under `/apis/metrics.k8s.io/`.
pub async fn serve(
    api: &Arc<ApiServer>,
    info: &RequestInfo,
    req: Request<Body>,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        details: Default::default(),
    };
    if info.version != VERSION || info.subresource.is_some() {
        return Err(not_found());
    }
    let namespaced = match info.resource.as_str() {
        "nodes" if info.namespace.is_none() => false,
        "pods" => true,
        _ => return Err(not_found()),
    };
    let params = Params::parse(req.uri().query())?;
    let ns = info.namespace.as_deref();
    let body = match (info.verb, info.name.as_deref(), namespaced) {
        ("get", Some(name), false) => get_node(api, name).await?,
        ("list", None, false) => list_nodes(api, &params).await?,
        ("get", Some(name), true) => get_pod(api, ns.unwrap_or_default(), name).await?,
        ("list", None, true) => list_pods(api, ns, &params).await?,
        _ => {
            return Err(ApiError::MethodNotAllowed(
                "the server does not allow this method on the requested resource".into(),
            ));
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn core_def(api: &ApiServer, plural: &str) -> ApiResult<crate::registry::Def> {
    api.registry
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no {plural} in the registry")))
}

async fn get_node(api: &ApiServer, name: &str) -> ApiResult<Value> {
    let def = &core_def(api, "nodes")?;
    api.cache.sync().await?;
    let missing = || ApiError::not_found(Details::new(name, GROUP, "nodemetrics"));
    let node = api.cache.get(&def.key(None, name)).ok_or_else(missing)?;
    let usage = api.metrics.node(name).ok_or_else(missing)?;
    Ok(shapes::node_metrics(
        name,
        &node.labels,
        &usage,
        chrono::Utc::now(),
    ))
}

async fn list_nodes(api: &ApiServer, params: &Params) -> ApiResult<Value> {
    let def = &core_def(api, "nodes")?;
    let filter = Filter::new(def, params)?;
    let (nodes, _) = api.list_cached(def, None).await?;
    let now = chrono::Utc::now();
    let items = nodes
        .iter()
        .filter(|n| filter.matches(n))
        .filter_map(|n| {
            let usage = api.metrics.node(&n.name)?;
            Some(shapes::node_metrics(&n.name, &n.labels, &usage, now))
        })
        .collect();
    Ok(shapes::list("NodeMetrics", items))
}

async fn get_pod(api: &ApiServer, ns: &str, name: &str) -> ApiResult<Value> {
    let def = &core_def(api, "pods")?;
    api.cache.sync().await?;
    let missing = || ApiError::not_found(Details::new(name, GROUP, "podmetrics"));
    let pod = api
        .cache
        .get(&def.key(Some(ns), name))
        .ok_or_else(missing)?;
    let usage = api.metrics.pod(ns, name).ok_or_else(missing)?;
    Ok(shapes::pod_metrics(
        ns,
        name,
        &pod.labels,
        &usage,
        chrono::Utc::now(),
    ))
}

async fn list_pods(api: &ApiServer, ns: Option<&str>, params: &Params) -> ApiResult<Value> {
    let def = &core_def(api, "pods")?;
    let filter = Filter::new(def, params)?;
    let (pods, _) = api.list_cached(def, ns).await?;
    let now = chrono::Utc::now();
    let items = pods
        .iter()
        .filter(|p| filter.matches(p))
        .filter_map(|p| {
            let usage = api.metrics.pod(&p.namespace, &p.name)?;
            Some(shapes::pod_metrics(
                &p.namespace,
                &p.name,
                &p.labels,
                &usage,
                now,
            ))
        })
        .collect();
    Ok(shapes::list("PodMetrics", items))
}

/// The group in `/apis` and `/apis/metrics.k8s.io`.
pub fn api_group() -> Value {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv})
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({"name": plural, "singularName": singular, "namespaced": namespaced,
                   "kind": kind, "verbs": VERBS})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1",
           "groupVersion": format!("{GROUP}/{VERSION}"), "resources": resources})
}

/// The group's entry in aggregated discovery (`apidiscovery.k8s.io/v2`).
pub fn aggregated() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({
                "resource": plural,
                "responseKind": {"group": "", "version": "", "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": singular,
                "verbs": VERBS,
            })
        })
        .collect();
    json!({
        "metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}],
    })
}
