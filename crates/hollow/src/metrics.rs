//! The kubelet's resource metrics endpoint, `GET /metrics/resource`, for every hollow node of
//! the process: one HTTPS server (a self-signed certificate made at start) in the Prometheus
//! text format the kubelet serves and metrics-server scrapes. Node-level series carry a
//! `node="NAME"` label because one endpoint serves many nodes.
//!
//! Client certificates are neither asked for nor checked: a hollow node has nothing to hide.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::Error;
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
pub const PATH: &str = "/metrics/resource";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound metrics listener, before it serves.
pub struct Bound {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    /// The endpoint actually bound (the port picked when 0 was asked).
    pub endpoint: MetricsEndpoint,
}

/// Binds the endpoint and makes its self-signed certificate.
pub async fn bind(endpoint: MetricsEndpoint) -> Result<Bound, Error> {
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
    let acceptor =
        acceptor(endpoint.address).map_err(|e| failed("making a certificate for", &e))?;
    Ok(Bound {
        listener,
        acceptor,
        endpoint: MetricsEndpoint {
            address: endpoint.address,
            port,
        },
    })
}

fn acceptor(address: Ipv4Addr) -> Result<TlsAcceptor, String> {
    let sans = vec![address.to_string(), "localhost".to_string()];
    let certified = rcgen::generate_simple_self_signed(sans).map_err(|e| e.to_string())?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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
            (StatusCode::OK, "text/plain; version=0.0.4", text)
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

/// One metric family: help, type and samples.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    lines: Vec<String>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            lines: Vec::new(),
        }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: f64, ts_ms: u128) {
        let mut line = self.name.to_string();
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(line, "{{{}}}", parts.join(","));
        }
        let _ = write!(line, " {value} {ts_ms}");
        self.lines.push(line);
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} [STABLE] {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text of `/metrics/resource` for these nodes at `now`, families sorted by
/// name as the kubelet's registry writes them; node series are labelled with their node when
/// `label_nodes`.
pub fn render(samples: &[(String, NodeSample)], label_nodes: bool, now: SystemTime) -> String {
    let ts = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut c_cpu = Family::new(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    let mut c_mem = Family::new(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
    );
    let mut c_start = Family::new(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    let mut n_cpu = Family::new(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    let mut n_mem = Family::new(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
    );
    let mut p_cpu = Family::new(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    let mut p_mem = Family::new(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
    );
    for (node, s) in samples {
        let node_labels: &[(&str, &str)] = if label_nodes {
            &[("node", node.as_str())]
        } else {
            &[]
        };
        n_cpu.push(node_labels, s.cpu_seconds, ts);
        n_mem.push(node_labels, s.memory_bytes as f64, ts);
        for p in &s.pods {
            let pod = [
                ("namespace", p.namespace.as_str()),
                ("pod", p.name.as_str()),
            ];
            p_cpu.push(&pod, p.cpu_seconds, ts);
            p_mem.push(&pod, p.memory_bytes as f64, ts);
            let started = p
                .start_time
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            for c in &p.containers {
                let labels = [
                    ("container", c.name.as_str()),
                    ("namespace", p.namespace.as_str()),
                    ("pod", p.name.as_str()),
                ];
                c_cpu.push(&labels, c.cpu_seconds, ts);
                c_mem.push(&labels, c.memory_bytes as f64, ts);
                c_start.push(&labels, started, ts);
            }
        }
    }
    let mut out = String::new();
    for f in [c_cpu, c_mem, c_start, n_cpu, n_mem, p_cpu, p_mem] {
        f.write(&mut out);
    }
    out.push_str("# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n");
    out.push_str("# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n");
    out
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
    fn renders_the_kubelet_resource_metrics() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_123_456);
        let text = render(&[("n1".into(), sample())], true, now);
        for want in [
            "# TYPE node_cpu_usage_seconds_total counter\n",
            "node_cpu_usage_seconds_total{node=\"n1\"} 12.5 1700000123456\n",
            "node_memory_working_set_bytes{node=\"n1\"} 1024 1700000123456\n",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 2.5 1700000123456\n",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 512 1700000123456\n",
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 2.5 1700000123456\n",
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 512 1700000123456\n",
            "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web\"} 1700000000 1700000123456\n",
            "resource_scrape_error 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let single = render(&[("n1".into(), sample())], false, now);
        assert!(single.contains("\nnode_cpu_usage_seconds_total 12.5 1700000123456\n"));
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
