//! Who a request comes from: the user a client certificate names, or the anonymous user.
//!
//! Mirrors upstream's x509 authenticator: the certificate's common name is the user name, each
//! organization a group, and `system:authenticated` is added as upstream's authenticator chain
//! does for every authenticated user. Chain verification against the cluster CA is rustls's job
//! (see [`crate::tls`]); this module only maps an already verified certificate.

use std::collections::BTreeMap;

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use crate::error::{Error, Result};

/// The group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of the anonymous user.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The anonymous user's name.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The `extra` key naming the credential a request was authenticated with.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// An authenticated (or anonymous) user, as upstream's `user.Info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user: `system:anonymous` in group `system:unauthenticated`.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS_USER.to_owned(),
            groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
            ..UserInfo::default()
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Appends `system:authenticated` unless already there.
    pub(crate) fn add_authenticated_group(&mut self) {
        if !self.in_group(AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.to_owned());
        }
    }
}

/// The user a DER client certificate names: common name as user, organizations as groups, plus
/// `system:authenticated`, and the credential id `X509SHA256=<hex sha256 of the DER>`.
pub fn user_from_client_cert(der: &[u8]) -> Result<UserInfo> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::ParseCertificate {
        what: "client certificate".into(),
        reason: e.to_string(),
    })?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or(Error::ClientCertificateWithoutCommonName)?
        .to_owned();
    let mut user = UserInfo {
        name,
        groups: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_owned)
            .collect(),
        ..UserInfo::default()
    };
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
    user.extra.insert(
        CREDENTIAL_ID_KEY.to_owned(),
        vec![format!("X509SHA256={}", hex(fingerprint.as_ref()))],
    );
    user.add_authenticated_group();
    Ok(user)
}

/// The user of a TLS connection's verified peer chain (as `ServerConnection::peer_certificates`
/// returns it): `Ok(None)` when the client sent no certificate.
pub fn user_from_peer_certificates(
    chain: Option<&[CertificateDer<'_>]>,
) -> Result<Option<UserInfo>> {
    match chain.and_then(|c| c.first()) {
        Some(leaf) => user_from_client_cert(leaf.as_ref()).map(Some),
        None => Ok(None),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClusterPki, PkiOptions};

    #[test]
    fn client_cert_names_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PkiOptions {
            host_ips: Some(vec![]),
            ..PkiOptions::default()
        };
        let pki = ClusterPki::load_or_create(dir.path(), &opts).unwrap();
        let der = crate::pki::pem_certificates(&pki.admin_client().cert_pem, "admin")
            .unwrap()
            .remove(0);
        let user = user_from_client_cert(&der).unwrap();
        assert_eq!(user.name, "system:admin");
        assert_eq!(user.uid, "");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
        let id = &user.extra[CREDENTIAL_ID_KEY][0];
        assert!(id.starts_with("X509SHA256=") && id.len() == 11 + 64, "{id}");

        let chain = [der];
        let same = user_from_peer_certificates(Some(&chain)).unwrap();
        assert_eq!(same, Some(user));
        assert_eq!(user_from_peer_certificates(None).unwrap(), None);
    }

    #[test]
    fn cert_without_common_name_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PkiOptions {
            host_ips: Some(vec![]),
            ..PkiOptions::default()
        };
        let pki = ClusterPki::load_or_create(dir.path(), &opts).unwrap();
        let pair = pki
            .issue_client_cert("", &["g".into()], std::time::Duration::from_secs(60))
            .unwrap();
        let der = crate::pki::pem_certificates(&pair.cert_pem, "x")
            .unwrap()
            .remove(0);
        assert!(matches!(
            user_from_client_cert(&der),
            Err(Error::ClientCertificateWithoutCommonName)
        ));
        assert!(user_from_client_cert(b"junk").is_err());
    }

    #[test]
    fn anonymous_user() {
        let anon = UserInfo::anonymous();
        assert_eq!(anon.name, "system:anonymous");
        assert_eq!(anon.groups, ["system:unauthenticated"]);
        assert!(anon.extra.is_empty());
    }
}
