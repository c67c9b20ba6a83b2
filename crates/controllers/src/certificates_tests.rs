use super::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};

/// A PEM request for `cn` in `orgs` with DNS and IP SANs.
pub fn csr_pem(cn: &str, orgs: &[&str], sans: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn csr(
    signer: &str,
    pem: &str,
    user: &str,
    groups: &[&str],
    usages: &[&str],
) -> CertificateSigningRequest {
    CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            signer_name: signer.into(),
            request: ByteString(pem.as_bytes().to_vec()),
            username: Some(user.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn approved(mut c: CertificateSigningRequest) -> CertificateSigningRequest {
    c.status = Some(CertificateSigningRequestStatus {
        conditions: Some(vec![CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    c
}

const YEAR: Duration = Duration::from_secs(8760 * 3600);
const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];
const SERVING: &[&str] = &["digital signature", "key encipherment", "server auth"];

fn decide(c: &CertificateSigningRequest, nodes: &HashMap<String, NodeNames>) -> Option<Action> {
    let info = parse_csr(&c.spec.request.0);
    plan(c, info.as_ref(), nodes, YEAR)
}

#[test]
fn parses_subject_and_sans() {
    let info =
        parse_csr(csr_pem("system:node:n1", &["system:nodes"], &["n1", "10.0.0.1"]).as_bytes());
    let info = info.expect("parsed");
    assert_eq!(info.common_name, "system:node:n1");
    assert_eq!(info.organizations, ["system:nodes"]);
    assert_eq!(info.dns_names, ["n1"]);
    assert_eq!(
        info.ip_addresses,
        ["10.0.0.1".parse::<IpAddr>().expect("ip")]
    );
}

#[test]
fn bootstrap_and_renewal_kubelet_client_requests_are_approved() {
    let pem = csr_pem("system:node:n1", &["system:nodes"], &[]);
    let boot = csr(
        KUBE_APISERVER_CLIENT_KUBELET,
        &pem,
        "system:bootstrap:abcdef",
        &["system:bootstrappers"],
        CLIENT,
    );
    assert_eq!(
        decide(&boot, &HashMap::new()),
        Some(Action::Approve {
            message: "Auto approving kubelet client certificate after SubjectAccessReview.".into()
        })
    );
    let renew = csr(
        KUBE_APISERVER_CLIENT_KUBELET,
        &pem,
        "system:node:n1",
        &["system:nodes"],
        CLIENT,
    );
    assert_eq!(
        decide(&renew, &HashMap::new()),
        Some(Action::Approve {
            message: "Auto approving self kubelet client certificate after SubjectAccessReview."
                .into()
        })
    );
    let other = csr(
        KUBE_APISERVER_CLIENT_KUBELET,
        &pem,
        "system:node:n2",
        &["system:nodes"],
        CLIENT,
    );
    assert_eq!(decide(&other, &HashMap::new()), None);
    let wrong_org = csr_pem("system:node:n1", &["system:masters"], &[]);
    let boot = csr(
        KUBE_APISERVER_CLIENT_KUBELET,
        &wrong_org,
        "b",
        &["system:bootstrappers"],
        CLIENT,
    );
    assert_eq!(decide(&boot, &HashMap::new()), None);
}

#[test]
fn serving_requests_are_approved_only_for_the_nodes_own_names() {
    let mut node = Node::default();
    node.metadata.name = Some("n1".into());
    node.status = Some(NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: "10.0.0.1".into(),
        }]),
        ..Default::default()
    });
    let nodes = HashMap::from([("n1".to_string(), NodeNames::of(&node))]);
    let own = csr_pem("system:node:n1", &["system:nodes"], &["n1", "10.0.0.1"]);
    let c = csr(
        KUBELET_SERVING,
        &own,
        "system:node:n1",
        &["system:nodes"],
        SERVING,
    );
    assert!(matches!(decide(&c, &nodes), Some(Action::Approve { .. })));
    let foreign = csr_pem("system:node:n1", &["system:nodes"], &["evil.example.com"]);
    let c = csr(
        KUBELET_SERVING,
        &foreign,
        "system:node:n1",
        &["system:nodes"],
        SERVING,
    );
    assert_eq!(decide(&c, &nodes), None);
}

#[test]
fn approved_requests_are_signed_with_their_expiration_at_least_ten_minutes() {
    let pem = csr_pem("alice", &["devs"], &[]);
    let mut c = approved(csr(
        KUBE_APISERVER_CLIENT,
        &pem,
        "admin",
        &[],
        &["client auth"],
    ));
    c.spec.expiration_seconds = Some(60);
    assert_eq!(
        decide(&c, &HashMap::new()),
        Some(Action::Sign {
            kind: CertKind::Client,
            validity: MIN_VALIDITY
        })
    );
    c.spec.expiration_seconds = None;
    assert_eq!(
        decide(&c, &HashMap::new()),
        Some(Action::Sign {
            kind: CertKind::Client,
            validity: YEAR
        })
    );
}

#[test]
fn signer_restrictions_fail_requests_and_legacy_unknown_is_never_signed() {
    let pem = csr_pem("alice", &["devs"], &[]);
    let c = approved(csr(
        KUBE_APISERVER_CLIENT_KUBELET,
        &pem,
        "admin",
        &[],
        CLIENT,
    ));
    assert_eq!(
        decide(&c, &HashMap::new()),
        Some(Action::Fail {
            message: "subject organization is not system:nodes".into()
        })
    );
    let c = approved(csr(
        KUBE_APISERVER_CLIENT,
        &pem,
        "admin",
        &[],
        &["server auth"],
    ));
    assert_eq!(
        decide(&c, &HashMap::new()),
        Some(Action::Fail {
            message: "missing required usage \"client auth\"".into()
        })
    );
    let c = approved(csr(LEGACY_UNKNOWN, &pem, "admin", &[], CLIENT));
    assert_eq!(decide(&c, &HashMap::new()), None);
    let unapproved = csr(KUBE_APISERVER_CLIENT, &pem, "admin", &[], CLIENT);
    assert_eq!(decide(&unapproved, &HashMap::new()), None);
}
