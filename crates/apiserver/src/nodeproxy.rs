//! Requests the API server makes to kubelets (`pods/log`): over HTTPS to the Node's InternalIP
//! and `status.daemonEndpoints.kubeletEndpoint.Port`, presenting the API server's client
//! certificate, without verifying the kubelet's serving certificate yet (as the metrics
//! scraper, whose connector it shares). The kubelet's body is streamed back as it comes, so
//! that followed logs reach the client line by line.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use rustls::pki_types::ServerName;
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

async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// `GET path` on the kubelet at `addr` as HTTP/1.0 (so that the body ends with the
/// connection, unchunked); returns the head and the connection positioned in the body.
async fn get(
    connector: &TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> Result<(Head, TlsStream<TcpStream>), String> {
    let mut tls = connect(connector, addr).await?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: k8rs-apiserver\r\nAccept: */*\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tls
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the kubelet closed the connection".into());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(head) = parse_head(&raw) {
            return Ok((head?, tls));
        }
        if raw.len() > MAX_HEAD {
            return Err("response head too long".into());
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
    let unavailable = |e: String| {
        ApiError::ServiceUnavailable(format!("the kubelet at {addr} is not reachable: {e}"))
    };
    let (head, mut tls) = tokio::time::timeout(CONNECT_TIMEOUT, get(connector, addr, path))
        .await
        .map_err(|_| unavailable(format!("no answer in {CONNECT_TIMEOUT:?}")))?
        .map_err(unavailable)?;
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
}
