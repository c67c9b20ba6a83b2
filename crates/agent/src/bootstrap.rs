//! Joining a cluster, as k3s's agent and upstream's kubelet TLS bootstrap do:
//!
//! 1. fetch the server's CA from its unauthenticated `/cacerts` and trust it only if its hash
//!    matches the join token (so the agent trusts only that server);
//! 2. authenticated by the token (a bootstrap identity), create a CertificateSigningRequest for
//!    `CN=system:node:NAME, O=system:nodes` with the `kubernetes.io/kube-apiserver-client-kubelet`
//!    signer, which the server's approver and signer complete;
//! 3. write `<dir>/kubelet.kubeconfig` with the signed certificate and the new key.
//!
//! A kubeconfig from an earlier join is reused while its certificate is valid for the same
//! node and CA for more than a day, so re-joining with the same name and token just works.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8rs_auth::join::{JoinToken, kubelet_client_csr};
use k8rs_auth::kubeconfig::{Kubeconfig, write_kubeconfig};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::Error;

/// The signer of node client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// How long the agent waits for its certificate.
const CSR_TIMEOUT: Duration = Duration::from_secs(60);
/// A stored certificate is renewed when it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(24 * 3600);

/// Where and as whom to join.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// The API server, `https://HOST:PORT`.
    pub server: String,
    pub token: JoinToken,
    pub node_name: String,
    /// Where the kubeconfig is written (the agent's directory).
    pub dir: PathBuf,
}

/// The node's kubeconfig path, joining first when there is no usable one.
pub async fn bootstrap(config: &JoinConfig) -> Result<PathBuf, Error> {
    let path = config.dir.join("kubelet.kubeconfig");
    let ca = fetch_ca(&config.server).await?;
    if !config.token.pins(ca.as_bytes()) {
        return Err(Error::CaMismatch {
            url: config.server.clone(),
        });
    }
    if reusable(&path, &config.node_name, &ca) {
        tracing::info!(path = %path.display(), "reusing the node's client certificate");
        return Ok(path);
    }
    let (csr_pem, key_pem) = kubelet_client_csr(&config.node_name).map_err(Error::Token)?;
    let client = token_client(&config.server, &ca, &config.token)?;
    let cert_pem = request_certificate(client, &config.node_name, &csr_pem).await?;
    std::fs::create_dir_all(&config.dir).map_err(|source| Error::Write {
        path: config.dir.display().to_string(),
        source,
    })?;
    let kubeconfig = Kubeconfig::new(config.server.clone(), ca, cert_pem, key_pem);
    write_kubeconfig(&path, &kubeconfig).map_err(|e| Error::Write {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    tracing::info!(node = %config.node_name, path = %path.display(), "joined the cluster");
    Ok(path)
}

/// The server's CA, fetched without verification (it is verified against the token next).
async fn fetch_ca(server: &str) -> Result<String, Error> {
    let unreachable = |reason: String| Error::Unreachable {
        url: server.to_string(),
        reason,
    };
    let url: http::Uri = server
        .parse()
        .map_err(|e: http::uri::InvalidUri| unreachable(e.to_string()))?;
    let mut cfg = kube::Config::new(url);
    cfg.accept_invalid_certs = true;
    cfg.connect_timeout = Some(Duration::from_secs(10));
    cfg.read_timeout = Some(Duration::from_secs(10));
    let client = kube::Client::try_from(cfg).map_err(|e| unreachable(e.to_string()))?;
    let req = http::Request::get("/cacerts")
        .body(Vec::new())
        .map_err(|e| unreachable(e.to_string()))?;
    client
        .request_text(req)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

/// A client trusting only `ca` and authenticating with the join token.
fn token_client(server: &str, ca: &str, token: &JoinToken) -> Result<kube::Client, Error> {
    let bad = |reason: String| Error::Csr(reason);
    let url: http::Uri = server
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    let roots: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(ca.as_bytes())
        .filter_map(Result::ok)
        .map(|pem| pem.contents)
        .collect();
    if roots.is_empty() {
        return Err(bad("the server's /cacerts holds no certificate".into()));
    }
    let mut cfg = kube::Config::new(url);
    cfg.root_cert = Some(roots);
    cfg.auth_info.token = Some(token.render().into());
    cfg.connect_timeout = Some(Duration::from_secs(10));
    cfg.read_timeout = Some(Duration::from_secs(30));
    kube::Client::try_from(cfg).map_err(|e| bad(e.to_string()))
}

/// Creates the CSR and waits for its certificate.
async fn request_certificate(
    client: kube::Client,
    node: &str,
    csr_pem: &str,
) -> Result<String, Error> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: KUBELET_CLIENT_SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = csrs
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 401 => Error::TokenRefused,
            other => Error::Csr(other.to_string()),
        })?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(%name, %node, "requested the node's client certificate");
    let deadline = tokio::time::Instant::now() + CSR_TIMEOUT;
    loop {
        let current = csrs
            .get(&name)
            .await
            .map_err(|e| Error::Csr(e.to_string()))?;
        let status = current.status.unwrap_or_default();
        if let Some(denied) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            return Err(Error::CsrDenied {
                name,
                reason: denied.message.clone().unwrap_or_default(),
            });
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return String::from_utf8(cert.0).map_err(|e| Error::Csr(e.to_string()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::CsrTimeout {
                name,
                secs: CSR_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cluster CA (PEM) of the kubeconfig [`bootstrap`] wrote at `path`.
pub fn cluster_ca(path: &Path) -> Option<String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).ok()?;
    let data = kubeconfig
        .clusters
        .first()?
        .cluster
        .as_ref()?
        .certificate_authority_data
        .clone()?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    String::from_utf8(pem).ok()
}

/// Whether the kubeconfig at `path` holds a certificate for `node`, issued under `ca`, valid
/// for at least another day.
fn reusable(path: &Path, node: &str, ca: &str) -> bool {
    let Ok(kubeconfig) = kube::config::Kubeconfig::read_from(path) else {
        return false;
    };
    let cluster_ca = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
    if cluster_ca.as_deref() != Some(ca.as_bytes()) {
        return false;
    }
    let cert = kubeconfig
        .auth_infos
        .first()
        .and_then(|a| a.auth_info.as_ref())
        .and_then(|a| a.client_certificate_data.clone())
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
    cert.is_some_and(|pem| certificate_fits(&pem, node))
}

fn certificate_fits(pem: &[u8], node: &str) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let cn_ok = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn == format!("system:node:{node}"));
    let left = cert.validity().time_to_expiration();
    cn_ok && left.is_some_and(|d| d.whole_seconds() > RENEW_BEFORE.as_secs() as i64)
}
