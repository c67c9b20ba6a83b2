//! Requests the API server makes to kubelets (`pods/log`, and the metrics scraper's
//! `/metrics/resource`): over HTTPS to the Node's InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, presenting the API server's client
//! certificate and verifying the kubelet's serving certificate against the cluster CA and for
//! the address dialled (an IP SAN), as kube-apiserver does with
//! `--kubelet-certificate-authority`. Kubelets get such certificates through
//! `kubernetes.io/kubelet-serving` CSRs; a kubelet still serving a self-signed one is refused.
//! The kubelet's body is streamed back as it comes, so that followed logs reach the client
//! line by line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use k8rs_auth::pki::ClusterPki;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ApiError, ApiResult, Details};

/// How long connecting and the kubelet's response head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// The most of an error body read.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// The query parameters of `pods/log` forwarded to the kubelet.
pub const LOG_PARAMS: [&str; 7] = [
    "follow",
    "previous",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "limitBytes",
];

/// The container whose log is asked for: the one named, or the pod's only container.
pub fn log_container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (containers, init) = (names("containers"), names("initContainers"));
    let ephemeral = names("ephemeralContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            let known = containers.iter().chain(&init).chain(&ephemeral);
            if known.into_iter().any(|k| k == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::BadRequest(msg))
        }
    }
}

/// The kubelet path and query for a container's log, forwarding the log parameters of
/// `query`.
pub fn log_path(ns: &str, pod: &str, container: &str, query: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if LOG_PARAMS.contains(&k.as_ref()) {
            q.append_pair(&k, &v);
        }
    }
    let q = q.finish();
    let enc =
        |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>() };
    let mut path = format!("/containerLogs/{}/{}/{}", enc(ns), enc(pod), enc(container));
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q);
    }
    path
}

/// The kubelet's answer head: status code and the body bytes read with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub code: u16,
    pub rest: Vec<u8>,
}

/// Splits a response head off `raw`: `None` until it is complete.
pub fn parse_head(raw: &[u8]) -> Option<Result<Head, String>> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.lines().next().unwrap_or_default();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    Some(match code {
        Some(code) => Ok(Head {
            code,
            rest: raw[split + 4..].to_vec(),
        }),
        None => Err(format!("bad status line {status:?}")),
    })
}

/// The API error for a kubelet's refusal `code` with `body`.
pub fn kubelet_error(code: u16, body: &str, pod: &str) -> ApiError {
    let msg = body.trim().to_string();
    match code {
        400 => ApiError::BadRequest(msg),
        404 => ApiError::NotFound {
            message: msg,
            details: Details::new(pod, "", "pods"),
        },
        401 | 403 => ApiError::Internal(format!("the kubelet refused the API server: {msg}")),
        _ => ApiError::Internal(format!("the kubelet answered {code}: {msg}")),
    }
}

/// Why a kubelet could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    /// Connecting, the handshake's transport, sending or reading failed: retry later.
    Unreachable(String),
    /// The kubelet's serving certificate is not signed by the cluster CA or not valid for the
    /// address dialled: it must get one issued (a `kubelet-serving` CSR).
    Untrusted(String),
}

impl std::fmt::Display for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dial::Unreachable(m) => f.write_str(m),
            Dial::Untrusted(m) => {
                write!(f, "the kubelet's serving certificate is not trusted: {m}")
            }
        }
    }
}

/// A TLS connector to kubelets: the API server's client certificate presented, the kubelet's
/// serving certificate verified against the cluster CA and for the IP address dialled.
pub fn connector(pki: &ClusterPki) -> Result<TlsConnector, String> {
    let client = pki.apiserver_client();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key =
        PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_cert_der().to_vec()))
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    // Requests are written as HTTP/1.x by hand.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A failed handshake: an untrusted certificate, or a transport failure.
fn handshake_failed(e: std::io::Error) -> Dial {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match tls {
        Some(err @ rustls::Error::InvalidCertificate(_)) => Dial::Untrusted(err.to_string()),
        _ => Dial::Unreachable(format!("TLS handshake: {e}")),
    }
}

