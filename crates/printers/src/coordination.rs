//! Printers for `coordination.k8s.io/v1`: leases.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::LEASE_SPEC_HOLDER_IDENTITY;
use crate::format::{age, age_column, col, name, name_column, str_at};
use crate::{Printer, TablePrinter};

/// The printer for a `coordination.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    (resource == "leases").then_some(&LEASE as &dyn Printer)
}

static LEASE: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Holder", "string", LEASE_SPEC_HOLDER_IDENTITY),
        age_column(),
    ],
    row: lease_row,
};

fn lease_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/holderIdentity")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn lease_holder() {
        let lease = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": ago(5)},
            "spec": {"holderIdentity": "cp-1_2a7e", "leaseDurationSeconds": 15}});
        assert_eq!(
            print("coordination.k8s.io", "leases", &lease),
            json!(["kube-scheduler", "cp-1_2a7e", "5s"])
        );
        let free = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(
            print("coordination.k8s.io", "leases", &free),
            json!(["x", "", "<unknown>"])
        );
    }
}
