//! The cluster PKI: a CA, the API server's serving certificate, client certificates for the
//! admin and for the API server itself, and the service-account signing key, generated on first
//! start under one directory and reused afterwards.
//!
//! On every start each leaf is checked and re-issued alone when it is missing, unreadable, not
//! signed by the CA, within [`RENEW_BEFORE`] of expiry, has another subject, or (the serving
//! certificate) lacks a SAN now required, such as a new `--tls-san` or host address. The CA and
//! the service-account key are never replaced once they exist.

mod der;
mod host_ips;
mod inspect;
mod issue;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PublicKeyData as _, SanType};

pub use host_ips::{host_ipv4_addresses, parse_fib_trie};
pub use issue::{CA_VALIDITY, CertAndKey, CertKind, LEAF_VALIDITY};

use crate::error::{Error, Result};
use crate::fsutil::{self, PRIVATE_MODE, PUBLIC_MODE};
use inspect::{inspect, is_signed_by, pem_first_certificate, san_key};
use issue::LeafSpec;

pub(crate) use inspect::pem_certificates;

/// A leaf is re-issued on start when it expires within this long.
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);

/// File names inside the PKI directory.
pub mod files {
    pub const CA_CERT: &str = "server-ca.crt";
    pub const CA_KEY: &str = "server-ca.key";
    pub const SERVING_CERT: &str = "serving-kube-apiserver.crt";
    pub const SERVING_KEY: &str = "serving-kube-apiserver.key";
    pub const ADMIN_CERT: &str = "client-admin.crt";
    pub const ADMIN_KEY: &str = "client-admin.key";
    pub const APISERVER_CLIENT_CERT: &str = "client-kube-apiserver.crt";
    pub const APISERVER_CLIENT_KEY: &str = "client-kube-apiserver.key";
    pub const SERVICE_ACCOUNT_KEY: &str = "service.key";
}

/// The DNS names every serving certificate carries.
pub const SERVING_DNS_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// What the PKI must cover beyond the fixed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// The first address of the service CIDR (the `kubernetes` service's ClusterIP).
    pub service_ip: IpAddr,
    /// Extra SANs for the serving certificate (`--tls-san`): IP addresses or DNS names.
    pub extra_sans: Vec<String>,
    /// The host's addresses to put in the serving certificate; `None` reads them from the
    /// host ([`host_ipv4_addresses`]).
    pub host_ips: Option<Vec<IpAddr>>,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions {
            service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
            extra_sans: Vec::new(),
            host_ips: None,
        }
    }
}

/// The loaded cluster PKI. Cheap to share behind an `Arc`; immutable after loading.
pub struct ClusterPki {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_cert_der: Vec<u8>,
    ca: Issuer<'static, KeyPair>,
    serving: CertAndKey,
    admin: CertAndKey,
    apiserver_client: CertAndKey,
    service_account_key_pem: String,
    service_account_public_key_pem: String,
}

impl std::fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ClusterPki {
    /// Loads the PKI from `dir`, creating whatever is missing and re-issuing stale leaves.
    pub fn load_or_create(dir: &Path, opts: &PkiOptions) -> Result<ClusterPki> {
        Self::load_or_create_at(dir, opts, SystemTime::now())
    }

    /// [`ClusterPki::load_or_create`] with an explicit clock.
    pub fn load_or_create_at(dir: &Path, opts: &PkiOptions, now: SystemTime) -> Result<ClusterPki> {
        fsutil::ensure_private_dir(dir)?;
        let (ca_pair, ca_created) = load_or_create_ca(dir, now)?;
        let ca_key = parse_key(&ca_pair.key_pem, files::CA_KEY)?;
        let ca_cert_der = pem_first_certificate(&ca_pair.cert_pem, files::CA_CERT)?;
        if inspect(&ca_cert_der, files::CA_CERT)?.public_key != ca_key.der_bytes() {
            return Err(Error::ParseKey {
                what: files::CA_KEY.into(),
                reason: format!("does not match {}", files::CA_CERT),
            });
        }
        let ca = Issuer::from_ca_cert_der(&ca_cert_der.clone().into(), ca_key).map_err(|e| {
            Error::ParseCertificate {
                what: files::CA_CERT.into(),
                reason: e.to_string(),
            }
        })?;
        let leaves = Leaves {
            dir,
            ca: &ca,
            ca_cert_der: &ca_cert_der,
            force: ca_created,
            now,
        };
        let serving = leaves.load_or_issue(
            files::SERVING_CERT,
            files::SERVING_KEY,
            &serving_spec(opts)?,
        )?;
        let admin = leaves.load_or_issue(
            files::ADMIN_CERT,
            files::ADMIN_KEY,
            &client_spec("system:admin", &["system:masters".into()], LEAF_VALIDITY),
        )?;
        let apiserver_client = leaves.load_or_issue(
            files::APISERVER_CLIENT_CERT,
            files::APISERVER_CLIENT_KEY,
            &client_spec(
                "system:apiserver",
                &["system:masters".into()],
                LEAF_VALIDITY,
            ),
        )?;
        let sa_key = load_or_create_service_account_key(dir)?;
        Ok(ClusterPki {
            dir: dir.to_path_buf(),
            ca_cert_pem: ca_pair.cert_pem,
            ca_cert_der,
            ca,
            serving,
            admin,
            apiserver_client,
            service_account_key_pem: sa_key.serialize_pem(),
            service_account_public_key_pem: sa_key.public_key_pem(),
        })
    }

