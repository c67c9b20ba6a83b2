//! Writing kubeconfig files the way k3s writes `k3s.yaml`: one cluster, one user and one
//! context, credentials embedded as base64 `*-data` fields, written atomically with mode 0600.

use std::path::Path;

use base64::Engine as _;

use crate::error::Result;
use crate::fsutil::{self, PRIVATE_MODE};

/// What goes into a kubeconfig. Names default to k3s's `default`.
#[derive(Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    pub cluster_name: String,
    pub server_url: String,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub user: String,
}

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("cluster_name", &self.cluster_name)
            .field("server_url", &self.server_url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// A kubeconfig with cluster, user and context all named `default`.
    pub fn new(
        server_url: impl Into<String>,
        ca_pem: impl Into<String>,
        client_cert_pem: impl Into<String>,
        client_key_pem: impl Into<String>,
    ) -> Kubeconfig {
        Kubeconfig {
            cluster_name: "default".into(),
            server_url: server_url.into(),
            ca_pem: ca_pem.into(),
            client_cert_pem: client_cert_pem.into(),
            client_key_pem: client_key_pem.into(),
            user: "default".into(),
        }
    }

    /// The YAML text. The context is named after the cluster.
    pub fn to_yaml(&self) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let cluster = scalar(&self.cluster_name);
        let user = scalar(&self.user);
        format!(
            "apiVersion: v1\n\
             clusters:\n\
             - cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\n\
             contexts:\n\
             - context:\n    cluster: {cluster}\n    user: {user}\n  name: {cluster}\n\
             current-context: {cluster}\n\
             kind: Config\n\
             preferences: {{}}\n\
             users:\n\
             - name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = b64(&self.ca_pem),
            server = scalar(&self.server_url),
            cert = b64(&self.client_cert_pem),
            key = b64(&self.client_key_pem),
        )
    }
}

/// Writes `config` to `path` atomically (temporary file and rename) with mode 0600.
pub fn write_kubeconfig(path: &Path, config: &Kubeconfig) -> Result<()> {
    fsutil::write_atomic(path, config.to_yaml().as_bytes(), PRIVATE_MODE)
}

/// A YAML scalar: plain when that is unambiguous, else double-quoted (JSON string syntax is
/// valid YAML).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@[]".contains(c))
        && !s.contains(": ")
        && !matches!(s, "true" | "false" | "null" | "yes" | "no" | "on" | "off")
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else {
        serde_json::Value::String(s.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn sample() -> Kubeconfig {
        Kubeconfig::new("https://127.0.0.1:6443", "CA\n", "CERT\n", "KEY\n")
    }

    #[test]
    fn yaml_has_k3s_shape() {
        let yaml = sample().to_yaml();
        assert!(yaml.contains("    server: https://127.0.0.1:6443\n"));
        assert!(yaml.contains("certificate-authority-data: Q0EK\n"));
        assert!(yaml.contains("current-context: default\n"));
        assert!(yaml.contains("    client-key-data: S0VZCg==\n"));
    }

    #[test]
    fn odd_names_are_quoted() {
        assert_eq!(scalar("default"), "default");
        assert_eq!(scalar("https://[::1]:6443"), "https://[::1]:6443");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("123"), "\"123\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("#x"), "\"#x\"");
    }

    /// kubectl reads the file back (skipped where kubectl is not installed).
    #[test]
    fn kubectl_parses_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        let mut config = sample();
        config.cluster_name = "my cluster".into();
        write_kubeconfig(&path, &config).unwrap();
        let output = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path)
            .args(["config", "view", "--raw", "-o"])
            .arg("jsonpath={.current-context} {.clusters[0].cluster.server} {.users[0].user.client-key-data}")
            .output();
        let Ok(output) = output else {
            eprintln!("kubectl not installed; skipping");
            return;
        };
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "my cluster https://127.0.0.1:6443 S0VZCg=="
        );
    }

    #[test]
    fn written_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        write_kubeconfig(&path, &sample()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), sample().to_yaml());
    }
}
