//! Issuing certificates: the self-signed cluster CA, leaves signed by it, and CSRs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer as _;

use super::der;
use super::inspect::{general_name_to_san, pem_encode};
use crate::error::{Error, Result};

/// How long the cluster CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long the serving and client certificates this crate issues itself are valid.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates are dated this far back, so hosts with slightly slow clocks accept them.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// What a certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// TLS client authentication (`client auth`).
    Client,
    /// TLS server authentication (`server auth`).
    Serving,
    /// Both.
    ClientAndServing,
}

impl CertKind {
    fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            CertKind::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            CertKind::Serving => vec![ExtendedKeyUsagePurpose::ServerAuth],
            CertKind::ClientAndServing => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        }
    }
}

/// A PEM certificate with its PEM (PKCS#8) private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Everything that differs between the leaves this crate issues.
pub(crate) struct LeafSpec {
    /// The subject name's DER (see [`der::subject_name`]).
    pub subject_der: Vec<u8>,
    pub sans: Vec<SanType>,
    pub kind: CertKind,
    pub validity: Duration,
}

/// Generates a new ECDSA P-256 key.
pub(crate) fn generate_key() -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(Error::GenerateKey)
}

/// Creates the self-signed cluster CA; returns its PEM certificate and key.
pub(crate) fn create_ca(now: SystemTime) -> Result<CertAndKey> {
    let key = generate_key()?;
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut params = base_params(now, CA_VALIDITY)?;
    params.distinguished_name = common_name_only(&format!("k8rs-server-ca@{unix}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|e| issue_error("cluster CA", e))?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a leaf for a newly generated key.
pub(crate) fn issue_leaf(
    ca: &Issuer<'static, KeyPair>,
    spec: &LeafSpec,
    now: SystemTime,
) -> Result<CertAndKey> {
    let key = generate_key()?;
    let der = sign_leaf(ca, spec, &key, now)?;
    Ok(CertAndKey {
        cert_pem: pem_encode("CERTIFICATE", &der),
        key_pem: key.serialize_pem(),
    })
}

/// Signs a leaf certificate for `public_key`; returns its DER.
pub(crate) fn sign_leaf(
    ca: &Issuer<'static, KeyPair>,
    spec: &LeafSpec,
    public_key: &impl PublicKeyData,
    now: SystemTime,
) -> Result<Vec<u8>> {
    let mut params = base_params(now, spec.validity)?;
    params.subject_alt_names = spec.sans.clone();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = spec.kind.extended_key_usages();
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(public_key, ca)
        .map_err(|e| issue_error("leaf", e))?;
    der::replace_subject(cert.der(), &spec.subject_der, ca.key())
}

/// Signs a PEM certificate signing request: checks its signature, copies its subject and its
/// DNS, IP, email and URI SANs. Returns the PEM certificate.
pub(crate) fn sign_csr(
    ca: &Issuer<'static, KeyPair>,
    csr_pem: &[u8],
    kind: CertKind,
    validity: Duration,
    now: SystemTime,
) -> Result<String> {
    let csr_der = CertificateSigningRequestDer::from_pem_slice(csr_pem)
        .map_err(|e| Error::ParseCsr(e.to_string()))?;
    let (_, csr) = X509CertificationRequest::from_der(csr_der.as_ref())
        .map_err(|e| Error::ParseCsr(e.to_string()))?;
    csr.verify_signature()
        .map_err(|_| Error::CsrSignatureInvalid)?;
    let info = &csr.certification_request_info;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| Error::ParseCsr(format!("unsupported public key: {e}")))?;
    let mut sans = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            sans.extend(san.general_names.iter().filter_map(general_name_to_san));
        }
    }
    let spec = LeafSpec {
        subject_der: info.subject.as_raw().to_vec(),
        sans,
        kind,
        validity,
    };
    let der = sign_leaf(ca, &spec, &public_key, now)?;
    Ok(pem_encode("CERTIFICATE", &der))
}

/// Parameters every certificate shares: a random serial and the validity window.
fn base_params(now: SystemTime, validity: Duration) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // and of full length
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = OffsetDateTime::from(now);
    params.not_before = now - BACKDATE;
    params.not_after = now
        .checked_add(time::Duration::try_from(validity).map_err(|e| issue_error("validity", e))?)
        .ok_or_else(|| issue_error("validity", "validity too long"))?;
    params.distinguished_name = common_name_only("k8rs");
    Ok(params)
}

fn common_name_only(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn issue_error(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::IssueCertificate {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}
