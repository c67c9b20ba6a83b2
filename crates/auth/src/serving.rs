//! Kubelet serving certificates, for the kubelet's HTTPS API and the hollow nodes' metrics
//! endpoint: the key and CSR a node sends to the `kubernetes.io/kubelet-serving` signer
//! (`CN=system:node:NAME`, `O=system:nodes`, the node's addresses as SANs), the self-signed
//! certificate served until one is issued, a swappable certificate for a rustls server, and
//! when to renew (at 80% of the lifetime, as upstream's certificate manager).
//!
//! The Kubernetes API side (creating the CertificateSigningRequest, waiting for it to be
//! issued) is the caller's: this module does cryptography only.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, SanType};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use crate::error::{Error, Result};
use crate::pki::{CertAndKey, pem_certificates};
use crate::tls::ALPN_PROTOCOLS;

/// The signer of kubelet serving certificates.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The key usages a kubelet serving CSR asks for.
pub const USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// What a node's serving certificate is for: the node and the names it is reached by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeServingNames {
    /// The node's name: the subject is `CN=system:node:NODE, O=system:nodes`.
    pub node: String,
    /// IP SANs, in order.
    pub ips: Vec<IpAddr>,
    /// DNS SANs after the IPs; a name that is not ASCII (IA5) is left out.
    pub dns_names: Vec<String>,
}

impl NodeServingNames {
    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "system:nodes");
        dn.push(DnType::CommonName, format!("system:node:{}", self.node));
        params.distinguished_name = dn;
        let ips = self.ips.iter().map(|ip| SanType::IpAddress(*ip));
        let dns = self.dns_names.iter().filter_map(|name| {
            let name = rcgen::string::Ia5String::try_from(name.as_str()).ok()?;
            Some(SanType::DnsName(name))
        });
        params.subject_alt_names = ips.chain(dns).collect();
        params
    }

    /// A new key and its CSR for these names: `(csr_pem, key_pem)`.
    pub fn csr(&self) -> Result<(String, String)> {
        let key = rcgen::KeyPair::generate().map_err(Error::GenerateKey)?;
        let csr = self
            .params()
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| issue_error("kubelet serving CSR", e))?;
        Ok((csr, key.serialize_pem()))
    }

    /// A self-signed serving certificate for these names (served until one is issued).
    pub fn self_signed(&self) -> Result<CertAndKey> {
        let key = rcgen::KeyPair::generate().map_err(Error::GenerateKey)?;
        let mut params = self.params();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .self_signed(&key)
            .map_err(|e| issue_error("self-signed kubelet serving certificate", e))?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn issue_error(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::IssueCertificate {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// The certificate a server presents now, swapped when a new one is issued: give it to
/// rustls as the certificate resolver (see [`server_config`]).
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
    /// Presents `pem` (a certificate chain and its key) first, on the `ring` provider.
    pub fn new(pem: &CertAndKey) -> Result<ServingCert> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certified(pem, &provider)?;
        Ok(ServingCert {
            current: RwLock::new(Arc::new(key)),
            provider,
        })
    }

    /// Presents `pem` from now on; a certificate or key that cannot be loaded changes nothing.
    pub fn set(&self, pem: &CertAndKey) -> Result<()> {
        let key = certified(pem, &self.provider)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(key);
        }
        Ok(())
    }
}

fn certified(pem: &CertAndKey, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let chain = pem_certificates(&pem.cert_pem, "serving certificate")?;
    let key_error = |e: &dyn std::fmt::Display| Error::ParseKey {
        what: "serving key".into(),
        reason: e.to_string(),
    };
    let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes()).map_err(|e| key_error(&e))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(&e))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// A server configuration presenting `serving`, ALPN `h2` then `http/1.1`; client
