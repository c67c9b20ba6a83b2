//! Reading certificates back: PEM framing, subject, SANs, expiry and issuer checks.

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

use crate::error::{Error, Result};

/// What this crate needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// The subject name's DER, as encoded in the certificate.
    pub subject_der: Vec<u8>,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    /// SANs as [`san_key`] strings.
    pub sans: BTreeSet<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// The raw public key bits (not the whole SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
}

/// A comparable form of one SAN: `ip:<addr>` or `dns:<lowercase name>`.
pub(crate) fn san_key(san: &rcgen::SanType) -> String {
    match san {
        rcgen::SanType::IpAddress(ip) => format!("ip:{ip}"),
        rcgen::SanType::DnsName(name) => format!("dns:{}", name.as_str().to_ascii_lowercase()),
        rcgen::SanType::URI(uri) => format!("uri:{}", uri.as_str()),
        rcgen::SanType::Rfc822Name(mail) => format!("email:{}", mail.as_str()),
        other => format!("other:{other:?}"),
    }
}

/// Encodes DER as PEM with the given label.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// All certificates in a PEM bundle, in order.
pub(crate) fn pem_certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_error(what, e))?;
    if certs.is_empty() {
        return Err(parse_error(what, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The first certificate of a PEM bundle as DER.
pub(crate) fn pem_first_certificate(pem: &str, what: &str) -> Result<Vec<u8>> {
    let mut certs = pem_certificates(pem, what)?;
    Ok(certs.swap_remove(0).to_vec())
}

/// Parses a DER certificate into [`CertInfo`].
pub(crate) fn inspect(der: &[u8], what: &str) -> Result<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| parse_error(what, e))?;
    let subject = cert.subject();
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        a.as_str()
            .map(str::to_owned)
            .map_err(|e| parse_error(what, e))
    };
    let common_name = subject.iter_common_name().next().map(text).transpose()?;
    let organizations = subject
        .iter_organization()
        .map(text)
        .collect::<Result<_>>()?;
    Ok(CertInfo {
        subject_der: subject.as_raw().to_vec(),
        common_name,
        organizations,
        sans: subject_alt_names(&cert, what)?,
        not_after: cert.validity().not_after.timestamp(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

fn subject_alt_names(cert: &X509Certificate<'_>, what: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let Some(ext) = cert
        .subject_alternative_name()
        .map_err(|e| parse_error(what, e))?
    else {
        return Ok(out);
    };
    for name in &ext.value.general_names {
        if let Some(san) = general_name_to_san(name) {
            out.insert(san_key(&san));
        }
    }
    Ok(out)
}

/// Converts the SAN kinds Kubernetes copies (DNS, IP, email, URI); others give `None`.
pub(crate) fn general_name_to_san(name: &GeneralName<'_>) -> Option<rcgen::SanType> {
    match name {
        GeneralName::DNSName(n) => (*n).try_into().ok().map(rcgen::SanType::DnsName),
        GeneralName::RFC822Name(n) => (*n).try_into().ok().map(rcgen::SanType::Rfc822Name),
        GeneralName::URI(n) => (*n).try_into().ok().map(rcgen::SanType::URI),
        GeneralName::IPAddress(octets) => ip_from_octets(octets).map(rcgen::SanType::IpAddress),
        _ => None,
    }
}

fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
}

/// Whether `cert_der`'s signature verifies with the public key of `ca_der`.
pub(crate) fn is_signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn parse_error(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::ParseCertificate {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(200).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_first_certificate(&pem, "test").unwrap(), der);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            pem_first_certificate("nothing here", "x"),
            Err(Error::ParseCertificate { .. })
        ));
        assert!(inspect(b"\x30\x03abc", "x").is_err());
        assert!(!is_signed_by(b"junk", b"junk"));
    }
}
