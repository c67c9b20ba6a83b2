//! rustls configurations for the API server and for in-process clients, on the `ring`
//! provider.
//!
//! The server offers client-certificate authentication with the cluster CA as the only root but
//! also accepts clients without a certificate (token users, anonymous health checks); a client
//! that does present a certificate must present one the CA signed.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::pki::{CertAndKey, ClusterPki, pem_certificates};

/// ALPN protocols the API server speaks, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The API server's TLS configuration: serving certificate (with the CA in the chain), ALPN
/// `h2` then `http/1.1`, optional client certificates verified against the cluster CA.
pub fn server_config(pki: &ClusterPki) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(pki)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(tls_error)?;
    let (mut chain, key) = cert_and_key(pki.serving())?;
    chain.extend(pem_certificates(pki.ca_cert_pem(), "CA")?);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// A [`tokio_rustls::TlsAcceptor`] over [`server_config`].
pub fn acceptor(pki: &ClusterPki) -> Result<tokio_rustls::TlsAcceptor> {
    server_config(pki).map(tokio_rustls::TlsAcceptor::from)
}

/// A client configuration that trusts the cluster CA and presents the API server's own
/// loopback client certificate (`system:apiserver`, group `system:masters`).
pub fn client_config_for(pki: &ClusterPki) -> Result<Arc<ClientConfig>> {
    client_config_with_cert(pki, pki.apiserver_client())
}

/// A client configuration that trusts the cluster CA and presents `client`'s certificate.
pub fn client_config_with_cert(pki: &ClusterPki, client: &CertAndKey) -> Result<Arc<ClientConfig>> {
    let (chain, key) = cert_and_key(client)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots(pki)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// A client configuration that trusts the cluster CA and presents no certificate (for token
/// and anonymous requests).
pub fn client_config_without_cert(pki: &ClusterPki) -> Result<Arc<ClientConfig>> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots(pki)?)
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn() -> Vec<Vec<u8>> {
    ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect()
}

fn roots(pki: &ClusterPki) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_cert_der().to_vec()))
        .map_err(tls_error)?;
    Ok(Arc::new(roots))
}

fn cert_and_key(
    pair: &CertAndKey,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = pem_certificates(&pair.cert_pem, "TLS certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).map_err(|e| Error::ParseKey {
            what: "TLS key".into(),
            reason: e.to_string(),
        })?;
    Ok((chain, key))
}

fn tls_error(e: impl std::fmt::Display) -> Error {
    Error::BuildTlsConfig(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::PkiOptions;

    #[test]
    fn configs_build_with_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PkiOptions {
            host_ips: Some(vec![]),
            ..PkiOptions::default()
        };
        let pki = ClusterPki::load_or_create(dir.path(), &opts).unwrap();
        let server = server_config(&pki).unwrap();
        assert_eq!(
            server.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        client_config_for(&pki).unwrap();
        client_config_without_cert(&pki).unwrap();
    }
}