    /// The directory the PKI lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The cluster CA certificate, DER.
    pub fn ca_cert_der(&self) -> &[u8] {
        &self.ca_cert_der
    }

    /// The API server's serving certificate (the leaf alone) and key.
    pub fn serving(&self) -> &CertAndKey {
        &self.serving
    }

    /// The admin client certificate (`system:admin`, group `system:masters`) and key.
    pub fn admin_client(&self) -> &CertAndKey {
        &self.admin
    }

    /// The API server's own client certificate (`system:apiserver`, group `system:masters`)
    /// for loopback and in-process clients.
    pub fn apiserver_client(&self) -> &CertAndKey {
        &self.apiserver_client
    }

    /// The service-account signing key, PEM (PKCS#8, ECDSA P-256).
    pub fn service_account_key_pem(&self) -> &str {
        &self.service_account_key_pem
    }

    /// The service-account public key, PEM (SubjectPublicKeyInfo).
    pub fn service_account_public_key_pem(&self) -> &str {
        &self.service_account_public_key_pem
    }

    /// Issues a client certificate for user `common_name` in groups `organizations`, with a
    /// new key. Nothing is written to disk.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[String],
        validity: Duration,
    ) -> Result<CertAndKey> {
        let spec = client_spec(common_name, organizations, validity);
        issue::issue_leaf(&self.ca, &spec, SystemTime::now())
    }

    /// Signs a PEM certificate signing request as `kind`: the signature is checked, and the
    /// subject and the DNS, IP, email and URI SANs are copied. Returns the PEM certificate.
    /// Deciding whether the request may be signed (approval, allowed names) is the caller's.
    pub fn sign_csr(&self, csr_pem: &[u8], kind: CertKind, validity: Duration) -> Result<String> {
        issue::sign_csr(&self.ca, csr_pem, kind, validity, SystemTime::now())
    }
}

/// Loads the CA pair, or creates it when both files are absent. Returns whether it was created.
fn load_or_create_ca(dir: &Path, now: SystemTime) -> Result<(CertAndKey, bool)> {
    let cert = fsutil::read_optional(&dir.join(files::CA_CERT))?;
    let key = fsutil::read_optional(&dir.join(files::CA_KEY))?;
    match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Ok((CertAndKey { cert_pem, key_pem }, false)),
        (None, None) => {
            let pair = issue::create_ca(now)?;
            tracing::info!(dir = %dir.display(), "created the cluster CA");
            write_pair(dir, files::CA_CERT, files::CA_KEY, &pair)?;
            Ok((pair, true))
        }
        (Some(_), None) => Err(missing_half(files::CA_KEY, files::CA_CERT)),
        (None, Some(_)) => Err(missing_half(files::CA_CERT, files::CA_KEY)),
    }
}

/// A CA with half of its files gone is not silently replaced: that would invalidate every
/// kubeconfig and token in use.
fn missing_half(missing: &str, present: &str) -> Error {
    Error::ParseKey {
        what: missing.into(),
        reason: format!("missing while {present} exists; remove both to create a new CA"),
    }
}

fn load_or_create_service_account_key(dir: &Path) -> Result<KeyPair> {
    let path = dir.join(files::SERVICE_ACCOUNT_KEY);
    if let Some(pem) = fsutil::read_optional(&path)? {
        let key = parse_key(&pem, files::SERVICE_ACCOUNT_KEY)?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(Error::LoadSigningKey(format!(
                "{} is not an ECDSA P-256 key",
                path.display()
            )));
        }
        return Ok(key);
    }
    let key = issue::generate_key()?;
    fsutil::write_atomic(&path, key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
    tracing::info!(path = %path.display(), "created the service-account signing key");
    Ok(key)
}

