//! The kubelet's resource metrics endpoint, `GET /metrics/resource`, for every hollow node of
//! the process: one HTTPS server (its certificate from [`crate::serving`]) in the Prometheus
//! text format the kubelet serves and metrics-server scrapes. Node-level series carry a
//! `node="NAME"` label because one endpoint serves many nodes.
//!
//! Client certificates are neither asked for nor checked: a hollow node has nothing to hide.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use k8rs_auth::serving::ServingCert;
use k8rs_resourcemetrics as resourcemetrics;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::serving::MetricsTls;
use crate::usage::{NodeSample, UsageTable};

/// Where the process serves metrics, which every one of its nodes advertises (as InternalIP
/// and `status.daemonEndpoints.kubeletEndpoint.Port`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsEndpoint {
    /// The address bound and advertised.
    pub address: Ipv4Addr,
    /// The port; 0 picks a free one.
    pub port: u16,
}

impl Default for MetricsEndpoint {
    fn default() -> Self {
        MetricsEndpoint {
            address: Ipv4Addr::LOCALHOST,
            port: 0,
        }
    }
}

/// The path of the resource metrics.
pub const PATH: &str = resourcemetrics::PATH;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound metrics listener, before it serves.
pub struct Bound {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    /// The endpoint actually bound (the port picked when 0 was asked).
    pub endpoint: MetricsEndpoint,
    /// The certificate presented, for [`crate::serving::rotate`].
    pub serving: Arc<ServingCert>,
}

/// Binds the endpoint with the certificate `tls` gives (self-signed for `node` until a
/// requested one is issued).
pub async fn bind(endpoint: MetricsEndpoint, tls: &MetricsTls, node: &str) -> Result<Bound, Error> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Error::MetricsServerFailed(format!(
            "{what} {}:{}: {e}",
            endpoint.address, endpoint.port
        ))
    };
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(endpoint.address), endpoint.port))
        .await
        .map_err(|e| failed("binding", &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| failed("binding", &e))?
        .port();
    let (acceptor, serving) = acceptor(endpoint.address, tls, node)
        .map_err(|e| failed("setting up the certificate for", &e))?;
    Ok(Bound {
        listener,
        acceptor,
        endpoint: MetricsEndpoint {
            address: endpoint.address,
            port,
        },
        serving,
    })
}

fn acceptor(
    address: Ipv4Addr,
    tls: &MetricsTls,
    node: &str,
) -> Result<(TlsAcceptor, Arc<ServingCert>), String> {
    let pem = match tls {
        MetricsTls::Provided { cert_pem, key_pem } => k8rs_auth::CertAndKey {
            cert_pem: cert_pem.clone(),
            key_pem: key_pem.clone(),
        },
        MetricsTls::Csr => crate::serving::self_signed(node, address)?,
    };
    let serving = Arc::new(ServingCert::new(&pem).map_err(|e| e.to_string())?);
    let config =
        k8rs_auth::serving::server_config(serving.clone(), None).map_err(|e| e.to_string())?;
    Ok((TlsAcceptor::from(Arc::new(config)), serving))
}

/// Serves `/metrics/resource` for `nodes` until `shutdown`.
pub async fn serve(
    bound: Bound,
    nodes: Arc<Vec<String>>,
    usage: UsageTable,
    shutdown: CancellationToken,
) {
    let Bound {
        listener, acceptor, ..
    } = bound;
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    tracing::warn!(%err, "hollow metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, nodes, usage, shutdown) = (
            acceptor.clone(),
            nodes.clone(),
            usage.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = respond(req.uri().path(), &nodes, &usage);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn respond(path: &str, nodes: &[String], usage: &UsageTable) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match path {
        PATH => {
            let samples: Vec<(String, NodeSample)> =
                nodes.iter().map(|n| (n.clone(), usage.sample(n))).collect();
            let text = render(&samples, nodes.len() > 1, SystemTime::now());
            (StatusCode::OK, resourcemetrics::CONTENT_TYPE, text)
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok".to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "404 page not found\n".into(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn usage(cpu_seconds: f64, memory_bytes: u64, ts_ms: i64) -> resourcemetrics::Usage {
    resourcemetrics::Usage {
        cpu: Some(resourcemetrics::Point::new(cpu_seconds, ts_ms)),
        memory: Some(resourcemetrics::Point::new(memory_bytes as f64, ts_ms)),
    }
}

fn node_metrics(
    node: &str,
    s: &NodeSample,
    label_nodes: bool,
    ts_ms: i64,
) -> resourcemetrics::NodeMetrics {
    let pods = s.pods.iter().map(|p| {
        let started = p
            .start_time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        resourcemetrics::PodMetrics {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            usage: usage(p.cpu_seconds, p.memory_bytes, ts_ms),
            containers: p
                .containers
                .iter()
                .map(|c| resourcemetrics::ContainerMetrics {
                    name: c.name.clone(),
                    usage: usage(c.cpu_seconds, c.memory_bytes, ts_ms),
                    start_time: resourcemetrics::Point::new(started, ts_ms),
                })
                .collect(),
        }
    });
    resourcemetrics::NodeMetrics {
        node: label_nodes.then(|| node.to_string()),
        usage: usage(s.cpu_seconds, s.memory_bytes, ts_ms),
        pods: pods.collect(),
    }
}

/// The Prometheus text of `/metrics/resource` for these nodes at `now` (every series taken
/// then); node series are labelled with their node when `label_nodes`.
pub fn render(samples: &[(String, NodeSample)], label_nodes: bool, now: SystemTime) -> String {
    let ts_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let ts_ms = i64::try_from(ts_ms).unwrap_or(i64::MAX);
    let nodes: Vec<_> = samples
        .iter()
        .map(|(node, s)| node_metrics(node, s, label_nodes, ts_ms))
        .collect();
    resourcemetrics::render(&nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{ContainerSample, PodSample};

    fn sample() -> NodeSample {
        NodeSample {
            cpu_seconds: 12.5,
            memory_bytes: 1024,
            pods: vec![PodSample {
                namespace: "default".into(),
                name: "web".into(),
                start_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                cpu_seconds: 2.5,
                memory_bytes: 512,
                containers: vec![ContainerSample {
                    name: "app".into(),
                    cpu_seconds: 2.5,
                    memory_bytes: 512,
                }],
            }],
        }
    }

    #[test]
    fn every_series_is_taken_now() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_123_456);
        let ts = 1_700_000_123_456;
        let m = node_metrics("n1", &sample(), true, ts);
        assert_eq!(m.node.as_deref(), Some("n1"));
        assert_eq!(m.usage, usage(12.5, 1024, ts));
        let pod = &m.pods[0];
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("default", "web")
        );
        assert_eq!(pod.usage, usage(2.5, 512, ts));
        let app = &pod.containers[0];
        assert_eq!(app.name, "app");
        assert_eq!(app.usage, usage(2.5, 512, ts));
        assert_eq!(app.start_time, resourcemetrics::Point::new(1.7e9, ts));
        assert_eq!(node_metrics("n1", &sample(), false, ts).node, None);
        let text = render(&[("n1".into(), sample())], true, now);
        assert!(text.contains("node_cpu_usage_seconds_total{node=\"n1\"} 12.5 1700000123456\n"));
    }

    #[test]
    fn serves_only_its_paths() {
        let usage = UsageTable::default();
        let nodes = vec!["n1".to_string()];
        assert_eq!(respond(PATH, &nodes, &usage).status(), StatusCode::OK);
        assert_eq!(
            respond("/metrics", &nodes, &usage).status(),
            StatusCode::NOT_FOUND
        );
    }
}
