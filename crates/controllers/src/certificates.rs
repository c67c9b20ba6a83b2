//! The CSR approver and signer, as upstream's `csrapproving` and `csrsigning` controllers.
//!
//! The approver approves (condition `Approved`, reason `AutoApproved`) kubelet client
//! certificates requested by bootstrap identities (group `system:bootstrappers`) or by the node
//! itself (renewal), and kubelet serving certificates requested by the node for its own names
//! and addresses. The signer issues approved requests of the signers
//! `kubernetes.io/kube-apiserver-client`, `kubernetes.io/kube-apiserver-client-kubelet` and
//! `kubernetes.io/kubelet-serving` with the cluster CA, after upstream's per-signer checks,
//! through the `status` subresource; `kubernetes.io/legacy-unknown` is never signed.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8rs_auth::pki::{CertKind, ClusterPki};
use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

use crate::Error;
use crate::informer::{self, Next};

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";
/// The shortest validity a request may ask for (`spec.expirationSeconds`), as upstream.
pub const MIN_VALIDITY: Duration = Duration::from_secs(600);

/// The controllers' settings.
#[derive(Clone)]
pub struct CertificatesConfig {
    /// The cluster CA, which signs.
    pub pki: Arc<ClusterPki>,
    /// The longest validity issued (`--cluster-signing-duration`, 8760 h).
    pub cluster_signing_duration: Duration,
}

impl std::fmt::Debug for CertificatesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificatesConfig")
            .field("cluster_signing_duration", &self.cluster_signing_duration)
            .finish_non_exhaustive()
    }
}

impl CertificatesConfig {
    /// The defaults around `pki`.
    pub fn new(pki: Arc<ClusterPki>) -> CertificatesConfig {
        CertificatesConfig {
            pki,
            cluster_signing_duration: Duration::from_secs(8760 * 3600),
        }
    }
}

/// What the request's PEM says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsrInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Email and URI SANs (never allowed for kubelet certificates).
    pub other_sans: usize,
}

/// Parses a PEM certificate request (the signature is checked when signing).
pub fn parse_csr(pem: &[u8]) -> Option<CsrInfo> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let (_, csr) = X509CertificationRequest::from_der(&block.contents).ok()?;
    let subject = &csr.certification_request_info.subject;
    let mut info = CsrInfo {
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string(),
        organizations: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => info.dns_names.push((*d).to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => info
                        .ip_addresses
                        .push(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                    16 => info
                        .ip_addresses
                        .push(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                    _ => info.other_sans += 1,
                },
                _ => info.other_sans += 1,
            }
        }
    }
    Some(info)
}

/// An action on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add the `Approved` condition through the `approval` subresource.
    Approve { message: String },
    /// Issue the certificate and write `status.certificate`.
    Sign { kind: CertKind, validity: Duration },
    /// Add the `Failed` condition (reason `SignerValidationFailure`).
    Fail { message: String },
}

fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    let conds = csr.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds
        .into_iter()
        .flatten()
        .any(|c| c.type_ == kind && c.status != "False")
}

fn usages(csr: &CertificateSigningRequest) -> BTreeSet<&str> {
    let u = csr.spec.usages.as_deref().unwrap_or_default();
    u.iter().map(String::as_str).collect()
}

/// Upstream's checks of a kubelet certificate: O=system:nodes, CN=system:node:NAME, usages
/// within `allowed` including `required`. Returns the node name or why not.
fn kubelet_subject<'a>(
    info: &'a CsrInfo,
    usages: &BTreeSet<&str>,
    allowed: &[&str],
    required: &str,
) -> Result<&'a str, String> {
    if info.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    let Some(node) = info
        .common_name
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
    else {
        return Err("subject common name does not begin with system:node:".into());
    };
    if !usages.contains(required) {
        return Err(format!("missing required usage \"{required}\""));
    }
    if let Some(bad) = usages.iter().find(|u| !allowed.contains(u)) {
        return Err(format!("usage not allowed: \"{bad}\""));
    }
    Ok(node)
}

const CLIENT_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];
const SERVING_USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];

