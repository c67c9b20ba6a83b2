//! Printers for `certificates.k8s.io/v1`: certificatesigningrequests.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::descriptions::{
    CSR_SPEC_EXPIRATION_SECONDS, CSR_SPEC_REQUEST, CSR_SPEC_SIGNER_NAME, CSR_STATUS_CONDITIONS,
};
use crate::format::{
    age, age_column, arr_at, col, human_duration, name, name_column, opt_int, or_none, str_at,
};
use crate::{Printer, TablePrinter};

/// The printer for a `certificates.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    (resource == "certificatesigningrequests").then_some(&CSR as &dyn Printer)
}

static CSR: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        age_column(),
        col("SignerName", "string", CSR_SPEC_SIGNER_NAME),
        col("Requestor", "string", CSR_SPEC_REQUEST),
        col("RequestedDuration", "string", CSR_SPEC_EXPIRATION_SECONDS),
        col("Condition", "string", CSR_STATUS_CONDITIONS),
    ],
    row: csr_row,
};

fn csr_row(csr: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let duration = opt_int(csr, "/spec/expirationSeconds").map_or_else(
        || "<none>".to_string(),
        |s| human_duration(TimeDelta::seconds(s)),
    );
    vec![
        name(csr),
        age(csr, now),
        Value::from(or_none(str_at(csr, "/spec/signerName"))),
        Value::from(str_at(csr, "/spec/username")),
        Value::from(duration),
        Value::from(condition(csr)),
    ]
}

/// `Denied`, `Approved` or `Pending`, then `,Failed` and `,Issued` as they apply.
fn condition(csr: &Value) -> String {
    let has = |type_: &str| {
        arr_at(csr, "/status/conditions")
            .iter()
            .any(|c| str_at(c, "/type") == type_)
    };
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(csr, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    status
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn certificate_signing_requests() {
        let csr = json!({"metadata": {"name": "node-csr-1", "creationTimestamp": ago(30)},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "username": "system:node:n1", "expirationSeconds": 86400,
                     "request": "LS0t"},
            "status": {"conditions": [{"type": "Approved", "status": "True"}],
                       "certificate": "LS0tLS1CRUdJTi"}});
        assert_eq!(
            print("certificates.k8s.io", "certificatesigningrequests", &csr),
            json!([
                "node-csr-1",
                "30s",
                "kubernetes.io/kube-apiserver-client-kubelet",
                "system:node:n1",
                "24h",
                "Approved,Issued"
            ])
        );
        let cases = [
            (json!({}), "Pending"),
            (
                json!({"conditions": [{"type": "Approved"}, {"type": "Denied"}]}),
                "Denied",
            ),
            (
                json!({"conditions": [{"type": "Approved"}, {"type": "Failed"}]}),
                "Approved,Failed",
            ),
        ];
        for (status, want) in cases {
            let csr = json!({"metadata": {"name": "c"}, "spec": {}, "status": status});
            let row = print("certificates.k8s.io", "certificatesigningrequests", &csr);
            assert_eq!(
                (&row[2], &row[4], &row[5]),
                (&json!("<none>"), &json!("<none>"), &json!(want))
            );
        }
    }
}
