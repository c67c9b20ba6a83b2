//! TLS to etcd: a CA-verified server, client certificates, and clear errors when they are wrong.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use k8rs_store::Store;
use k8rs_store_etcd::testing::{EtcdProcess, ServerTls};
use k8rs_store_etcd::{EtcdConfig, EtcdStore};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA and the PEM files it signed, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        std::fs::write(
            dir.path().join("ca.crt"),
            ca_params.self_signed(&ca_key)?.pem(),
        )?;
        let ca = Issuer::new(ca_params, ca_key);
        for name in ["server", "client"] {
            let key = KeyPair::generate()?;
            let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
            std::fs::write(
                dir.path().join(format!("{name}.crt")),
                params.signed_by(&key, &ca)?.pem(),
            )?;
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())?;
        }
        let other_key = KeyPair::generate()?;
        let other = CertificateParams::new(Vec::<String>::new())?.self_signed(&other_key)?;
        std::fs::write(dir.path().join("other-ca.crt"), other.pem())?;
        Ok(Pki { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self) -> ServerTls {
        ServerTls {
            cert_file: self.path("server.crt"),
            key_file: self.path("server.key"),
            client_ca_file: Some(self.path("ca.crt")),
        }
    }

    fn client(&self, etcd: &EtcdProcess, ca: &str, with_cert: bool) -> EtcdConfig {
        EtcdConfig {
            ca_file: Some(self.path(ca)),
            cert_file: with_cert.then(|| self.path("client.crt")),
            key_file: with_cert.then(|| self.path("client.key")),
            ..etcd.config()
        }
    }
}

fn start(pki: &Pki) -> EtcdProcess {
    EtcdProcess::try_start(Some(&pki.server())).unwrap_or_else(|e| panic!("{e}"))
}

async fn connect_error(config: EtcdConfig) -> String {
    let connected = tokio::time::timeout(Duration::from_secs(20), EtcdStore::connect(config)).await;
    match connected {
        Ok(Ok(_)) => panic!("connected with a bad TLS configuration"),
        Ok(Err(err)) => format!("{err}: {:?}", std::error::Error::source(&err)),
        Err(_) => panic!("connect hung"),
    }
}

#[tokio::test]
async fn a_client_with_the_right_ca_and_certificate_works() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let etcd = start(&pki);
    assert!(etcd.endpoint().starts_with("https://"));
    let store = EtcdStore::connect(pki.client(&etcd, "ca.crt", true)).await?;
    let kv = store.create("/tls", Bytes::from_static(b"ok")).await?;
    assert_eq!(store.get("/tls").await?, Some(kv));
    Ok(())
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_client_certificate_fails_to_connect() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let etcd = start(&pki);
    let err = connect_error(pki.client(&etcd, "other-ca.crt", true)).await;
    assert!(err.contains("cannot connect to etcd"), "{err}");
    let err = connect_error(pki.client(&etcd, "ca.crt", false)).await;
    assert!(err.contains("cannot connect to etcd"), "{err}");
    Ok(())
}

#[tokio::test]
async fn missing_tls_files_are_named() {
    let config = EtcdConfig {
        ca_file: Some(Path::new("/nonexistent/etcd-ca.crt").to_owned()),
        ..EtcdConfig::new(["https://127.0.0.1:1"])
    };
    let err = EtcdStore::connect(config)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("/nonexistent/etcd-ca.crt"), "{err}");
    assert!(err.contains("CA file"), "{err}");
}
