//! Routing and authorization of the kubelet's API. Every response body is a channel of
//! chunks ([`ChannelBody`]), so that followed logs stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::{Body, Frame};
use k8rs_auth::UserInfo;
use tokio::sync::mpsc;

use super::ServerState;
use super::logs::{self, LogError, LogOptions, LogRequest};
use super::stats;

/// A response body fed through a channel: it ends when the sender is dropped.
#[derive(Debug)]
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

impl ChannelBody {
    /// A body of `bytes` whole.
    pub fn full(bytes: impl Into<Bytes>) -> ChannelBody {
        let (tx, rx) = mpsc::channel(1);
        let bytes = bytes.into();
        if !bytes.is_empty() {
            let _ = tx.try_send(bytes);
        }
        ChannelBody(rx)
    }
}

/// Who may call: the decision on one request's user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No (valid) client certificate: 401.
    Unauthorized,
    /// Authenticated but not allowed: 403 with upstream's message.
    Forbidden(String),
}

/// The API server's client identity and admins (`system:masters`) may call; anyone else not.
pub fn authorize(user: Option<&UserInfo>, verb: &str, subresource: &str) -> Decision {
    let Some(user) = user else {
        return Decision::Unauthorized;
    };
    if user.name == "system:apiserver" || user.in_group("system:masters") {
        return Decision::Allow;
    }
    Decision::Forbidden(format!(
        "Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})",
        user.name
    ))
}

/// The subresource upstream checks for a path (`nodes/<sub>`).
fn subresource(path: &str) -> &'static str {
    if path.starts_with("/containerLogs/") {
        "proxy"
    } else if path.starts_with("/metrics") {
        "metrics"
    } else if path.starts_with("/stats") {
        "stats"
    } else if path == "/healthz" {
        "healthz"
    } else {
        "proxy"
    }
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<ChannelBody> {
    with_type(code, "text/plain; charset=utf-8", ChannelBody::full(body))
}

fn with_type(code: StatusCode, content_type: &str, body: ChannelBody) -> Response<ChannelBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = code;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Answers one request.
pub async fn handle<B>(
    state: &ServerState,
    user: Option<&UserInfo>,
    req: Request<B>,
) -> Response<ChannelBody> {
    let path = req.uri().path().to_string();
    let verb = if req.method() == Method::GET {
        "get"
    } else {
        "create"
    };
    match authorize(user, verb, subresource(&path)) {
        Decision::Allow => {}
        Decision::Unauthorized => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Decision::Forbidden(msg) => return text(StatusCode::FORBIDDEN, msg),
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
    }
    let query = req.uri().query().unwrap_or_default().to_string();
    match path.as_str() {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/metrics/resource" => metrics(state).await,
        "/stats/summary" | "/stats/summary/" => summary(state).await,
        p if p.starts_with("/containerLogs/") => container_logs(state, p, &query).await,
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

async fn metrics(state: &ServerState) -> Response<ChannelBody> {
    match stats::collect(state.cri.as_ref(), &state.config.node_name).await {
        Ok(n) => with_type(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            ChannelBody::full(stats::render_prometheus(&n)),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("collecting stats: {}", e.message()),
        ),
    }
}

async fn summary(state: &ServerState) -> Response<ChannelBody> {
    match stats::collect(state.cri.as_ref(), &state.config.node_name).await {
        Ok(n) => {
            let body = serde_json::to_vec_pretty(&stats::render_summary(&n)).unwrap_or_default();
            with_type(StatusCode::OK, "application/json", ChannelBody::full(body))
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("collecting stats: {}", e.message()),
        ),
    }
}

/// `/containerLogs/{ns}/{pod}/{container}`: the path's parts, when there are exactly three.
pub fn log_path_parts(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("/containerLogs/")?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [ns, pod, c] if !ns.is_empty() && !pod.is_empty() && !c.is_empty() => {
            Some((ns.to_string(), pod.to_string(), c.to_string()))
        }
        _ => None,
    }
}

async fn container_logs(state: &ServerState, path: &str, query: &str) -> Response<ChannelBody> {
    let Some((namespace, pod, container)) = log_path_parts(path) else {
        return text(
            StatusCode::BAD_REQUEST,
            "path must be /containerLogs/{namespace}/{pod}/{container}",
        );
    };
    let options = match LogOptions::from_query(query, chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let cri = state.cri.clone();
    let target =
        match logs::find_target(cri.as_ref(), &namespace, &pod, &container, options.previous).await
        {
            Ok(t) => t,
            Err(LogError::NotFound(m)) => return text(StatusCode::BAD_REQUEST, m),
            Err(LogError::Runtime(m)) => return text(StatusCode::INTERNAL_SERVER_ERROR, m),
        };
    let (tx, rx) = mpsc::channel(16);
    let req = LogRequest {
        cri,
        namespace,
        pod,
        container,
        options,
    };
    tokio::spawn(logs::stream_log(req, target, tx));
    with_type(StatusCode::OK, "text/plain", ChannelBody(rx))
}