/// The names and addresses a node may put in its serving certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeNames {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl NodeNames {
    pub fn of(node: &Node) -> NodeNames {
        let mut names = NodeNames::default();
        names.dns.extend(node.metadata.name.clone());
        let addrs = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        for a in addrs.into_iter().flatten() {
            match a.type_.as_str() {
                "InternalIP" | "ExternalIP" => names.ips.extend(a.address.parse::<IpAddr>().ok()),
                _ => {
                    names.dns.insert(a.address.clone());
                }
            }
        }
        names
    }
}

/// The approver's decision on one request.
fn approval(
    csr: &CertificateSigningRequest,
    info: &CsrInfo,
    nodes: &HashMap<String, NodeNames>,
) -> Option<Action> {
    let spec = &csr.spec;
    let user = spec.username.as_deref().unwrap_or_default();
    let groups = spec.groups.as_deref().unwrap_or_default();
    let usages = usages(csr);
    match spec.signer_name.as_str() {
        KUBE_APISERVER_CLIENT_KUBELET => {
            kubelet_subject(info, &usages, CLIENT_USAGES, "client auth").ok()?;
            if !info.dns_names.is_empty() || !info.ip_addresses.is_empty() || info.other_sans > 0 {
                return None;
            }
            if groups.iter().any(|g| g == "system:bootstrappers") {
                return Some(Action::Approve {
                    message: "Auto approving kubelet client certificate after SubjectAccessReview."
                        .into(),
                });
            }
            (user == info.common_name).then(|| Action::Approve {
                message:
                    "Auto approving self kubelet client certificate after SubjectAccessReview."
                        .into(),
            })
        }
        KUBELET_SERVING => {
            let node = kubelet_subject(info, &usages, SERVING_USAGES, "server auth").ok()?;
            if user != info.common_name || info.other_sans > 0 {
                return None;
            }
            let names = nodes.get(node)?;
            let dns_ok = info.dns_names.iter().all(|d| names.dns.contains(d));
            let ip_ok = info.ip_addresses.iter().all(|i| names.ips.contains(i));
            let some = !info.dns_names.is_empty() || !info.ip_addresses.is_empty();
            (dns_ok && ip_ok && some).then(|| Action::Approve {
                message: "Auto approving kubelet serving certificate after SubjectAccessReview."
                    .into(),
            })
        }
        _ => None,
    }
}

/// The signer's decision on one approved request.
fn signing(csr: &CertificateSigningRequest, info: &CsrInfo, max: Duration) -> Option<Action> {
    let usages = usages(csr);
    let fail = |message: String| Some(Action::Fail { message });
    let kind = match csr.spec.signer_name.as_str() {
        KUBE_APISERVER_CLIENT => {
            if !usages.contains("client auth") {
                return fail("missing required usage \"client auth\"".into());
            }
            if let Some(bad) = usages.iter().find(|u| !CLIENT_USAGES.contains(u)) {
                return fail(format!("usage not allowed: \"{bad}\""));
            }
            CertKind::Client
        }
        KUBE_APISERVER_CLIENT_KUBELET => {
            if let Err(e) = kubelet_subject(info, &usages, CLIENT_USAGES, "client auth") {
                return fail(e);
            }
            if !info.dns_names.is_empty() || !info.ip_addresses.is_empty() || info.other_sans > 0 {
                return fail("subject alternative names are not allowed".into());
            }
            CertKind::Client
        }
        KUBELET_SERVING => {
            if let Err(e) = kubelet_subject(info, &usages, SERVING_USAGES, "server auth") {
                return fail(e);
            }
            if info.other_sans > 0 {
                return fail("email and URI subject alternative names are not allowed".into());
            }
            if info.dns_names.is_empty() && info.ip_addresses.is_empty() {
                return fail("at least one DNS or IP subject alternative name is required".into());
            }
            CertKind::Serving
        }
        _ => return None,
    };
    let asked = csr
        .spec
        .expiration_seconds
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)).max(MIN_VALIDITY));
    let validity = asked.map_or(max, |a| a.min(max));
    Some(Action::Sign { kind, validity })
}

/// What to do with one request now: approve it, sign it, fail it, or nothing.
pub fn plan(
    csr: &CertificateSigningRequest,
    info: Option<&CsrInfo>,
    nodes: &HashMap<String, NodeNames>,
    max_validity: Duration,
) -> Option<Action> {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if issued || has_condition(csr, "Denied") || has_condition(csr, "Failed") {
        return None;
    }
    if csr.spec.signer_name == LEGACY_UNKNOWN {
        return None;
    }
    let Some(info) = info else {
        let approved = has_condition(csr, "Approved");
        return approved.then(|| Action::Fail {
            message: "unable to parse csr".into(),
        });
    };
    if !has_condition(csr, "Approved") {
        return approval(csr, info, nodes);
    }
    signing(csr, info, max_validity)
}

