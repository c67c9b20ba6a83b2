//! What a request asks for: the resource path parsed as upstream's RequestInfo (so authorizers
//! and admission see verbs and resources), its query parameters, and the media types it sends
//! and accepts.

use http::{HeaderMap, Method, header};

use crate::error::{ApiError, ApiResult};

/// A resource request, parsed from its path and method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub verb: &'static str,
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl RequestInfo {
    /// Parses `/api/v1/...` and `/apis/{group}/{version}/...`; `None` for other paths.
    pub fn parse(method: &Method, path: &str, watch_param: bool) -> Option<RequestInfo> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, mut rest) = match parts.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return None,
        };
        let mut legacy_watch = false;
        if rest.first() == Some(&"watch") {
            legacy_watch = true;
            rest = &rest[1..];
        }
        if rest.is_empty() || rest.iter().any(|p| p.is_empty()) {
            return None;
        }
        let mut info = RequestInfo {
            group: group.to_string(),
            version: version.to_string(),
            ..Default::default()
        };
        if rest[0] == "namespaces" && rest.len() >= 3 && !matches!(rest[2], "status" | "finalize")
            || rest[0] == "namespaces" && rest.len() > 3
        {
            info.namespace = Some(rest[1].to_string());
            rest = &rest[2..];
        }
        info.resource = rest[0].to_string();
        info.name = rest.get(1).map(|s| s.to_string());
        info.subresource = rest.get(2).map(|s| s.to_string());
        if rest.len() > 3 {
            return None;
        }
        info.verb = match (method, info.name.is_some()) {
            (&Method::GET | &Method::HEAD, _) if legacy_watch || watch_param => "watch",
            (&Method::GET | &Method::HEAD, true) => "get",
            (&Method::GET | &Method::HEAD, false) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => "",
        };
        Some(info)
    }
}

/// The query parameters of resource requests.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub timeout_seconds: Option<u64>,
    pub dry_run: bool,
    pub field_validation: Option<String>,
    pub field_manager: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub orphan_dependents: Option<bool>,
    pub include_object: Option<String>,
    /// pods/log
    pub container: Option<String>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> ApiResult<Params> {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "labelSelector" => p.label_selector = Some(v),
                "fieldSelector" => p.field_selector = Some(v),
                "limit" => p.limit = parse_num(&k, &v)?,
                "continue" if !v.is_empty() => p.continue_token = Some(v),
                "resourceVersion" if !v.is_empty() => p.resource_version = Some(v),
                "resourceVersionMatch" if !v.is_empty() => p.resource_version_match = Some(v),
                "watch" => p.watch = parse_bool(&k, &v)?,
                "allowWatchBookmarks" => p.allow_bookmarks = parse_bool(&k, &v)?,
                "sendInitialEvents" => p.send_initial_events = Some(parse_bool(&k, &v)?),
                "timeoutSeconds" => p.timeout_seconds = Some(parse_num(&k, &v)?),
                "dryRun" => {
                    if v != "All" {
                        return Err(ApiError::BadRequest(format!(
                            "Invalid dryRun value: {v:?}: supported values: \"All\""
                        )));
                    }
                    p.dry_run = true
                }
                "fieldValidation" => p.field_validation = Some(v),
                "fieldManager" => p.field_manager = Some(v),
                "propagationPolicy" => p.propagation_policy = Some(v),
                "gracePeriodSeconds" => p.grace_period_seconds = Some(parse_num(&k, &v)?),
                "orphanDependents" => p.orphan_dependents = Some(parse_bool(&k, &v)?),
                "includeObject" => p.include_object = Some(v),
                "container" => p.container = Some(v),
                _ => {}
            }
        }
        Ok(p)
    }
}

fn parse_bool(k: &str, v: &str) -> ApiResult<bool> {
    match v {
        "" | "true" | "1" | "True" | "TRUE" | "t" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "f" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "invalid value {v:?} for {k}: not a boolean"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(k: &str, v: &str) -> ApiResult<T> {
    v.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid value {v:?} for {k}: not a number")))
}

/// What the client wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `application/vnd.kubernetes.protobuf`, for the built-in types.
    Protobuf,
    Yaml,
    Table,
    PartialMetadata,
    /// Aggregated discovery (`apidiscovery.k8s.io/v2`).
    Discovery,
}

/// Picks the first acceptable media type of the Accept header.
pub fn negotiate(headers: &HeaderMap) -> ApiResult<Output> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let mut as_ = "";
        let mut group = "";
        let mut version = "";
        for p in parts {
            match p.split_once('=') {
                Some(("as", v)) => as_ = v,
                Some(("g", v)) => group = v,
                Some(("v", v)) => version = v,
                _ => {}
            }
        }
        let json = matches!(media, "application/json" | "*/*" | "application/*");
        let out = match (as_, group, version) {
            ("", _, _) if media == k8rs_protobuf::MEDIA_TYPE => Some(Output::Protobuf),
            ("", _, _) if json => Some(Output::Json),
            ("", _, _) if media == "application/yaml" => Some(Output::Yaml),
            ("Table", "meta.k8s.io", "v1" | "v1beta1") if json => Some(Output::Table),
            ("PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io", "v1")
                if json =>
            {
                Some(Output::PartialMetadata)
            }
            ("APIGroupDiscoveryList", "apidiscovery.k8s.io", "v2") if json => {
                Some(Output::Discovery)
            }
            _ => None,
        };
        if let Some(out) = out {
            return Ok(out);
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept:?})"
    )))
}

/// The kinds of request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Protobuf,
    Yaml,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
}

pub fn content_type(headers: &HeaderMap) -> ApiResult<BodyType> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or_default().trim();
    Ok(match media {
        "" | "application/json" => BodyType::Json,
        "application/yaml" => BodyType::Yaml,
        k8rs_protobuf::MEDIA_TYPE => BodyType::Protobuf,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" => BodyType::ApplyPatch,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, false).unwrap_or_default()
    }

    #[test]
    fn parses_paths_like_upstream() {
        let i = parse(Method::GET, "/api/v1/namespaces/default/pods/web/log");
        assert_eq!(
            (
                i.verb,
                i.namespace.as_deref(),
                i.resource.as_str(),
                i.name.as_deref()
            ),
            ("get", Some("default"), "pods", Some("web"))
        );
        assert_eq!(i.subresource.as_deref(), Some("log"));
        let i = parse(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (i.verb, i.resource.as_str(), i.name.as_deref()),
            ("get", "namespaces", Some("kube-system"))
        );
        let i = parse(Method::PUT, "/api/v1/namespaces/x/finalize");
        assert_eq!(
            (i.resource.as_str(), i.namespace, i.subresource.as_deref()),
            ("namespaces", None, Some("finalize"))
        );
        let i = parse(Method::GET, "/apis/apps/v1/deployments");
        assert_eq!(
            (i.verb, i.group.as_str(), i.namespace),
            ("list", "apps", None)
        );
        let i = parse(Method::GET, "/api/v1/watch/namespaces/a/pods");
        assert_eq!((i.verb, i.namespace.as_deref()), ("watch", Some("a")));
        let i = parse(Method::DELETE, "/api/v1/namespaces/a/configmaps");
        assert_eq!(i.verb, "deletecollection");
        assert!(RequestInfo::parse(&Method::GET, "/healthz", false).is_none());
    }

    #[test]
    fn negotiates_tables() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), Output::Table);
        h.insert(
            header::ACCEPT,
            "application/vnd.kubernetes.protobuf, */*".parse().unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), Output::Protobuf);
        h.insert(header::ACCEPT, "text/html".parse().unwrap());
        assert!(negotiate(&h).is_err());
    }
}
