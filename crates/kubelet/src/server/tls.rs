//! The server's TLS: a serving certificate from a CertificateSigningRequest for the
//! `kubernetes.io/kubelet-serving` signer (CN=system:node:NAME, O=system:nodes, SANs the node
//! IP and name), kept in `<data_dir>/pki/kubelet-server-current.pem` and renewed at 80% of its
//! lifetime; until one is issued (or when the request is not signed in time) a self-signed
//! certificate. Client certificates are verified against the cluster CA when one is given;
//! clients without one are let in as anonymous and refused by the handler.
//!
//! The certificates themselves are [`k8rs_auth::serving`]'s; this module keeps the Kubernetes
//! side: the CertificateSigningRequest, the kept file, the renewal loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8rs_auth::CertAndKey;
use k8rs_auth::serving::{self, NodeServingNames, ServingCert};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

use crate::KubeletConfig;

/// Between two tries to get a certificate issued.
const RETRY: Duration = Duration::from_secs(60);

/// A TLS setup failure.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key could not be made or loaded, or the TLS configuration built.
    #[error(transparent)]
    Certificate(#[from] k8rs_auth::Error),
    #[error("the certificate signing request failed: {0}")]
    Request(String),
}

/// The names the certificate is for: the node's IP and its name (its Hostname address).
pub fn names(config: &KubeletConfig) -> NodeServingNames {
    NodeServingNames {
        node: config.node_name.clone(),
        ips: vec![config.node_ip],
        dns_names: vec![config.node_name.clone()],
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Where the issued certificate and key are kept.
pub fn current_path(config: &KubeletConfig) -> PathBuf {
    config
        .data_dir
        .join("pki")
        .join("kubelet-server-current.pem")
}

/// The kept certificate if it is still valid.
pub fn load_current(config: &KubeletConfig) -> Option<CertAndKey> {
    let text = std::fs::read_to_string(current_path(config)).ok()?;
    let key_start = text.find("-----BEGIN PRIVATE KEY-----")?;
    let (cert, key) = (text[..key_start].to_string(), text[key_start..].to_string());
    let (_, to) = serving::validity(&cert)?;
    let fits = to > now_secs() && serving::names_ip(&cert, config.node_ip);
    fits.then_some(CertAndKey {
        cert_pem: cert,
        key_pem: key,
    })
}

fn save_current(config: &KubeletConfig, pem: &CertAndKey) {
    let path = current_path(config);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, format!("{}{}", pem.cert_pem, pem.key_pem))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "saving the kubelet serving certificate failed");
    }
}

/// Asks the API server for a serving certificate and waits up to `timeout` for it.
pub async fn request(
    client: &kube::Client,
    config: &KubeletConfig,
    timeout: Duration,
) -> Result<CertAndKey, TlsError> {
    let (csr_pem, key_pem) = names(config).csr()?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: serving::SIGNER.into(),
            usages: Some(serving::USAGES.map(String::from).to_vec()),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|e| TlsError::Request(e.to_string()))?;
    let name = created.metadata.name.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(Some(current)) = api.get_opt(&name).await else {
            continue;
        };
        let status = current.status.unwrap_or_default();
        let conds = status.conditions.unwrap_or_default();
        if let Some(c) = conds
            .iter()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            let why = c.message.clone().unwrap_or_default();
            return Err(TlsError::Request(format!("{name} {}: {why}", c.type_)));
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert_pem =
                String::from_utf8(cert.0).map_err(|e| TlsError::Request(e.to_string()))?;
            return Ok(CertAndKey { cert_pem, key_pem });
        }
    }
    Err(TlsError::Request(format!(
        "{name} was not signed within {}s",
        timeout.as_secs()
    )))
}

/// Waits until the Node is registered with an address: the approver checks the requested
/// names against it.
async fn wait_for_node(client: &kube::Client, name: &str, shutdown: &CancellationToken) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    loop {
        if let Ok(Some(node)) = nodes.get_opt(name).await {
            let addrs = node.status.and_then(|s| s.addresses).unwrap_or_default();
            if addrs.iter().any(|a| a.type_ == "InternalIP") {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Keeps `cert` presenting an issued certificate: requests one, then renews it at 80% of
/// its lifetime, until `shutdown`.
pub async fn rotate(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    cert: Arc<ServingCert>,
    mut have: Option<CertAndKey>,
    shutdown: CancellationToken,
) {
    wait_for_node(&client, &config.node_name, &shutdown).await;
    loop {
        let wait = have
            .as_ref()
            .and_then(|p| serving::renewal_due_in(&p.cert_pem, now_secs()))
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let asked = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request(&client, &config, config.serving_csr_timeout) => r,
        };
        let presented = asked.and_then(|pem| {
            cert.set(&pem)?;
            Ok(pem)
        });
        match presented {
            Ok(pem) => {
                tracing::info!(
                    "kubelet server: serving with a certificate issued by the cluster CA"
                );
                save_current(&config, &pem);
                have = Some(pem);
            }
            Err(e) => {
                if have.is_none() {
                    tracing::warn!(error = %e, "kubelet server: no serving certificate issued; serving with a self-signed certificate");
                } else {
                    tracing::warn!(error = %e, "kubelet server: renewing the serving certificate failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}
