use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use super::inspect::pem_encode;
use super::*;

fn opts() -> PkiOptions {
    PkiOptions {
        host_ips: Some(vec!["192.0.2.7".parse().unwrap()]),
        ..PkiOptions::default()
    }
}

fn info(pem: &str) -> inspect::CertInfo {
    let der = pem_first_certificate(pem, "test").unwrap();
    inspect(&der, "test").unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_start_creates_everything() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();

    let ca = info(pki.ca_cert_pem());
    assert!(ca.common_name.unwrap().starts_with("k8rs-server-ca@"));
    for key in [
        files::CA_KEY,
        files::SERVING_KEY,
        files::ADMIN_KEY,
        files::APISERVER_CLIENT_KEY,
        files::SERVICE_ACCOUNT_KEY,
    ] {
        assert_eq!(mode(&dir.path().join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&dir.path().join(files::CA_CERT)), 0o644);

    let serving = info(&pki.serving().cert_pem);
    for san in [
        "ip:127.0.0.1",
        "ip:::1",
        "ip:10.43.0.1",
        "ip:192.0.2.7",
        "dns:localhost",
        "dns:kubernetes",
        "dns:kubernetes.default",
        "dns:kubernetes.default.svc",
        "dns:kubernetes.default.svc.cluster.local",
    ] {
        assert!(serving.sans.contains(san), "missing {san}");
    }

    let admin = info(&pki.admin_client().cert_pem);
    assert_eq!(admin.common_name.as_deref(), Some("system:admin"));
    assert_eq!(admin.organizations, ["system:masters"]);
    let own = info(&pki.apiserver_client().cert_pem);
    assert_eq!(own.common_name.as_deref(), Some("system:apiserver"));
    assert_eq!(own.organizations, ["system:masters"]);

    for pair in [pki.serving(), pki.admin_client(), pki.apiserver_client()] {
        let der = pem_first_certificate(&pair.cert_pem, "leaf").unwrap();
        assert!(is_signed_by(&der, pki.ca_cert_der()));
    }
    assert!(pki.service_account_public_key_pem().contains("PUBLIC KEY"));
}

#[test]
fn restart_reuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    let second = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
    assert_eq!(first.serving(), second.serving());
    assert_eq!(first.admin_client(), second.admin_client());
    assert_eq!(first.apiserver_client(), second.apiserver_client());
    assert_eq!(
        first.service_account_key_pem(),
        second.service_account_key_pem()
    );
}

#[test]
fn new_san_reissues_only_the_serving_cert() {
    let dir = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    let wider = PkiOptions {
        extra_sans: vec!["API.Example.com".into(), "203.0.113.9".into()],
        ..opts()
    };
    let second = ClusterPki::load_or_create(dir.path(), &wider).unwrap();
    assert_ne!(first.serving(), second.serving());
    assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
    assert_eq!(first.admin_client(), second.admin_client());
    let serving = info(&second.serving().cert_pem);
    assert!(serving.sans.contains("dns:api.example.com"));
    assert!(serving.sans.contains("ip:203.0.113.9"));

    let third = ClusterPki::load_or_create(dir.path(), &wider).unwrap();
    assert_eq!(second.serving(), third.serving());
}

#[test]
fn new_host_ip_reissues_the_serving_cert() {
    let dir = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    let moved = PkiOptions {
        host_ips: Some(vec!["198.51.100.4".parse().unwrap()]),
        ..opts()
    };
    let second = ClusterPki::load_or_create(dir.path(), &moved).unwrap();
    assert_ne!(first.serving(), second.serving());
    assert!(
        info(&second.serving().cert_pem)
            .sans
            .contains("ip:198.51.100.4")
    );
}

#[test]
fn leaves_near_expiry_are_renewed_but_not_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    let later = SystemTime::now() + Duration::from_secs(300 * 24 * 3600);
    let second = ClusterPki::load_or_create_at(dir.path(), &opts(), later).unwrap();
    assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
    assert_ne!(first.serving(), second.serving());
    assert_ne!(first.admin_client(), second.admin_client());
}

