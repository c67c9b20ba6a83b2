//! The scraper: every resolution period, read `/metrics/resource` from every distinct node
//! endpoint (the Node's InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`) over
//! HTTPS, all at once with a bounded timeout each, and store the cycle's results. A node that
//! does not answer is skipped (its metrics drop out) and never holds up the others.
//!
//! Connections are those of [`crate::nodeproxy`]: the API server's client certificate is
//! presented and the kubelet's serving certificate verified against the cluster CA and for the
//! node's address; an endpoint with an untrusted certificate is logged and skipped.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8rs_auth::pki::ClusterPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::MetricsError;
use super::prom;
use super::store::Batch;
use crate::ApiServer;

use k8rs_resourcemetrics::PATH;
/// The most a scrape may return.
const MAX_RESPONSE: u64 = 64 << 20;
/// Endpoints scraped at once.
const CONCURRENCY: usize = 64;

/// How often and how patiently the scraper scrapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScraperConfig {
    /// The period between cycles (metrics-server's `--metric-resolution`, default 15 s).
    pub resolution: Duration,
    /// The longest one endpoint may take (metrics-server's `--kubelet-request-timeout`, 10 s).
    pub timeout: Duration,
}

impl Default for ScraperConfig {
    fn default() -> Self {
        ScraperConfig {
            resolution: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Starts the scraper as a task until `shutdown`; fails at once when the client certificate
/// cannot be loaded.
pub fn start_scraper(
    api: Arc<ApiServer>,
    pki: &ClusterPki,
    config: ScraperConfig,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, MetricsError> {
    let connector = connector(pki)?;
    Ok(tokio::spawn(run_scraper(api, connector, config, shutdown)))
}

/// Scrapes every `config.resolution` until `shutdown`.
pub async fn run_scraper(
    api: Arc<ApiServer>,
    connector: TlsConnector,
    config: ScraperConfig,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::time::Instant::now() + config.resolution;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            batch = cycle(&api, &connector, config.timeout) => api.metrics.store(batch),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// One cycle: every endpoint scraped, the answers gathered.
async fn cycle(api: &ApiServer, connector: &TlsConnector, timeout: Duration) -> Batch {
    let endpoints = endpoints(api).await;
    let results: Vec<_> = futures::stream::iter(endpoints)
        .map(|(addr, nodes)| async move {
            let scraped = tokio::time::timeout(timeout, scrape(connector, addr))
                .await
                .unwrap_or_else(|_| Err(format!("no answer in {timeout:?}").into()));
            (addr, nodes, scraped)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut batch = Batch::default();
    for (addr, nodes, scraped) in results {
        match scraped {
            Ok(scrape) => batch.add(&nodes, scrape),
            Err(Failure { reason, untrusted }) => {
                let err = MetricsError::ScrapeFailed {
                    endpoint: addr.to_string(),
                    reason,
                };
                if untrusted {
                    tracing::warn!(%err, ?nodes, "metrics: node skipped this cycle");
                } else {
                    tracing::debug!(%err, ?nodes, "metrics: node skipped this cycle");
                }
            }
        }
    }
    batch
}

/// Every node's kubelet endpoint, with the nodes it serves.
async fn endpoints(api: &ApiServer) -> BTreeMap<SocketAddr, Vec<String>> {
    let mut out: BTreeMap<SocketAddr, Vec<String>> = BTreeMap::new();
    let registry: &'static crate::registry::Registry = api.registry;
    let Some(def) = registry.lookup("", "v1", "nodes") else {
        return out;
    };
    let Ok((nodes, _)) = api.list_cached(&def, None).await else {
        return out;
    };
    for node in nodes {
        if let Some(addr) = kubelet_endpoint(&node.value()) {
            out.entry(addr).or_default().push(node.name.clone());
        }
    }
    out
}

/// A Node's InternalIP and kubelet port.
pub fn kubelet_endpoint(node: &serde_json::Value) -> Option<SocketAddr> {
    let status = &node["status"];
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    let ip: IpAddr = status["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Why an endpoint was skipped; an untrusted certificate is worth a warning, a node that is
/// down is not.
struct Failure {
    reason: String,
    untrusted: bool,
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure {
            reason,
            untrusted: false,
        }
    }
}

async fn scrape(connector: &TlsConnector, addr: SocketAddr) -> Result<prom::Scrape, Failure> {
    let text = fetch(connector, addr).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    prom::parse(&text, i64::try_from(now_ms).unwrap_or(i64::MAX))
        .map_err(|e| Failure::from(e.to_string()))
}

/// `GET /metrics/resource` over HTTPS, HTTP/1.1 with `Connection: close`.
async fn fetch(connector: &TlsConnector, addr: SocketAddr) -> Result<String, Failure> {
    let mut tls = crate::nodeproxy::connect(connector, addr)
        .await
        .map_err(|e| Failure {
            untrusted: matches!(e, crate::nodeproxy::Dial::Untrusted(_)),
            reason: e.to_string(),
        })?;
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: k8rs-apiserver/metrics\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    let read = (&mut tls).take(MAX_RESPONSE).read_to_end(&mut raw).await;
    // A peer that closes without close_notify still sent a whole response.
    if let Err(e) = read
        && (e.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty())
    {
        return Err(format!("reading: {e}").into());
    }
    Ok(parse_response(&raw)?)
}

/// The body of a 200 response, de-chunked.
pub fn parse_response(raw: &[u8]) -> Result<String, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response header")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("answered {status:?}"));
    }
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_line = String::from_utf8_lossy(&body[..eol]);
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// The kubelet connector of [`crate::nodeproxy::connector`] (cluster CA verified).
pub fn connector(pki: &ClusterPki) -> Result<TlsConnector, MetricsError> {
    crate::nodeproxy::connector(pki).map_err(MetricsError::TlsSetupFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain).as_deref(), Ok("hello"));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).as_deref(), Ok("hello world"));
        assert!(parse_response(b"HTTP/1.1 401 Unauthorized\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn endpoints_come_from_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"},
                          {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }});
        assert_eq!(
            kubelet_endpoint(&node),
            Some(SocketAddr::from(([127, 0, 0, 1], 10250)))
        );
        assert_eq!(kubelet_endpoint(&json!({"status": {}})), None);
    }
}