/// Opens TLS to the kubelet at `addr`, verifying its serving certificate for `addr`'s IP.
pub async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> Result<TlsStream<TcpStream>, Dial> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Dial::Unreachable(format!("connecting: {e}")))?;
    connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(handshake_failed)
}

/// `GET path` on the kubelet at `addr` as HTTP/1.0 (so that the body ends with the
/// connection, unchunked); returns the head and the connection positioned in the body.
async fn get(
    connector: &TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> Result<(Head, TlsStream<TcpStream>), Dial> {
    let mut tls = connect(connector, addr).await?;
    let lost = |what: &str, e: std::io::Error| Dial::Unreachable(format!("{what}: {e}"));
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: k8rs-apiserver\r\nAccept: */*\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| lost("sending", e))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tls.read(&mut buf).await.map_err(|e| lost("reading", e))?;
        if n == 0 {
            return Err(Dial::Unreachable(
                "the kubelet closed the connection".into(),
            ));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(head) = parse_head(&raw) {
            return Ok((head.map_err(Dial::Unreachable)?, tls));
        }
        if raw.len() > MAX_HEAD {
            return Err(Dial::Unreachable("response head too long".into()));
        }
    }
}

/// Streams a container's log from the kubelet at `addr`.
pub async fn stream_log(
    connector: &TlsConnector,
    addr: SocketAddr,
    pod: &str,
    path: &str,
) -> ApiResult<Body> {
    let failed = |e: Dial| match e {
        Dial::Unreachable(m) => {
            ApiError::ServiceUnavailable(format!("the kubelet at {addr} is not reachable: {m}"))
        }
        untrusted @ Dial::Untrusted(_) => {
            ApiError::Internal(format!("Get \"https://{addr}{path}\": {untrusted}"))
        }
    };
    let timed_out = || Dial::Unreachable(format!("no answer in {CONNECT_TIMEOUT:?}"));
    let (head, mut tls) = tokio::time::timeout(CONNECT_TIMEOUT, get(connector, addr, path))
        .await
        .map_err(|_| failed(timed_out()))?
        .map_err(failed)?;
    if head.code != 200 {
        let mut body = head.rest;
        let mut limited = (&mut tls).take(MAX_ERROR_BODY);
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, limited.read_to_end(&mut body)).await;
        return Err(kubelet_error(
            head.code,
            &String::from_utf8_lossy(&body),
            pod,
        ));
    }
    let first = Bytes::from(head.rest);
    let stream = futures::stream::unfold((Some(first), Some(tls)), |(first, tls)| async move {
        if let Some(b) = first.filter(|b| !b.is_empty()) {
            return Some((Ok::<_, std::io::Error>(b), (None, tls)));
        }
        let mut tls = tls?;
        let mut buf = vec![0u8; 16 << 10];
        match tls.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (None, Some(tls))))
            }
            // A kubelet that closes without close_notify has still sent everything.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => Some((Err(e), (None, None))),
        }
    });
    Ok(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let c = |n: &[&str]| -> Vec<Value> { n.iter().map(|n| json!({"name": n})).collect() };
        json!({"spec": {"containers": c(containers), "initContainers": c(init)}})
    }

    #[test]
    fn picks_the_only_container_or_asks() {
        assert_eq!(
            log_container(&pod(&["a"], &[]), "p", None).ok(),
            Some("a".into())
        );
        let err = log_container(&pod(&["a", "b"], &[]), "p", None)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("a container name must be specified for pod p, choose one of: [a b]")
        );
        let err = log_container(&pod(&["a", "b"], &["i"]), "p", None)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
            )
        );
        assert_eq!(
            log_container(&pod(&["a", "b"], &["i"]), "p", Some("i")).ok(),
            Some("i".into())
        );
        let err = log_container(&pod(&["a"], &[]), "p", Some("x"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("container x is not valid for pod p"));
    }

    #[test]
    fn forwards_only_log_parameters() {
        assert_eq!(
            log_path(
                "ns",
                "p",
                "c",
                Some(
                    "container=c&follow=true&tailLines=2&pretty=1&sinceTime=2026-01-01T00%3A00%3A00Z"
                )
            ),
            "/containerLogs/ns/p/c?follow=true&tailLines=2&sinceTime=2026-01-01T00%3A00%3A00Z"
        );
        assert_eq!(log_path("ns", "p", "c", None), "/containerLogs/ns/p/c");
    }

    #[test]
    fn heads_and_errors() {
        assert_eq!(parse_head(b"HTTP/1.0 200 OK\r\n"), None);
        assert_eq!(
            parse_head(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nhello"),
            Some(Ok(Head {
                code: 200,
                rest: b"hello".to_vec()
            }))
        );
        assert!(matches!(parse_head(b"nonsense\r\n\r\n"), Some(Err(_))));
        assert!(matches!(
            kubelet_error(400, "previous terminated container \"c\" in pod \"p\" not found\n", "p"),
            ApiError::BadRequest(m) if m == "previous terminated container \"c\" in pod \"p\" not found"
        ));
        assert!(matches!(
            kubelet_error(404, "x", "p"),
            ApiError::NotFound { .. }
        ));
        assert!(matches!(
            kubelet_error(500, "x", "p"),
            ApiError::Internal(_)
        ));
    }

    /// A cluster PKI in a directory removed on drop.
    struct Pki(std::path::PathBuf, ClusterPki);

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pki() -> Pki {
        let dir = std::env::temp_dir().join(format!("k8rs-nodeproxy-{}", uuid::Uuid::new_v4()));
        let opts = k8rs_auth::pki::PkiOptions {
            host_ips: Some(vec![]),
            ..Default::default()
        };
        let loaded = ClusterPki::load_or_create(&dir, &opts).expect("a test PKI");
        Pki(dir, loaded)
    }

    /// A kubelet at `ip` presenting `serving`'s certificate (127.0.0.1 and ::1 among its IP
    /// SANs), answering one request with `hello`.
    async fn fake_kubelet(serving: &ClusterPki, ip: [u8; 4]) -> SocketAddr {
        let pair = serving.serving();
        let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = tls.read(&mut buf).await;
            let _ = tls.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello").await;
            let _ = tls.shutdown().await;
        });
        addr
    }

    async fn log_of(cluster: &ClusterPki, addr: SocketAddr) -> Result<String, ApiError> {
        use http_body_util::BodyExt as _;
        let connector = connector(cluster).expect("connector");
        let body = stream_log(&connector, addr, "p", "/containerLogs/ns/p/c").await?;
        let bytes = body.collect().await.expect("body").to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn kubelet_certificates_are_verified_against_the_cluster_ca() {
        let cluster = pki();
        let addr = fake_kubelet(&cluster.1, [127, 0, 0, 1]).await;
        assert_eq!(
            log_of(&cluster.1, addr).await.ok().as_deref(),
            Some("hello")
        );

        // Another CA's certificate: refused, with an error Status saying why.
        let other = pki();
        let addr = fake_kubelet(&other.1, [127, 0, 0, 1]).await;
        let err = log_of(&cluster.1, addr).await.err().map(|e| e.to_string());
        // (Every cluster CA has the same name: the other one's signature is what fails.)
        let want = format!(
            "Get \"https://{addr}/containerLogs/ns/p/c\": the kubelet's serving certificate is not trusted: invalid peer certificate: "
        );
        assert!(
            err.as_deref().is_some_and(|e| e.starts_with(&want)),
            "{err:?}"
        );

        // The cluster CA's certificate for other addresses than the one dialled: refused.
        let addr = fake_kubelet(&cluster.1, [127, 0, 0, 2]).await;
        let err = log_of(&cluster.1, addr).await.err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(
                |e| e.contains("not trusted") && e.contains("certificate not valid for name")
            ),
            "{err:?}"
        );
    }
}