fn parse_key(pem: &str, what: &str) -> Result<KeyPair> {
    KeyPair::from_pem(pem).map_err(|e| Error::ParseKey {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn write_pair(dir: &Path, cert_file: &str, key_file: &str, pair: &CertAndKey) -> Result<()> {
    // Key first: a crash in between leaves a key without certificate, which is re-issued.
    fsutil::write_atomic(&dir.join(key_file), pair.key_pem.as_bytes(), PRIVATE_MODE)?;
    fsutil::write_atomic(&dir.join(cert_file), pair.cert_pem.as_bytes(), PUBLIC_MODE)
}

/// Loads or issues the leaves of one start.
struct Leaves<'a> {
    dir: &'a Path,
    ca: &'a Issuer<'static, KeyPair>,
    ca_cert_der: &'a [u8],
    /// Re-issue whatever exists (the CA is new).
    force: bool,
    now: SystemTime,
}

impl Leaves<'_> {
    fn load_or_issue(
        &self,
        cert_file: &str,
        key_file: &str,
        spec: &LeafSpec,
    ) -> Result<CertAndKey> {
        let cert = fsutil::read_optional(&self.dir.join(cert_file))?;
        let key = fsutil::read_optional(&self.dir.join(key_file))?;
        let reason = match (cert, key) {
            (Some(cert_pem), Some(key_pem)) if !self.force => {
                let pair = CertAndKey { cert_pem, key_pem };
                match self.why_reissue(&pair, spec, cert_file) {
                    None => return Ok(pair),
                    Some(reason) => reason,
                }
            }
            _ if self.force => "the CA is new".to_owned(),
            _ => "it is missing".to_owned(),
        };
        tracing::info!(file = cert_file, %reason, "issuing certificate");
        let pair = issue::issue_leaf(self.ca, spec, self.now)?;
        write_pair(self.dir, cert_file, key_file, &pair)?;
        Ok(pair)
    }

    /// Why a stored leaf must be re-issued, or `None` if it is still good.
    fn why_reissue(&self, pair: &CertAndKey, spec: &LeafSpec, what: &str) -> Option<String> {
        let der = match pem_first_certificate(&pair.cert_pem, what) {
            Ok(der) => der,
            Err(e) => return Some(e.to_string()),
        };
        let info = match inspect(&der, what) {
            Ok(info) => info,
            Err(e) => return Some(e.to_string()),
        };
        let key_matches = KeyPair::from_pem(&pair.key_pem)
            .map(|k| k.der_bytes() == info.public_key)
            .unwrap_or(false);
        let now = unix_seconds(self.now);
        let renew_at = info.not_after - RENEW_BEFORE.as_secs() as i64;
        let missing: Vec<String> = spec
            .sans
            .iter()
            .map(san_key)
            .filter(|k| !info.sans.contains(k))
            .collect();
        if !key_matches {
            Some("its key does not match".into())
        } else if !is_signed_by(&der, self.ca_cert_der) {
            Some("it is not signed by the cluster CA".into())
        } else if now >= renew_at {
            Some("it expires soon".into())
        } else if info.subject_der != spec.subject_der {
            Some("its subject changed".into())
        } else if !missing.is_empty() {
            Some(format!("it lacks SANs {missing:?}"))
        } else {
            None
        }
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn client_spec(common_name: &str, organizations: &[String], validity: Duration) -> LeafSpec {
    LeafSpec {
        subject_der: der::subject_name(common_name, organizations),
        sans: Vec::new(),
        kind: CertKind::Client,
        validity,
    }
}

fn serving_spec(opts: &PkiOptions) -> Result<LeafSpec> {
    Ok(LeafSpec {
        subject_der: der::subject_name("kube-apiserver", &[]),
        sans: serving_sans(opts)?,
        kind: CertKind::Serving,
        validity: LEAF_VALIDITY,
    })
}

/// The SANs the serving certificate must carry, without duplicates.
pub(crate) fn serving_sans(opts: &PkiOptions) -> Result<Vec<SanType>> {
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        opts.service_ip,
    ];
    match &opts.host_ips {
        Some(host_ips) => ips.extend(host_ips.iter().copied()),
        None => ips.extend(host_ipv4_addresses().into_iter().map(IpAddr::V4)),
    }
    let mut names: Vec<String> = SERVING_DNS_NAMES.iter().map(|s| s.to_string()).collect();
    for extra in &opts.extra_sans {
        match extra.trim().parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => names.push(valid_dns_name(extra)?),
        }
    }
    let mut sans = Vec::new();
    for ip in ips {
        push_unique(&mut sans, SanType::IpAddress(ip));
    }
    for name in names {
        let ia5 = name
            .as_str()
            .try_into()
            .map_err(|_| Error::InvalidSubjectAltName(name.clone()))?;
        push_unique(&mut sans, SanType::DnsName(ia5));
    }
    Ok(sans)
}

fn push_unique(sans: &mut Vec<SanType>, san: SanType) {
    if !sans.contains(&san) {
        sans.push(san);
    }
}

/// Checks a DNS name (optionally a leading `*.` wildcard) and lowercases it.
fn valid_dns_name(name: &str) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if body.is_empty() || lower.len() > 253 || !body.split('.').all(label_ok) {
        return Err(Error::InvalidSubjectAltName(name.to_owned()));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests;