/// certificates are verified against `client_ca_pem` when given but not required, and not
/// asked for otherwise.
pub fn server_config(
    serving: Arc<ServingCert>,
    client_ca_pem: Option<&str>,
) -> Result<ServerConfig> {
    let tls_error = |e: &dyn std::fmt::Display| Error::BuildTlsConfig(e.to_string());
    let provider = serving.provider.clone();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e))?;
    let builder = match client_ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in pem_certificates(pem, "client CA")? {
                roots.add(cert).map_err(|e| tls_error(&e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls_error(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(serving);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn first_certificate(cert_pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()?
        .ok()
}

/// `(not_before, not_after)` of the first certificate, seconds since the epoch.
pub fn validity(cert_pem: &str) -> Option<(i64, i64)> {
    let der = first_certificate(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Whether the first certificate names `ip` (a node whose IP changed asks anew).
pub fn names_ip(cert_pem: &str, ip: IpAddr) -> bool {
    let Some(der) = first_certificate(cert_pem) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let want = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::IPAddress(b) if *b == want.as_slice()))
}

/// When a certificate valid over `[from, to]` (seconds) is renewed: at 80% of its lifetime.
pub fn renew_at(from: i64, to: i64) -> i64 {
    from + (to - from) * 8 / 10
}

/// How long to wait at `now` before renewing a certificate valid over `[from, to]` (zero when
/// it is due).
pub fn renew_in(from: i64, to: i64, now: i64) -> Duration {
    Duration::from_secs(u64::try_from(renew_at(from, to) - now).unwrap_or(0))
}

/// [`renew_in`] for the first certificate of `cert_pem`; `None` when it cannot be read.
pub fn renewal_due_in(cert_pem: &str, now: i64) -> Option<Duration> {
    validity(cert_pem).map(|(from, to)| renew_in(from, to, now))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use x509_parser::prelude::FromDer as _;

    use super::*;

    fn names() -> NodeServingNames {
        NodeServingNames {
            node: "n0".into(),
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))],
            dns_names: vec!["n0".into(), "nœud".into()],
        }
    }

    #[test]
    fn requests_name_the_node_and_its_addresses() {
        let (csr, key) = names().csr().expect("a CSR");
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.contains("PRIVATE KEY"));
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .expect("PEM");
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .expect("a CSR");
        let subject = req.certification_request_info.subject.to_string();
        assert!(subject.contains("CN=system:node:n0") && subject.contains("O=system:nodes"));
        let sans: Vec<String> = req
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                x509_parser::extensions::ParsedExtension::SubjectAlternativeName(s) => Some(s),
                _ => None,
            })
            .flat_map(|s| s.general_names.iter().map(|n| n.to_string()))
            .collect();
        assert_eq!(sans, ["IPAddress(0a:00:00:05)", "DNSName(n0)"]);
    }

    #[test]
    fn self_signed_names_the_ip_and_is_valid() {
        let pem = names().self_signed().expect("self-signed");
        let (from, to) = validity(&pem.cert_pem).expect("validity");
        assert!(to > from);
        assert!(names_ip(&pem.cert_pem, [10, 0, 0, 5].into()));
        assert!(!names_ip(&pem.cert_pem, [10, 0, 0, 6].into()));
        assert!(!names_ip("garbage", [10, 0, 0, 5].into()));
        assert_eq!(validity("garbage"), None);
    }

    #[test]
    fn renewal_at_four_fifths() {
        assert_eq!(renew_at(0, 100), 80);
        assert_eq!(renew_in(0, 100, 10), Duration::from_secs(70));
        assert_eq!(renew_in(0, 100, 90), Duration::ZERO);
        let pem = names().self_signed().expect("self-signed");
        let (from, to) = validity(&pem.cert_pem).expect("validity");
        assert_eq!(
            renewal_due_in(&pem.cert_pem, from),
            Some(renew_in(from, to, from))
        );
        assert_eq!(renewal_due_in("", 0), None);
    }

    #[test]
    fn certificates_swap_and_serve() {
        let first = names().self_signed().expect("self-signed");
        let current = Arc::new(ServingCert::new(&first).expect("loads"));
        let second = names().self_signed().expect("self-signed");
        assert!(current.set(&second).is_ok());
        let no_cert = CertAndKey {
            cert_pem: String::new(),
            key_pem: second.key_pem.clone(),
        };
        assert!(matches!(
            current.set(&no_cert),
            Err(Error::ParseCertificate { .. })
        ));
        let no_key = CertAndKey {
            cert_pem: second.cert_pem.clone(),
            key_pem: String::new(),
        };
        assert!(matches!(current.set(&no_key), Err(Error::ParseKey { .. })));
        let config = server_config(current.clone(), None).expect("a config");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(server_config(current.clone(), Some(&first.cert_pem)).is_ok());
        assert!(server_config(current, Some("not a CA")).is_err());
    }
}
