//! Join tokens, as k3s's: `K10<sha256 of the cluster CA certificate, hex>::node:<secret>`.
//!
//! The server writes one to `<data-dir>/token`; an agent given it (1) fetches the CA from the
//! server's unauthenticated `/cacerts` and trusts it only if its hash matches the token, then
//! (2) authenticates with the whole token as a bearer token (a bootstrap identity) to request
//! its kubelet client certificate through a CertificateSigningRequest.

use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::error::{Error, Result};
use crate::fsutil;

/// The prefix and version of the token format.
const PREFIX: &str = "K10";
/// The user part of the secret, as k3s's.
const USER: &str = "node";
/// The user a join token authenticates as (upstream's bootstrap token user form).
pub const BOOTSTRAP_USER: &str = "system:bootstrap:k8rs-join";
/// The groups of [`BOOTSTRAP_USER`]: upstream's bootstrappers group, which the CSR approver
/// trusts to request new node client certificates.
pub const BOOTSTRAP_GROUPS: &[&str] = &["system:bootstrappers", "system:bootstrappers:k8rs"];

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase hex SHA-256 of the CA certificate PEM the server serves at `/cacerts`.
    pub ca_hash: String,
    /// The shared secret.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// Parses `K10<hash>::node:<secret>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<JoinToken> {
        let bad = |why: &str| Error::InvalidJoinToken(why.to_string());
        let text = text.trim();
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with K10"))?;
        let (hash, creds) = rest
            .split_once("::")
            .ok_or_else(|| bad("it has no '::' between the CA hash and the credentials"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("its CA hash is not 64 hex digits"));
        }
        let secret = creds
            .strip_prefix(USER)
            .and_then(|s| s.strip_prefix(':'))
            .ok_or_else(|| bad("its credentials are not node:<secret>"))?;
        if secret.is_empty() {
            return Err(bad("its secret is empty"));
        }
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }

    /// The token's text form.
    pub fn render(&self) -> String {
        format!("{PREFIX}{}::{USER}:{}", self.ca_hash, self.secret)
    }

    /// Whether `ca_pem` is the CA this token pins.
    pub fn pins(&self, ca_pem: &[u8]) -> bool {
        constant_time_eq(ca_hash(ca_pem).as_bytes(), self.ca_hash.as_bytes())
    }

    /// Whether `presented` (a bearer token) is this token.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.trim().as_bytes(), self.render().as_bytes())
    }
}

/// Lowercase hex SHA-256 of `ca_pem`.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ca_pem);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the token at `path`, or creates one pinning `ca_pem` (mode 0600). A stored token
/// that pins another CA (the CA was regenerated) is replaced, keeping its secret.
pub fn load_or_create(path: &Path, ca_pem: &str) -> Result<JoinToken> {
    let hash = ca_hash(ca_pem.as_bytes());
    if let Some(text) = fsutil::read_optional(path)? {
        let mut token = JoinToken::parse(&text)?;
        if token.ca_hash == hash {
            return Ok(token);
        }
        token.ca_hash = hash;
        fsutil::write_atomic(path, format!("{}\n", token.render()).as_bytes(), 0o600)?;
        return Ok(token);
    }
    let bytes: [u8; 16] = rand_bytes()?;
    let token = JoinToken {
        ca_hash: hash,
        secret: bytes.iter().map(|b| format!("{b:02x}")).collect(),
    };
    fsutil::write_atomic(path, format!("{}\n", token.render()).as_bytes(), 0o600)?;
    Ok(token)
}

fn rand_bytes<const N: usize>() -> Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::InvalidJoinToken("the system random source failed".into()))?;
    Ok(out)
}

/// A new key and a PEM CSR for the kubelet client certificate of `node`
/// (CN=system:node:NODE, O=system:nodes). Returns `(csr_pem, key_pem)`.
pub fn kubelet_client_csr(node: &str) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(Error::GenerateKey)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:nodes");
    dn.push(DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| Error::IssueCertificate {
            what: "kubelet client CSR".into(),
            reason: e.to_string(),
        })?;
    let pem = csr.pem().map_err(|e| Error::IssueCertificate {
        what: "kubelet client CSR".into(),
        reason: e.to_string(),
    })?;
    Ok((pem, key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn round_trips_and_pins_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let token = load_or_create(&path, CA).expect("created");
        let text = std::fs::read_to_string(&path).expect("written");
        assert!(text.starts_with("K10"), "{text}");
        assert_eq!(JoinToken::parse(&text).expect("parses"), token);
        assert!(token.pins(CA.as_bytes()));
        assert!(!token.pins(b"another CA"));
        assert!(token.matches(&text));
        assert!(!token.matches("K10nope"));
        assert_eq!(load_or_create(&path, CA).expect("reloaded"), token);
    }

    #[test]
    fn a_new_ca_keeps_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let old = load_or_create(&path, CA).expect("created");
        let new = load_or_create(&path, "other").expect("re-pinned");
        assert_eq!(new.secret, old.secret);
        assert_ne!(new.ca_hash, old.ca_hash);
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (text, why) in [
            ("", "K10"),
            ("K10abc::node:x", "64 hex"),
            (&format!("K10{}", "a".repeat(64)), "'::'"),
            (&format!("K10{}::admin:x", "a".repeat(64)), "node:<secret>"),
            (&format!("K10{}::node:", "a".repeat(64)), "empty"),
        ] {
            let err = JoinToken::parse(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn kubelet_csr_names_the_node() {
        let (csr, key) = kubelet_client_csr("n1").expect("csr");
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        assert!(key.contains("PRIVATE KEY"));
    }
}