#[test]
fn deleted_or_corrupt_leaf_is_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    fs::remove_file(dir.path().join(files::ADMIN_CERT)).unwrap();
    fs::write(dir.path().join(files::SERVING_CERT), "garbage").unwrap();
    let second = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    assert_ne!(first.admin_client(), second.admin_client());
    assert_ne!(first.serving(), second.serving());
    assert_eq!(first.apiserver_client(), second.apiserver_client());
}

#[test]
fn half_a_ca_is_an_error_not_a_new_ca() {
    let dir = tempfile::tempdir().unwrap();
    ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    fs::remove_file(dir.path().join(files::CA_KEY)).unwrap();
    let err = ClusterPki::load_or_create(dir.path(), &opts()).unwrap_err();
    assert!(matches!(err, Error::ParseKey { .. }), "{err}");
}

#[test]
fn invalid_extra_san_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bad = PkiOptions {
        extra_sans: vec!["not a name".into()],
        ..opts()
    };
    let err = ClusterPki::load_or_create(dir.path(), &bad).unwrap_err();
    assert!(matches!(err, Error::InvalidSubjectAltName(_)), "{err}");
    assert!(valid_dns_name("*.apps.example.com").is_ok());
    assert!(valid_dns_name("-bad.example.com").is_err());
}

#[test]
fn serving_sans_have_no_duplicates() {
    let o = PkiOptions {
        extra_sans: vec!["127.0.0.1".into(), "kubernetes".into()],
        host_ips: Some(vec!["10.43.0.1".parse().unwrap()]),
        ..PkiOptions::default()
    };
    let sans = serving_sans(&o).unwrap();
    let keys: std::collections::BTreeSet<_> = sans.iter().map(san_key).collect();
    assert_eq!(keys.len(), sans.len());
}

#[test]
fn client_cert_carries_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    let orgs = vec!["dev".to_string(), "ops".to_string(), "qa".to_string()];
    let pair = pki
        .issue_client_cert("bob", &orgs, Duration::from_secs(3600))
        .unwrap();
    let bob = info(&pair.cert_pem);
    assert_eq!(bob.common_name.as_deref(), Some("bob"));
    assert_eq!(bob.organizations, orgs);
    assert_eq!(
        KeyPair::from_pem(&pair.key_pem).unwrap().der_bytes(),
        bob.public_key
    );
    let der = pem_first_certificate(&pair.cert_pem, "bob").unwrap();
    assert!(is_signed_by(&der, pki.ca_cert_der()));
}

fn node_csr() -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["node1.example".to_string(), "192.0.2.10".to_string()])
            .unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    dn.push(rcgen::DnType::CommonName, "system:node:node1");
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key)
}

#[test]
fn sign_csr_copies_subject_and_sans() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    let (csr, key) = node_csr();
    let cert = pki
        .sign_csr(csr.as_bytes(), CertKind::Serving, Duration::from_secs(3600))
        .unwrap();
    let node = info(&cert);
    assert_eq!(node.common_name.as_deref(), Some("system:node:node1"));
    assert_eq!(node.organizations, ["system:nodes"]);
    assert!(node.sans.contains("dns:node1.example"));
    assert!(node.sans.contains("ip:192.0.2.10"));
    assert_eq!(node.public_key, key.der_bytes());
    let der = pem_first_certificate(&cert, "node").unwrap();
    assert!(is_signed_by(&der, pki.ca_cert_der()));
}

#[test]
fn sign_csr_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(dir.path(), &opts()).unwrap();
    let day = Duration::from_secs(86400);
    let err = pki
        .sign_csr(b"not a csr", CertKind::Client, day)
        .unwrap_err();
    assert!(matches!(err, Error::ParseCsr(_)), "{err}");

    // Flip one bit of the signed content: the signature no longer verifies.
    let (csr, _) = node_csr();
    let der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
    let mut bytes = der.as_ref().to_vec();
    let at = bytes
        .windows(5)
        .position(|w| w == b"node1")
        .expect("name in CSR");
    bytes[at] ^= 0x01;
    let tampered = pem_encode("CERTIFICATE REQUEST", &bytes);
    let err = pki
        .sign_csr(tampered.as_bytes(), CertKind::Client, day)
        .unwrap_err();
    assert!(matches!(err, Error::CsrSignatureInvalid), "{err}");
}

#[test]
fn cluster_pki_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ClusterPki>();
}

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;
