//! The server's TLS: a serving certificate from a CertificateSigningRequest for the
//! `kubernetes.io/kubelet-serving` signer (CN=system:node:NAME, O=system:nodes, SANs the node
//! IP and name), kept in `<data_dir>/pki/kubelet-server-current.pem` and renewed at 80% of its
//! lifetime; until one is issued (or when the request is not signed in time) a self-signed
//! certificate. Client certificates are verified against the cluster CA when one is given;
//! clients without one are let in as anonymous and refused by the handler.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::KubeletConfig;

/// The signer of kubelet serving certificates.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Between two tries to get a certificate issued.
const RETRY: Duration = Duration::from_secs(60);

/// A TLS setup failure.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("making a certificate: {0}")]
    Generate(String),
    #[error("loading a certificate: {0}")]
    Load(String),
    #[error("the certificate signing request failed: {0}")]
    Request(String),
}

/// A certificate (chain) and key in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// The certificate the server presents now; swapped when a new one is issued.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

impl ServingCert {
    pub fn new(pem: &Pem, provider: Arc<CryptoProvider>) -> Result<ServingCert, TlsError> {
        let key = certified(pem, &provider)?;
        Ok(ServingCert {
            current: RwLock::new(Arc::new(key)),
            provider,
        })
    }

    /// Presents `pem` from now on.
    pub fn set(&self, pem: &Pem) -> Result<(), TlsError> {
        let key = certified(pem, &self.provider)?;
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(key);
        }
        Ok(())
    }
}

fn certified(pem: &Pem, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let load = |e: &dyn std::fmt::Display| TlsError::Load(e.to_string());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| load(&e))?;
    if chain.is_empty() {
        return Err(TlsError::Load("no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).map_err(|e| load(&e))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| load(&e))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// The names the certificate is for: the node's IP and its name (its Hostname address).
fn sans(config: &KubeletConfig) -> Vec<rcgen::SanType> {
    let mut out = vec![rcgen::SanType::IpAddress(config.node_ip)];
    if let Ok(name) = rcgen::string::Ia5String::try_from(config.node_name.as_str()) {
        out.push(rcgen::SanType::DnsName(name));
    }
    out
}

fn params(config: &KubeletConfig) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    dn.push(
        rcgen::DnType::CommonName,
        format!("system:node:{}", config.node_name),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = sans(config);
    params
}

/// A self-signed serving certificate for the node.
pub fn self_signed(config: &KubeletConfig) -> Result<Pem, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut p = params(config);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.self_signed(&key).map_err(err)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A new key and its CSR (PEM) for the node's serving certificate.
pub fn serving_csr(config: &KubeletConfig) -> Result<(String, String), TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let csr = params(config).serialize_request(&key).map_err(err)?;
    Ok((csr.pem().map_err(err)?, key.serialize_pem()))
}

/// `(not_before, not_after)` of the first certificate, seconds since the epoch.
pub fn validity(cert_pem: &str) -> Option<(i64, i64)> {
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Whether the first certificate names `ip` (a node whose IP changed asks anew).
pub fn names_ip(cert_pem: &str, ip: std::net::IpAddr) -> bool {
    let Some(Ok(der)) = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let want = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(
        |n| matches!(n, x509_parser::extensions::GeneralName::IPAddress(b) if *b == want.as_slice()),
    )
}

/// When a certificate valid over `[from, to]` is renewed: at 80% of its lifetime.
pub fn renew_at(from: i64, to: i64) -> i64 {
    from + (to - from) * 8 / 10
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Where the issued certificate and key are kept.
pub fn current_path(config: &KubeletConfig) -> PathBuf {
    config
        .data_dir
        .join("pki")
        .join("kubelet-server-current.pem")
}

/// The kept certificate if it is still valid.
pub fn load_current(config: &KubeletConfig) -> Option<Pem> {
    let text = std::fs::read_to_string(current_path(config)).ok()?;
    let key_start = text.find("-----BEGIN PRIVATE KEY-----")?;
    let (cert, key) = (text[..key_start].to_string(), text[key_start..].to_string());
    let (_, to) = validity(&cert)?;
    let fits = to > now_secs() && names_ip(&cert, config.node_ip);
    fits.then_some(Pem { cert, key })
}

fn save_current(config: &KubeletConfig, pem: &Pem) {
    let path = current_path(config);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, format!("{}{}", pem.cert, pem.key))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "saving the kubelet serving certificate failed");
    }
}

/// Asks the API server for a serving certificate and waits up to `timeout` for it.
pub async fn request(
    client: &kube::Client,
    config: &KubeletConfig,
    timeout: Duration,
) -> Result<Pem, TlsError> {
    let (csr_pem, key) = serving_csr(config)?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(
                ["digital signature", "key encipherment", "server auth"]
                    .map(String::from)
                    .to_vec(),
            ),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|e| TlsError::Request(e.to_string()))?;
    let name = created.metadata.name.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(Some(current)) = api.get_opt(&name).await else {
            continue;
        };
        let status = current.status.unwrap_or_default();
        let conds = status.conditions.unwrap_or_default();
        if let Some(c) = conds
            .iter()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            let why = c.message.clone().unwrap_or_default();
            return Err(TlsError::Request(format!("{name} {}: {why}", c.type_)));
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert = String::from_utf8(cert.0).map_err(|e| TlsError::Request(e.to_string()))?;
            return Ok(Pem { cert, key });
        }
    }
    Err(TlsError::Request(format!(
        "{name} was not signed within {}s",
        timeout.as_secs()
    )))
}

/// Waits until the Node is registered with an address: the approver checks the requested
/// names against it.
async fn wait_for_node(client: &kube::Client, name: &str, shutdown: &CancellationToken) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    loop {
        if let Ok(Some(node)) = nodes.get_opt(name).await {
            let addrs = node.status.and_then(|s| s.addresses).unwrap_or_default();
            if addrs.iter().any(|a| a.type_ == "InternalIP") {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Keeps `serving` presenting an issued certificate: requests one, then renews it at 80% of
/// its lifetime, until `shutdown`.
pub async fn rotate(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    serving: Arc<ServingCert>,
    mut have: Option<Pem>,
    shutdown: CancellationToken,
) {
    wait_for_node(&client, &config.node_name, &shutdown).await;
    loop {
        let wait = match have.as_ref().and_then(|p| validity(&p.cert)) {
            Some((from, to)) => {
                Duration::from_secs(u64::try_from(renew_at(from, to) - now_secs()).unwrap_or(0))
            }
            None => Duration::ZERO,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let asked = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request(&client, &config, config.serving_csr_timeout) => r,
        };
        match asked.and_then(|pem| serving.set(&pem).map(|()| pem)) {
            Ok(pem) => {
                tracing::info!(
                    "kubelet server: serving with a certificate issued by the cluster CA"
                );
                save_current(&config, &pem);
                have = Some(pem);
            }
            Err(e) => {
                if have.is_none() {
                    tracing::warn!(error = %e, "kubelet server: no serving certificate issued; serving with a self-signed certificate");
                } else {
                    tracing::warn!(error = %e, "kubelet server: renewing the serving certificate failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// The server's rustls configuration: `serving` presented, client certificates verified
/// against `ca_pem` when given but not required.
pub fn server_config(
    serving: Arc<ServingCert>,
    ca_pem: Option<&str>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let load = |e: &dyn std::fmt::Display| TlsError::Load(e.to_string());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| load(&e))?;
    let builder = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.map_err(|e| load(&e))?)
                    .map_err(|e| load(&e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| load(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
