//! Cluster identity for k8rs: the PKI (cluster CA, API serving certificate, admin and API server
//! client certificates, service-account signing key), kubeconfig files, the API server's rustls
//! configuration, mapping client certificates to users, and bound service-account tokens.
//!
//! - [`pki`]: [`ClusterPki::load_or_create`] generates everything on first start under one
//!   directory (`<data-dir>/tls/`) and reuses it afterwards, re-issuing only stale leaves; it
//!   also issues client certificates and signs CSRs.
//! - [`kubeconfig`]: writes `k3s.yaml`-style kubeconfigs.
//! - [`tls`]: the server configuration (client certificates optional, verified against the CA)
//!   and client configurations for in-process use.
//! - [`authn`]: [`UserInfo`], the user of a client certificate, and the anonymous user.
//! - [`join`]: k3s-style join tokens that pin the CA, and the kubelet's client CSR.
//! - [`serving`]: kubelet serving certificates (CSR, self-signed fallback, a swappable
//!   certificate for rustls servers, renewal at 80% of the lifetime).
//! - [`tokens`]: [`TokenIssuer`] issues and verifies service-account JWTs as upstream's
//!   TokenRequest does, and publishes the key as JWKS.
//!
//! This crate does cryptography and files only: it must not depend on the API server, the
//! store, or any HTTP framework. The API server depends on it, and does the checks that need
//! the store (for example that a token's service account and pod still exist).

pub mod authn;
mod error;
mod fsutil;
pub mod join;
pub mod kubeconfig;
pub mod pki;
pub mod serving;
pub mod tls;
pub mod tokens;

pub use authn::UserInfo;
pub use error::{Error, Result};
pub use kubeconfig::{Kubeconfig, write_kubeconfig};
pub use pki::{CertAndKey, CertKind, ClusterPki, PkiOptions};
pub use tokens::{TokenIssuer, TokenRequestClaims, VerifiedToken};
