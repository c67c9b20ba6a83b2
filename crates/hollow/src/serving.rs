//! The metrics endpoint's serving certificate. The API server verifies kubelet serving
//! certificates against the cluster CA and for the address it dials, so the endpoint presents
//! one the cluster issued: either given by the caller ([`MetricsTls::Provided`], e.g. signed
//! with the cluster CA by an in-process test, see [`serving_request`]) or requested as a real
//! kubelet does, through a `kubernetes.io/kubelet-serving` CertificateSigningRequest
//! ([`MetricsTls::Csr`]) that the cluster's signer signs; until it is issued a self-signed
//! certificate is served (and refused by the API server).
//!
//! The certificates themselves (key, CSR, self-signed, the swappable [`ServingCert`], renewal
//! at 80% of the lifetime) are [`k8rs_auth::serving`]'s; this module keeps the Kubernetes side.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use k8rs_auth::CertAndKey;
use k8rs_auth::serving::{self as certs, NodeServingNames, ServingCert};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How long one request may wait to be signed.
const SIGN_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two tries to get a certificate issued.
const RETRY: Duration = Duration::from_secs(30);

/// Where the metrics endpoint's serving certificate comes from.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum MetricsTls {
    /// A `kubernetes.io/kubelet-serving` CSR for the first node (CN `system:node:NAME`,
    /// O `system:nodes`, the endpoint's address as IP SAN), approved by this process's client
    /// when it may (an admin kubeconfig) or by whoever approves CSRs, signed by the cluster's
    /// signer, and renewed at 80% of its lifetime.
    #[default]
    Csr,
    /// This certificate (chain) and key, PEM; it must name the endpoint's address.
    Provided { cert_pem: String, key_pem: String },
}

impl std::fmt::Debug for MetricsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsTls::Csr => f.write_str("Csr"),
            MetricsTls::Provided { .. } => f.write_str("Provided { .. }"),
        }
    }
}

/// The names of the endpoint's certificate: `node`'s, at `address` (an IP SAN only: the
/// approver checks it against the node's addresses).
fn names(node: &str, address: Ipv4Addr) -> NodeServingNames {
    NodeServingNames {
        node: node.to_string(),
        ips: vec![IpAddr::V4(address)],
        dns_names: Vec::new(),
    }
}

/// A new key and a CSR (both PEM) for a serving certificate of `node` at `address`: sign the
/// CSR with the cluster CA (as `kubelet-serving` would) to make a [`MetricsTls::Provided`].
pub fn serving_request(node: &str, address: Ipv4Addr) -> Result<(String, String), String> {
    names(node, address).csr().map_err(|e| e.to_string())
}

/// A self-signed serving certificate for `node` at `address`, served until one is issued.
pub fn self_signed(node: &str, address: Ipv4Addr) -> Result<CertAndKey, String> {
    names(node, address)
        .self_signed()
        .map_err(|e| e.to_string())
}

fn csr_object(csr_pem: String) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-hollow-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: certs::SIGNER.into(),
            usages: Some(certs::USAGES.map(String::from).to_vec()),
            ..Default::default()
        },
        status: None,
    }
}

/// Approves `csr` as its requester (as `kubectl certificate approve`); a client that may not
/// leaves it to whoever approves CSRs.
async fn approve(api: &Api<CertificateSigningRequest>, csr: &CertificateSigningRequest) {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now();
    let condition = json!({"type": "Approved", "status": "True", "reason": "HollowNodeApprove",
        "message": "Approved by the hollow node process for its metrics endpoint.",
        "lastUpdateTime": now, "lastTransitionTime": now});
    let mut updated = csr.clone();
    let Ok(c) = serde_json::from_value(condition) else {
        return;
    };
    let status = updated.status.get_or_insert_default();
    status.conditions.get_or_insert_default().push(c);
    let approved = api
        .replace_subresource("approval", &name, &PostParams::default(), &updated)
        .await;
    if let Err(err) = approved {
        tracing::info!(%err, csr = name, "hollow metrics: cannot approve the serving CSR; waiting for an approver");
    }
}

/// Requests a serving certificate for `node` at `address` and waits (bounded) until it is
/// signed.
pub async fn request(
    client: &kube::Client,
    node: &str,
    address: Ipv4Addr,
    timeout: Duration,
) -> Result<CertAndKey, String> {
    let (csr_pem, key_pem) = serving_request(node, address)?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api
        .create(&PostParams::default(), &csr_object(csr_pem))
        .await
        .map_err(|e| e.to_string())?;
    approve(&api, &created).await;
    let name = created.metadata.name.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(Some(current)) = api.get_opt(&name).await else {
            continue;
        };
        let status = current.status.unwrap_or_default();
        let conds = status.conditions.unwrap_or_default();
        let refused =
            |c: &&k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition| {
                (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True"
            };
        if let Some(c) = conds.iter().find(refused) {
            let why = c.message.clone().unwrap_or_default();
            return Err(format!("{name} {}: {why}", c.type_));
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert_pem = String::from_utf8(cert.0).map_err(|e| e.to_string())?;
            return Ok(CertAndKey { cert_pem, key_pem });
        }
    }
    Err(format!(
        "{name} was not signed within {}s",
        timeout.as_secs()
    ))
}

/// Keeps `current` presenting an issued certificate for `node` at `address`: requests one,
/// then renews it at 80% of its lifetime, until `shutdown`.
pub async fn rotate(
    client: kube::Client,
    node: String,
    address: Ipv4Addr,
    current: Arc<ServingCert>,
    shutdown: CancellationToken,
) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let asked = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request(&client, &node, address, SIGN_TIMEOUT) => r,
        };
        let presented = asked.and_then(|pem| match current.set(&pem) {
            Ok(()) => Ok(pem),
            Err(err) => Err(err.to_string()),
        });
        match presented {
            Ok(pem) => {
                tracing::info!(%address, "hollow metrics: serving with a certificate issued by the cluster");
                let now = chrono::Utc::now().timestamp();
                wait = certs::renewal_due_in(&pem.cert_pem, now).unwrap_or(RETRY);
            }
            Err(err) => {
                tracing::warn!(%err, "hollow metrics: no serving certificate issued; retrying");
                wait = RETRY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_endpoint_address_only() {
        let names = names("n0", Ipv4Addr::LOCALHOST);
        assert_eq!(names.node, "n0");
        assert_eq!(names.ips, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert!(names.dns_names.is_empty());
        let (csr, key) = serving_request("n0", Ipv4Addr::LOCALHOST).unwrap_or_default();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.contains("PRIVATE KEY"));
    }

    #[test]
    fn csr_objects_ask_the_kubelet_serving_signer() {
        let csr = csr_object("PEM".into());
        assert_eq!(csr.metadata.generate_name.as_deref(), Some("csr-hollow-"));
        assert_eq!(csr.spec.signer_name, "kubernetes.io/kubelet-serving");
        let usages = csr.spec.usages.unwrap_or_default();
        assert_eq!(
            usages,
            ["digital signature", "key encipherment", "server auth"]
        );
        assert_eq!(csr.spec.request.0, b"PEM");
    }
}
