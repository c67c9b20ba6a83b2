//! certificates.k8s.io/v1: CertificateSigningRequests.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};

use crate::field::{Bad, FieldError, Path, duplicate, invalid, not_supported, required};
use crate::{ApiType, NameRule, check_meta, check_meta_update};

const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

impl ApiType for CertificateSigningRequest {
    const NAME_RULE: NameRule = NameRule::Any;

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(validate_spec(&self.spec));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(validate_spec(&self.spec));
        errs
    }
}

/// `[]byte{0x2d, ...}` as Go's `%#v` prints a byte slice.
fn go_bytes(b: &[u8]) -> Bad {
    let items: Vec<String> = b.iter().map(|x| format!("0x{x:x}")).collect();
    Bad::Go(format!("[]byte{{{}}}", items.join(", ")))
}

/// Whether the request is one PEM block of type `CERTIFICATE REQUEST`.
fn is_csr_pem(req: &[u8]) -> bool {
    let text = String::from_utf8_lossy(req);
    let Some(start) = text.find("-----BEGIN ") else {
        return false;
    };
    let rest = &text[start + "-----BEGIN ".len()..];
    let Some((label, body)) = rest.split_once("-----") else {
        return false;
    };
    label == "CERTIFICATE REQUEST" && body.contains("-----END CERTIFICATE REQUEST-----")
}

fn validate_spec(spec: &CertificateSigningRequestSpec) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    if !is_csr_pem(&spec.request.0) {
        errs.push(invalid(
            &sp.child("request"),
            go_bytes(&spec.request.0),
            "PEM block type must be CERTIFICATE REQUEST",
        ));
    }
    let usages = spec.usages.as_deref().unwrap_or_default();
    if usages.is_empty() {
        errs.push(required(&sp.child("usages"), ""));
    }
    for (i, u) in usages.iter().enumerate() {
        if !USAGES.contains(&u.as_str()) {
            errs.push(not_supported(&sp.child("usages").index(i), u, USAGES));
        }
    }
    for (i, u) in usages.iter().enumerate() {
        if usages[..i].contains(u) {
            errs.push(duplicate(&sp.child("usages").index(i), u));
        }
    }
    let signer = spec.signer_name.as_str();
    let snp = sp.child("signerName");
    if signer == "kubernetes.io/legacy-unknown" {
        errs.push(invalid(
            &snp,
            signer,
            "the legacy signerName is not allowed via this API version",
        ));
    } else if signer.is_empty() {
        errs.push(required(&snp, ""));
    } else if !signer
        .split_once('/')
        .is_some_and(|(d, n)| d.contains('.') && !n.is_empty())
    {
        errs.push(invalid(
            &snp,
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
    if let Some(e) = spec.expiration_seconds.filter(|e| *e < 600) {
        errs.push(invalid(
            &sp.child("expirationSeconds"),
            e,
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csr_checks() {
        let pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        let csr = |usages: serde_json::Value, signer: &str| -> CertificateSigningRequest {
            serde_json::from_value(json!({
                "metadata": {"name": "node-csr-1"},
                "spec": {"request": base64_of(pem), "signerName": signer, "usages": usages}
            }))
            .unwrap_or_default()
        };
        assert!(
            csr(
                json!(["client auth"]),
                "kubernetes.io/kube-apiserver-client-kubelet"
            )
            .validate()
            .is_empty()
        );
        let e: Vec<String> = csr(json!([]), "")
            .validate()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e,
            vec![
                "spec.usages: Required value",
                "spec.signerName: Required value"
            ]
        );
    }

    fn base64_of(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, x)| acc | (u32::from(*x) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