/// Runs the approver and the signer until `shutdown`.
pub async fn run(
    informers: SharedInformers,
    config: CertificatesConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.cluster_signing_duration < MIN_VALIDITY {
        return Err(Error::InvalidConfig {
            controller: "csrsigning",
            message: "--cluster-signing-duration must be at least 10m".into(),
        });
    }
    let csrs_api: Api<CertificateSigningRequest> = Api::all(informers.client().clone());
    let (csrs, csr_changes) = informers.changes::<CertificateSigningRequest>();
    let (nodes, node_changes) = informers.changes::<Node>();
    let ready = vec![
        k8rs_controller_runtime::ready(&csrs),
        k8rs_controller_runtime::ready(&nodes),
    ];
    let resync = Duration::from_secs(300);
    informer::run_loop(
        vec![csr_changes, node_changes],
        ready,
        resync,
        shutdown,
        || {
            let names: HashMap<String, NodeNames> = nodes
                .state()
                .iter()
                .filter_map(|n| Some((n.metadata.name.clone()?, NodeNames::of(n))))
                .collect();
            let todo: Vec<(Arc<CertificateSigningRequest>, Action)> = csrs
                .state()
                .into_iter()
                .filter_map(|csr| {
                    let info = parse_csr(&csr.spec.request.0);
                    let action =
                        plan(&csr, info.as_ref(), &names, config.cluster_signing_duration)?;
                    Some((csr, action))
                })
                .collect();
            let (api, pki) = (csrs_api.clone(), config.pki.clone());
            async move {
                let mut ok = true;
                for (csr, action) in todo {
                    ok &= perform(&api, &pki, &csr, action).await;
                }
                if ok { Next::Idle } else { Next::Retry }
            }
        },
    )
    .await;
    Ok(())
}

async fn perform(
    api: &Api<CertificateSigningRequest>,
    pki: &ClusterPki,
    csr: &CertificateSigningRequest,
    action: Action,
) -> bool {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now();
    let condition = |kind: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": "True", "reason": reason, "message": message,
               "lastUpdateTime": now, "lastTransitionTime": now})
    };
    let result = match action {
        Action::Approve { message } => {
            tracing::info!(csr = name, "approving certificate signing request");
            let mut updated = csr.clone();
            let conds = updated
                .status
                .get_or_insert_default()
                .conditions
                .get_or_insert_default();
            match serde_json::from_value(condition("Approved", "AutoApproved", &message)) {
                Ok(c) => conds.push(c),
                Err(_) => return true,
            }
            api.replace_subresource("approval", &name, &PostParams::default(), &updated)
                .await
                .map(|_| ())
        }
        Action::Sign { kind, validity } => {
            match pki.sign_csr(&csr.spec.request.0, kind, validity) {
                Ok(pem) => {
                    tracing::info!(csr = name, "signing certificate signing request");
                    let cert = base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
                    let body = json!({"status": {"certificate": cert},
                                  "metadata": {"resourceVersion": csr.metadata.resource_version}});
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await
                        .map(|_| ())
                }
                Err(err) => fail(api, csr, &name, &err.to_string()).await,
            }
        }
        Action::Fail { message } => fail(api, csr, &name, &message).await,
    };
    match result {
        Ok(()) => true,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
        Err(err) => {
            tracing::warn!(%err, csr = name, "certificates: writing a request failed; retrying");
            false
        }
    }
}

async fn fail(
    api: &Api<CertificateSigningRequest>,
    csr: &CertificateSigningRequest,
    name: &str,
    message: &str,
) -> Result<(), kube::Error> {
    tracing::info!(
        csr = name,
        message,
        "certificate signing request failed validation"
    );
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut conds = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    conds.push(
        json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                      "message": message, "lastUpdateTime": now, "lastTransitionTime": now}),
    );
    let body = json!({"status": {"conditions": conds},
                      "metadata": {"resourceVersion": csr.metadata.resource_version}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
