//! Printers for `admissionregistration.k8s.io/v1`: mutating and validating webhook
//! configurations.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::format::{age, age_column, arr_at, col, name, name_column};
use crate::{Printer, TablePrinter};

/// The printer for an `admissionregistration.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    match resource {
        "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => Some(&WEBHOOKS),
        _ => None,
    }
}

static WEBHOOKS: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col(
            "Webhooks",
            "integer",
            "Webhooks indicates the number of webhooks registered in this configuration",
        ),
        age_column(),
    ],
    row: webhooks_row,
};

fn webhooks_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(arr_at(obj, "/webhooks").len()),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn webhook_configurations_count_their_webhooks() {
        let cfg = json!({"metadata": {"name": "policy", "creationTimestamp": ago(10)},
                         "webhooks": [{"name": "a.example.com"}, {"name": "b.example.com"}]});
        for resource in [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
        ] {
            assert_eq!(
                print("admissionregistration.k8s.io", resource, &cfg),
                json!(["policy", 2, "10s"])
            );
        }
    }
}
