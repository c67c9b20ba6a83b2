//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can fail in this crate, named for the operation that failed.
///
/// The token variants (`Token*`) are what [`crate::tokens::TokenIssuer::verify`] returns for a
/// token that does not authenticate; their `Display` is upstream's message, safe to show to the
/// client. Every other variant is a server-side fault (bad files, bad configuration).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a PKI or key file failed. Check the data directory's permissions.
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing a file (certificate, key, kubeconfig) failed. Check the directory's permissions
    /// and free space.
    #[error("writing {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Generating a private key failed (the system random source is broken).
    #[error("generating a private key: {0}")]
    GenerateKey(rcgen::Error),
    /// A stored private key could not be parsed. Remove the file to have it regenerated (and
    /// everything it signed re-issued).
    #[error("parsing private key {what}: {reason}")]
    ParseKey { what: String, reason: String },
    /// A stored or presented certificate could not be parsed.
    #[error("parsing certificate {what}: {reason}")]
    ParseCertificate { what: String, reason: String },
    /// Building or signing a certificate failed.
    #[error("issuing certificate {what}: {reason}")]
    IssueCertificate { what: String, reason: String },
    /// A subject alternative name (from `--tls-san` or a CSR) is neither an IP address nor a
    /// valid DNS name.
    #[error("invalid subject alternative name {0:?}")]
    InvalidSubjectAltName(String),
    /// A join token is malformed (the message says how); copy it again from the server's
    /// `<data-dir>/token`.
    #[error("invalid join token: {0}")]
    InvalidJoinToken(String),
    /// A certificate signing request could not be parsed or uses something unsupported.
    #[error("parsing certificate signing request: {0}")]
    ParseCsr(String),
    /// A certificate signing request's signature does not match its public key.
    #[error("certificate signing request signature is invalid")]
    CsrSignatureInvalid,
    /// Building a rustls configuration failed (bad certificate or key for TLS).
    #[error("building TLS configuration: {0}")]
    BuildTlsConfig(String),
    /// A client certificate has no common name, so it names no user.
    #[error("client certificate has no common name")]
    ClientCertificateWithoutCommonName,
    /// The service-account signing key is not an ECDSA P-256 key or could not be loaded.
    #[error("loading service account signing key: {0}")]
    LoadSigningKey(String),
    /// Signing a token failed.
    #[error("signing service account token: {0}")]
    SignToken(String),
    /// The token request itself is invalid (for example a non-positive expiration).
    #[error("invalid token request: {0}")]
    InvalidTokenRequest(String),
    /// The bearer token is not a JWT, or its claims are not a service-account token's.
    #[error("token could not be parsed: {0}")]
    TokenMalformed(String),
    /// The token was issued by another issuer. Upstream treats this as "not a service-account
    /// token": the caller should try its other authenticators.
    #[error("token issuer {0:?} is invalid")]
    TokenWrongIssuer(String),
    /// The token's signature does not verify with the service-account key.
    #[error("token signature is invalid")]
    TokenSignatureInvalid,
    /// The token has expired (beyond the allowed clock skew).
    #[error("service account token has expired")]
    TokenExpired,
    /// The token's `nbf` is in the future (beyond the allowed clock skew).
    #[error("service account token is not valid yet")]
    TokenNotYetValid,
    /// The token's `iat` is in the future (beyond the allowed clock skew).
    #[error("service account token is issued in the future")]
    TokenIssuedInFuture,
    /// None of the token's audiences is one the server accepts.
    #[error("token audiences {token} is invalid for the target audiences {expected}")]
    TokenAudienceMismatch { token: String, expected: String },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
