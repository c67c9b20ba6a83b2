//! Printers for `node.k8s.io/v1`: runtimeclasses.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::format::{age, age_column, col, name, name_column, str_at};
use crate::{Printer, TablePrinter};

/// The printer for a `node.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    (resource == "runtimeclasses").then_some(&RUNTIME_CLASS as &dyn Printer)
}

static RUNTIME_CLASS: TablePrinter = TablePrinter {
    // Upstream describes Handler with a metadata field that does not exist: an empty text.
    columns: &[name_column(), col("Handler", "string", ""), age_column()],
    row: runtime_class_row,
};

fn runtime_class_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/handler")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn runtime_class() {
        let rc = json!({"metadata": {"name": "gvisor", "creationTimestamp": ago(10)},
                        "handler": "runsc"});
        assert_eq!(
            print("node.k8s.io", "runtimeclasses", &rc),
            json!(["gvisor", "runsc", "10s"])
        );
    }
}
