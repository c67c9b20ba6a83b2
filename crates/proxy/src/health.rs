//! The proxy's health: `/healthz` and `/livez` on `healthz_bind_address` (upstream's port
//! 10256), and one server per `healthCheckNodePort` of an `externalTrafficPolicy: Local`
//! Service, answering 200 while this node has a local endpoint and 503 otherwise, so that load
//! balancers send traffic only to nodes that have one.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::model::ServiceName;

/// (first queued change not yet written, last write)
type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// When the rules were last queued for a sync and last written.
#[derive(Debug)]
pub struct HealthState {
    timeout: Duration,
    times: Mutex<Times>,
    node_deleting: AtomicBool,
}

impl HealthState {
    /// Unhealthy when a queued change waits longer than `timeout` (upstream: 2 × syncPeriod).
    pub fn new(timeout: Duration) -> HealthState {
        HealthState {
            timeout,
            times: Mutex::new((None, None)),
            node_deleting: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A change is waiting to be written.
    pub fn queued(&self) {
        let mut times = self.lock();
        if times.0.is_none() {
            times.0 = Some(Utc::now());
        }
    }

    /// The rules were written.
    pub fn updated(&self) {
        let mut times = self.lock();
        times.0 = None;
        times.1 = Some(Utc::now());
    }

    /// This node's Node object is being deleted (`/healthz` fails, `/livez` does not).
    pub fn set_node_deleting(&self, deleting: bool) {
        self.node_deleting.store(deleting, Ordering::Relaxed);
    }

    /// The last write, and whether no queued change has waited longer than the timeout.
    pub fn status(&self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, bool) {
        let (queued, updated) = *self.lock();
        let late = queued.is_some_and(|q| (now - q).to_std().unwrap_or_default() > self.timeout);
        (updated, !late)
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn rfc3339(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

async fn healthz(State(state): State<Arc<HealthState>>) -> Response {
    proxy_health(&state, true)
}

async fn livez(State(state): State<Arc<HealthState>>) -> Response {
    proxy_health(&state, false)
}

fn proxy_health(state: &HealthState, check_node: bool) -> Response {
    let now = Utc::now();
    let (updated, healthy) = state.status(now);
    let eligible = !state.node_deleting.load(Ordering::Relaxed);
    let mut body = serde_json::json!({
        "lastUpdated": rfc3339(updated),
        "currentTime": rfc3339(Some(now)),
    });
    if check_node {
        body["nodeEligible"] = serde_json::Value::Bool(eligible);
    }
    let ok = healthy && (eligible || !check_node);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body)
}

/// Binds `addr` and serves `/healthz` and `/livez` until `shutdown`.
pub async fn serve_healthz(
    addr: SocketAddr,
    state: Arc<HealthState>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::HealthBind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .with_state(state);
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(err) = serve.await {
            tracing::warn!(%err, "proxy health server stopped");
        }
    });
    Ok(local)
}

/// One healthCheckNodePort server's shared view.
#[derive(Debug)]
struct ServiceHealthInfo {
    service: ServiceName,
    local_endpoints: AtomicUsize,
    proxy: Arc<HealthState>,
}

async fn service_health(State(info): State<Arc<ServiceHealthInfo>>) -> Response {
    let count = info.local_endpoints.load(Ordering::Relaxed);
    let (_, proxy_ok) = info.proxy.status(Utc::now());
    let body = serde_json::json!({
        "service": {"namespace": info.service.namespace, "name": info.service.name},
        "localEndpoints": count,
        "serviceProxyHealthy": proxy_ok,
    });
    let status = if count > 0 && proxy_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = json_response(status, body);
    if let Ok(v) = HeaderValue::from_str(&count.to_string()) {
        resp.headers_mut()
            .insert("X-Load-Balancing-Endpoint-Weight", v);
    }
    resp
}

/// The running healthCheckNodePort servers, by port.
#[derive(Debug)]
pub struct ServiceHealthServers {
    bind_ip: IpAddr,
    proxy: Arc<HealthState>,
    servers: BTreeMap<u16, (Arc<ServiceHealthInfo>, CancellationToken)>,
}

impl ServiceHealthServers {
    pub fn new(bind_ip: IpAddr, proxy: Arc<HealthState>) -> ServiceHealthServers {
        ServiceHealthServers {
            bind_ip,
            proxy,
            servers: BTreeMap::new(),
        }
    }

    /// Runs exactly one server per entry of `wanted` (port -> Service and its local endpoint
    /// count), starting and stopping servers as needed.
    pub async fn sync(&mut self, wanted: BTreeMap<u16, (ServiceName, usize)>) {
        let stale: Vec<u16> = self
            .servers
            .iter()
            .filter(|(port, (info, _))| {
                wanted.get(port).is_none_or(|(svc, _)| *svc != info.service)
            })
            .map(|(port, _)| *port)
            .collect();
        for port in stale {
            if let Some((_, token)) = self.servers.remove(&port) {
                token.cancel();
            }
        }
        for (port, (service, count)) in wanted {
            if let Some((info, _)) = self.servers.get(&port) {
                info.local_endpoints.store(count, Ordering::Relaxed);
                continue;
            }
            let info = Arc::new(ServiceHealthInfo {
                service,
                local_endpoints: AtomicUsize::new(count),
                proxy: self.proxy.clone(),
            });
            match self.start(port, info.clone()).await {
                Ok(token) => {
                    self.servers.insert(port, (info, token));
                }
                Err(err) => tracing::warn!(%err, port, "healthCheckNodePort server not started"),
            }
        }
    }

    async fn start(
        &self,
        port: u16,
        info: Arc<ServiceHealthInfo>,
    ) -> Result<CancellationToken, Error> {
        let addr = SocketAddr::new(self.bind_ip, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::HealthBind { addr, source })?;
        let token = CancellationToken::new();
        let app = Router::new().fallback(service_health).with_state(info);
        let stop = token.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(err) = serve.await {
                tracing::warn!(%err, "healthCheckNodePort server stopped");
            }
        });
        Ok(token)
    }

    /// Stops every server.
    pub fn stop_all(&mut self) {
        for (_, (_, token)) in std::mem::take(&mut self.servers) {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_queued_too_long_is_unhealthy() {
        let state = HealthState::new(Duration::from_secs(60));
        let now = Utc::now();
        assert!(state.status(now).1);
        state.queued();
        assert!(state.status(now).1);
        assert!(!state.status(now + chrono::Duration::seconds(61)).1);
        state.updated();
        let (updated, ok) = state.status(now + chrono::Duration::seconds(61));
        assert!(ok);
        assert!(updated.is_some());
    }
}
