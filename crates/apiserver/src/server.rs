//! Serving HTTPS: the TLS accept loop (client certificates optional), authentication of every
//! request, and routing between non-resource paths (health, version, discovery, OpenAPI) and
//! resource requests. An authorizer slots in after authentication, before dispatch.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use k8rs_auth::authn::UserInfo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ApiServer;
use crate::authz::{self, Attributes};
use crate::discovery;
use crate::error::ApiError;
use crate::handlers::{self, json_response, raw_json};
use crate::request::{Output, RequestInfo, negotiate};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown`.
pub async fn serve(
    api: Arc<ApiServer>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let api = api.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert_user =
                k8rs_auth::authn::user_from_peer_certificates(tls.get_ref().1.peer_certificates())
                    .ok()
                    .flatten()
                    .map(Arc::new);
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let api = api.clone();
                let cert_user = cert_user.clone();
                async move {
                    let req = req.map(Body::new);
                    Ok::<_, std::convert::Infallible>(handle(api, cert_user, req).await)
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

/// Authenticates and routes one request.
pub async fn handle(
    api: Arc<ApiServer>,
    cert_user: Option<Arc<UserInfo>>,
    req: Request<Body>,
) -> Response {
    let user = match authenticate(&api, cert_user, req.headers()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let path = req.uri().path().to_string();
    if user.name == k8rs_auth::authn::ANONYMOUS_USER && !anonymous_allowed(&path) {
        return ApiError::Unauthorized("Unauthorized".into()).into_response();
    }
    let info = request_info(&req, &path);
    let attributes = match &info {
        Some(info) => Attributes::Resource(info),
        None => Attributes::NonResource {
            verb: non_resource_verb(req.method()),
            path: &path,
        },
    };
    if let Err(denied) = authz::check(api.authorizer.as_ref(), &user, attributes) {
        return denied.into_response();
    }
    let mut req = req;
    req.extensions_mut().insert(user);
    route(api, &path, info, req).await
}

/// The request as a resource request, when its path is one.
fn request_info(req: &Request<Body>, path: &str) -> Option<RequestInfo> {
    let watch = req.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    });
    RequestInfo::parse(req.method(), path, watch)
}

fn non_resource_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// KEP-4633 anonymous endpoints: health checks and the version; and k3s's `/cacerts`, which
/// joining agents check against the CA hash in their token.
fn anonymous_allowed(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        || path == "/version"
        || path == "/cacerts"
}

async fn authenticate(
    api: &ApiServer,
    cert_user: Option<Arc<UserInfo>>,
    headers: &http::HeaderMap,
) -> Result<UserInfo, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    if let Some(token) = bearer {
        return api.authenticate_token(&token).await;
    }
    Ok(cert_user
        .map(|u| (*u).clone())
        .unwrap_or_else(UserInfo::anonymous))
}

async fn route(
    api: Arc<ApiServer>,
    path: &str,
    info: Option<RequestInfo>,
    req: Request<Body>,
) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return resource(api, info, req).await;
    }
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "/healthz" | "/livez" | "/readyz" => return health(&api, trimmed),
        "/version" => return json_response(StatusCode::OK, &version()),
        "/cacerts" => return text(StatusCode::OK, api.ca_pem.clone()),
        "/api" | "/apis" => return discovery_root(&api, trimmed == "/api", &req),
        "/openapi/v2" => return openapi_v2(&api, &req),
        "/openapi/v3" => return raw_json(StatusCode::OK, api.schemas.v3_index(api.registry)),
        _ => {}
    }
    if let Some(rest) = trimmed.strip_prefix("/openapi/v3/") {
        return match api.schemas.v3_doc(api.registry, rest) {
            Some(doc) => raw_json(StatusCode::OK, doc),
            None => not_found(),
        };
    }
    if trimmed.starts_with("/healthz/")
        || trimmed.starts_with("/livez/")
        || trimmed.starts_with("/readyz/")
    {
        return text(StatusCode::OK, "ok");
    }
    let parts: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", v] => return group_version(&api, "", v),
        ["apis", g] => {
            return match discovery::api_group(api.registry, g) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => not_found(),
            };
        }
        ["apis", g, v] => return group_version(&api, g, v),
        _ => {}
    }
    resource(api, info, req).await
}

async fn resource(api: Arc<ApiServer>, info: Option<RequestInfo>, req: Request<Body>) -> Response {
    match info {
        Some(info) if !info.verb.is_empty() => handlers::resource(api, info, req).await,
        Some(_) => ApiError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        )
        .into_response(),
        None => not_found(),
    }
}

fn group_version(api: &ApiServer, group: &str, version: &str) -> Response {
    match discovery::resource_list(api.registry, group, version) {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => not_found(),
    }
}

fn discovery_root(api: &ApiServer, legacy: bool, req: &Request<Body>) -> Response {
    if negotiate(req.headers()).ok() == Some(Output::Discovery) {
        return discovery::aggregated_response(&discovery::aggregated(api.registry, legacy));
    }
    if legacy {
        let addr = format!(
            "{}:{}",
            api.config.advertise_address, api.config.advertise_port
        );
        json_response(StatusCode::OK, &discovery::api_versions(&addr))
    } else {
        json_response(StatusCode::OK, &discovery::api_group_list(api.registry))
    }
}

fn openapi_v2(api: &ApiServer, req: &Request<Body>) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for media in accept
        .split(',')
        .map(|a| a.split(';').next().unwrap_or_default().trim())
    {
        match media {
            "application/json" | "*/*" | "" => return raw_json(StatusCode::OK, api.schemas.v2()),
            m if m == k8rs_protobuf::OPENAPI_V2_MEDIA_TYPE => {
                let mut resp = (StatusCode::OK, api.schemas.v2_protobuf()).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(k8rs_protobuf::OPENAPI_V2_MEDIA_TYPE),
                );
                return resp;
            }
            _ => {}
        }
    }
    ApiError::NotAcceptable(format!(
        "only application/json and {} are served here (asked for {accept:?})",
        k8rs_protobuf::OPENAPI_V2_MEDIA_TYPE
    ))
    .into_response()
}

fn health(api: &ApiServer, path: &str) -> Response {
    if path == "/readyz" && !api.ready() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "[-]cache not synced\nreadyz check failed",
        );
    }
    text(StatusCode::OK, "ok")
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut resp = (code, body.into()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn not_found() -> Response {
    ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        details: Default::default(),
    }
    .into_response()
}

pub fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0+k8rs",
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2026-11-25T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}
