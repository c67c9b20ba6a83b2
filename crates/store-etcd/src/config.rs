//! Where etcd is and how to reach it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::error::Error;

/// How long establishing a connection to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keep-alive: a dead connection is noticed within interval + timeout.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where etcd is and how to reach it (upstream's `--etcd-servers`, `--etcd-cafile`,
/// `--etcd-certfile`, `--etcd-keyfile`, `--etcd-prefix`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, all `http://` or all `https://`.
    pub endpoints: Vec<String>,
    /// The CA that signed etcd's serving certificate; required with `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for etcd's `--client-cert-auth`; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Prepended to every key, so several clusters can share one etcd. None by default.
    pub prefix: Option<String>,
}

impl EtcdConfig {
    /// A plain configuration for the given endpoints.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Checks the configuration and builds the client options (reading the TLS files).
    pub(crate) fn connect_options(&self) -> Result<ConnectOptions, Error> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true);
        match self.scheme()? {
            Scheme::Http => {
                self.reject_tls_files()?;
                Ok(options)
            }
            Scheme::Https => Ok(options.with_tls(self.tls_options()?)),
        }
    }

    fn scheme(&self) -> Result<Scheme, Error> {
        let mut schemes = self.endpoints.iter().map(|endpoint| Scheme::of(endpoint));
        let first = match schemes.next() {
            Some(first) => first?,
            None => return Err(Error::InvalidConfig("no etcd endpoint given".into())),
        };
        for scheme in schemes {
            if scheme? != first {
                return Err(Error::InvalidConfig(
                    "etcd endpoints mix http:// and https:// URLs".into(),
                ));
            }
        }
        Ok(first)
    }

    fn reject_tls_files(&self) -> Result<(), Error> {
        if self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some() {
            return Err(Error::InvalidConfig(
                "TLS files are given but the etcd endpoints are http:// URLs; use https://".into(),
            ));
        }
        Ok(())
    }

    fn tls_options(&self) -> Result<TlsOptions, Error> {
        let Some(ca_file) = &self.ca_file else {
            return Err(Error::InvalidConfig(
                "https:// etcd endpoints need a CA file (etcd-cafile)".into(),
            ));
        };
        let ca = Certificate::from_pem(read_file("CA file", ca_file)?);
        let tls = TlsOptions::new().ca_certificate(ca);
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(tls),
            (Some(cert), Some(key)) => {
                let cert = read_file("client certificate file", cert)?;
                let key = read_file("client key file", key)?;
                Ok(tls.identity(Identity::from_pem(cert, key)))
            }
            _ => Err(Error::InvalidConfig(
                "an etcd client certificate needs both a certificate file and a key file".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn of(endpoint: &str) -> Result<Scheme, Error> {
        if endpoint.starts_with("http://") {
            Ok(Scheme::Http)
        } else if endpoint.starts_with("https://") {
            Ok(Scheme::Https)
        } else {
            Err(Error::InvalidConfig(format!(
                "etcd endpoint {endpoint:?} is not an http:// or https:// URL"
            )))
        }
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadTlsFile {
        what,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn https(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> EtcdConfig {
        EtcdConfig {
            ca_file: ca.map(PathBuf::from),
            cert_file: cert.map(PathBuf::from),
            key_file: key.map(PathBuf::from),
            ..EtcdConfig::new(["https://127.0.0.1:2379"])
        }
    }

    fn error_of(config: &EtcdConfig) -> String {
        match config.connect_options() {
            Ok(_) => String::from("no error"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn endpoints_must_be_given_and_be_urls() {
        assert!(error_of(&EtcdConfig::default()).contains("no etcd endpoint"));
        assert!(error_of(&EtcdConfig::new(["127.0.0.1:2379"])).contains("not an http://"));
        let mixed = EtcdConfig::new(["http://a:2379", "https://b:2379"]);
        assert!(error_of(&mixed).contains("mix http:// and https://"));
        assert!(
            EtcdConfig::new(["http://a:2379", "http://b:2379"])
                .connect_options()
                .is_ok()
        );
    }

    #[test]
    fn a_missing_tls_file_is_named() {
        let err = error_of(&https(Some("/nonexistent/ca.crt"), None, None));
        assert!(err.contains("CA file"), "{err}");
        assert!(err.contains("/nonexistent/ca.crt"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn tls_needs_a_ca_and_a_whole_client_identity() {
        assert!(error_of(&https(None, None, None)).contains("need a CA file"));
        let dir = tempfile::tempdir().ok();
        let ca = dir.as_ref().map(|dir| dir.path().join("ca.crt"));
        let ca = ca.filter(|ca| std::fs::write(ca, b"not checked here").is_ok());
        let ca = ca.as_deref().and_then(Path::to_str);
        assert!(ca.is_some());
        assert!(error_of(&https(ca, Some("/c.crt"), None)).contains("both a certificate"));
        assert_eq!(error_of(&https(ca, None, None)), "no error");
        let err = error_of(&https(ca, Some("/nonexistent/c.crt"), Some("/k.key")));
        assert!(
            err.contains("client certificate file \"/nonexistent/c.crt\""),
            "{err}"
        );
    }

    #[test]
    fn tls_files_with_plain_http_are_rejected() {
        let config = EtcdConfig {
            ca_file: Some("/ca.crt".into()),
            ..EtcdConfig::new(["http://a:2379"])
        };
        assert!(error_of(&config).contains("use https://"));
    }
}
