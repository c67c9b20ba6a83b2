//! Real TLS handshakes over loopback TCP between the server configuration and the client
//! configurations, checking what the server sees of the client.

use std::sync::Arc;

use k8rs_auth::authn::user_from_peer_certificates;
use k8rs_auth::{ClusterPki, PkiOptions, UserInfo, tls};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the server learned from one connection.
#[derive(Debug)]
struct Seen {
    user: Option<UserInfo>,
    alpn: Option<Vec<u8>>,
}

fn pki(dir: &std::path::Path) -> ClusterPki {
    let opts = PkiOptions {
        host_ips: Some(vec![]),
        ..PkiOptions::default()
    };
    ClusterPki::load_or_create(dir, &opts).unwrap()
}

async fn serve_one(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Seen> {
    let (tcp, _) = listener.accept().await?;
    let mut tls = acceptor.accept(tcp).await?;
    let conn = tls.get_ref().1;
    let user = user_from_peer_certificates(conn.peer_certificates())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let seen = Seen {
        user,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
    };
    tls.write_all(b"ok").await?;
    tls.shutdown().await?;
    Ok(seen)
}

async fn connect_one(
    port: u16,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(std::io::Error::other)?;
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await?;
    Ok(reply)
}

/// Runs one handshake; returns the server's and the client's outcome.
async fn handshake(
    server: &ClusterPki,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> (std::io::Result<Seen>, std::io::Result<Vec<u8>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls::acceptor(server).unwrap();
    tokio::join!(
        serve_one(listener, acceptor),
        connect_one(port, client, server_name)
    )
}

#[tokio::test]
async fn client_certificate_is_visible_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (seen, reply) = handshake(&pki, tls::client_config_for(&pki).unwrap(), "127.0.0.1").await;
    assert_eq!(reply.unwrap(), b"ok");
    let seen = seen.unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    let user = seen.user.expect("client certificate");
    assert_eq!(user.name, "system:apiserver");
    assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
}

#[tokio::test]
async fn client_without_certificate_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let client = tls::client_config_without_cert(&pki).unwrap();
    let (seen, reply) = handshake(&pki, client, "kubernetes.default.svc").await;
    assert_eq!(reply.unwrap(), b"ok");
    assert!(seen.unwrap().user.is_none());
}

#[tokio::test]
async fn client_certificate_of_another_ca_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let server = pki(ours.path());
    let foreign = pki(theirs.path());
    // Trusts our CA, but presents a certificate the foreign CA signed.
    let client = tls::client_config_with_cert(&server, foreign.admin_client()).unwrap();
    let (seen, reply) = handshake(&server, client, "localhost").await;
    assert!(
        seen.is_err(),
        "server accepted a foreign client certificate"
    );
    assert!(reply.is_err());
}

#[tokio::test]
async fn server_name_outside_the_sans_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let client = tls::client_config_without_cert(&pki).unwrap();
    let (seen, reply) = handshake(&pki, client, "evil.example.com").await;
    assert!(reply.is_err());
    assert!(seen.is_err());
}
