//! Running one probe or lifecycle handler: exec, httpGet, tcpSocket, gRPC, sleep.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cri::Cri;

/// Where a probe or handler runs.
#[derive(Clone, Debug)]
pub struct Target {
    pub container_id: String,
    pub pod_ip: String,
    pub container: Container,
}

fn port(p: &IntOrString, c: &Container) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

fn host(h: Option<&String>, t: &Target) -> String {
    h.filter(|h| !h.is_empty())
        .cloned()
        .unwrap_or_else(|| t.pod_ip.clone())
}

async fn exec(cri: &dyn Cri, e: &ExecAction, t: &Target, timeout: Duration) -> Result<(), String> {
    let cmd = e.command.clone().unwrap_or_default();
    let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX).max(1);
    let call = cri.exec_sync(&t.container_id, cmd, secs);
    match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Ok(Ok(r)) if r.exit_code == 0 => Ok(()),
        Ok(Ok(r)) => Err(format!(
            "command exited with {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout)
        )),
        Ok(Err(e)) => Err(e.message()),
        Err(_) => Err(format!("command timed out after {timeout:?}")),
    }
}

/// Sends an HTTP/1.1 GET (over TLS without verification for `HTTPS`, as upstream's probes)
/// and returns the status code.
async fn http_get(h: &HTTPGetAction, t: &Target) -> Result<u16, String> {
    let addr_host = host(h.host.as_ref(), t);
    let p = port(&h.port, &t.container).ok_or("invalid port")?;
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let stream = TcpStream::connect((addr_host.as_str(), p))
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr_host}:{p}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for hd in h.http_headers.iter().flatten() {
        req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
    }
    req.push_str("\r\n");
    if h.scheme.as_deref() == Some("HTTPS") {
        let tls = super::tls::connect(&addr_host, stream).await?;
        exchange(tls, &req).await
    } else {
        exchange(stream, &req).await
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    req: &str,
) -> Result<u16, String> {
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < 16 {
        let n = stream
            .read(&mut buf[got..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "malformed HTTP response".to_string())
}

async fn http(h: &HTTPGetAction, t: &Target, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, http_get(h, t)).await {
        Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
        Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("context deadline exceeded".into()),
    }
}

async fn tcp(s: &TCPSocketAction, t: &Target, timeout: Duration) -> Result<(), String> {
    let h = host(s.host.as_ref(), t);
    let p = port(&s.port, &t.container).ok_or("invalid port")?;
    match tokio::time::timeout(timeout, TcpStream::connect((h.as_str(), p))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("dial timeout".into()),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.SERVING`.
const SERVING: i32 = 1;

async fn grpc_check(addr: String, service: String, timeout: Duration) -> Result<i32, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(addr)
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let resp = grpc
        .unary(
            tonic::Request::new(HealthCheckRequest { service }),
            path,
            codec,
        )
        .await
        .map_err(|s| s.message().to_string())?;
    Ok(resp.into_inner().status)
}

async fn grpc(probe: &Probe, t: &Target, timeout: Duration) -> Result<(), String> {
    let Some(g) = &probe.grpc else {
        return Err("no grpc action".into());
    };
    let addr = format!("http://{}:{}", t.pod_ip, g.port);
    let service = g.service.clone().unwrap_or_default();
    match tokio::time::timeout(timeout, grpc_check(addr, service, timeout)).await {
        Ok(Ok(SERVING)) => Ok(()),
        Ok(Ok(s)) => Err(format!("service unhealthy (responded with {s})")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timeout".into()),
    }
}

/// Runs `probe` once against `t`; `true` on success.
pub async fn run_probe(cri: &dyn Cri, probe: &Probe, t: &Target, timeout: Duration) -> bool {
    let result = if let Some(e) = &probe.exec {
        exec(cri, e, t, timeout).await
    } else if let Some(h) = &probe.http_get {
        http(h, t, timeout).await
    } else if let Some(s) = &probe.tcp_socket {
        tcp(s, t, timeout).await
    } else if probe.grpc.is_some() {
        grpc(probe, t, timeout).await
    } else {
        Err("probe has no action".into())
    };
    if let Err(e) = &result {
        tracing::debug!(container = %t.container.name, error = %e, "probe failed");
    }
    result.is_ok()
}

/// Runs a lifecycle hook within `timeout`; the error is the hook's failure message.
pub async fn run_handler(
    cri: &dyn Cri,
    h: &LifecycleHandler,
    t: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(e) = &h.exec {
        exec(cri, e, t, timeout).await
    } else if let Some(g) = &h.http_get {
        http(g, t, timeout).await
    } else if let Some(s) = &h.sleep {
        let d = Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)).min(timeout);
        tokio::time::sleep(d).await;
        Ok(())
    } else if let Some(s) = &h.tcp_socket {
        tcp(s, t, timeout).await
    } else {
        Ok(())
    }
}
