//! Printers for `scheduling.k8s.io/v1`: priorityclasses.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{
    PRIORITY_CLASS_GLOBAL_DEFAULT, PRIORITY_CLASS_PREEMPTION_POLICY, PRIORITY_CLASS_VALUE,
};
use crate::format::{age, age_column, bool_at, col, int_at, name, name_column, str_at};
use crate::{Printer, TablePrinter};

/// The printer for a `scheduling.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    (resource == "priorityclasses").then_some(&PRIORITY_CLASS as &dyn Printer)
}

static PRIORITY_CLASS: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Value", "integer", PRIORITY_CLASS_VALUE),
        col("Global-Default", "boolean", PRIORITY_CLASS_GLOBAL_DEFAULT),
        age_column(),
        col(
            "PreemptionPolicy",
            "string",
            PRIORITY_CLASS_PREEMPTION_POLICY,
        ),
    ],
    row: priority_class_row,
};

fn priority_class_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(int_at(obj, "/value")),
        Value::from(bool_at(obj, "/globalDefault")),
        age(obj, now),
        Value::from(str_at(obj, "/preemptionPolicy")),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn priority_classes() {
        let pc = json!({"metadata": {"name": "system-node-critical",
                                     "creationTimestamp": ago(86400 * 400)},
            "value": 2000001000, "globalDefault": false,
            "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            print("scheduling.k8s.io", "priorityclasses", &pc),
            json!([
                "system-node-critical",
                2000001000,
                false,
                "400d",
                "PreemptLowerPriority"
            ])
        );
    }
}
