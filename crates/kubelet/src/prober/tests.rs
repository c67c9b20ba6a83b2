use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Target, run_probe};
use crate::testing::FakeCri;

/// A one-shot HTTP server answering every request with `code`; returns its port.
async fn http_server(code: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok();
    let Some(listener) = listener else { return 0 };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let resp = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    port
}

fn target() -> Target {
    let c: Container = serde_json::from_value(
        json!({"name": "c", "ports": [{"name": "web", "containerPort": 1}]}),
    )
    .unwrap_or_default();
    Target {
        container_id: "id".into(),
        pod_ip: "127.0.0.1".into(),
        container: c,
    }
}

fn probe(v: serde_json::Value) -> Probe {
    serde_json::from_value(v).unwrap_or_default()
}

#[tokio::test]
async fn http_tcp_and_exec_probes() {
    let fake = FakeCri::default();
    let t = Duration::from_secs(1);
    let ok = http_server(200).await;
    let bad = http_server(500).await;
    let p = probe(json!({"httpGet": {"path": "/healthz", "port": ok}}));
    assert!(run_probe(&fake, &p, &target(), t).await);
    let p = probe(json!({"httpGet": {"path": "/healthz", "port": bad}}));
    assert!(!run_probe(&fake, &p, &target(), t).await);
    let p = probe(json!({"tcpSocket": {"port": ok}}));
    assert!(run_probe(&fake, &p, &target(), t).await);
    let closed = probe(json!({"tcpSocket": {"port": "web"}}));
    assert!(
        !run_probe(&fake, &closed, &target(), t).await,
        "named port 1 is closed"
    );
    let p = probe(json!({"exec": {"command": ["true"]}}));
    assert!(run_probe(&fake, &p, &target(), t).await);
    fake.set_exec_exit("id", 1);
    assert!(!run_probe(&fake, &p, &target(), t).await);
}

/// A one-shot HTTPS server with a self-signed certificate answering 200; returns its port.
async fn https_server() -> u16 {
    use std::sync::Arc;
    let Ok(cert) = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]) else {
        return 0;
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let chain = vec![cert.cert.der().clone()];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(config) = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| e.to_string())
        })
    else {
        return 0;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
        return 0;
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            if let Ok(mut tls) = acceptor.accept(s).await {
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            }
        }
    });
    port
}

#[tokio::test]
async fn https_probes_skip_certificate_verification() {
    let fake = FakeCri::default();
    let port = https_server().await;
    let p = probe(json!({"httpGet": {"path": "/livez", "port": port, "scheme": "HTTPS"}}));
    assert!(run_probe(&fake, &p, &target(), Duration::from_secs(2)).await);
}

/// A gRPC health server answering every check with `status`.
#[derive(Clone)]
struct Health(i32);

impl tonic::server::NamedService for Health {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl tower::Service<http::Request<tonic::body::Body>> for Health {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        use super::handlers::{HealthCheckRequest, HealthCheckResponse};
        let status = self.0;
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            let svc = tower::service_fn(move |_: tonic::Request<HealthCheckRequest>| async move {
                Ok::<_, tonic::Status>(tonic::Response::new(HealthCheckResponse { status }))
            });
            Ok(tonic::server::Grpc::new(codec).unary(svc, req).await)
        })
    }
}

async fn grpc_server(status: i32) -> u16 {
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return 0;
    };
    let Ok(addr) = listener.local_addr() else {
        return 0;
    };
    drop(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Health(status))
            .serve(addr),
    );
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    addr.port()
}

#[tokio::test]
async fn grpc_probes_check_health_v1() {
    let fake = FakeCri::default();
    let serving = grpc_server(1).await;
    let not_serving = grpc_server(2).await;
    let p = probe(json!({"grpc": {"port": serving}}));
    assert!(run_probe(&fake, &p, &target(), Duration::from_secs(2)).await);
    let p = probe(json!({"grpc": {"port": not_serving, "service": "x"}}));
    assert!(!run_probe(&fake, &p, &target(), Duration::from_secs(2)).await);
}
