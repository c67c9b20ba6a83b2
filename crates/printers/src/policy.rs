//! Printers for `policy/v1`: poddisruptionbudgets.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::format::{age, age_column, col, int_at, int_or_string, name, name_column};
use crate::{Printer, TablePrinter};

/// The printer for a `policy` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    (resource == "poddisruptionbudgets").then_some(&PDB as &dyn Printer)
}

static PDB: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        col(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        age_column(),
    ],
    row: pdb_row,
};

fn pdb_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let or_na = |ptr| int_or_string(obj.pointer(ptr)).unwrap_or_else(|| "N/A".to_string());
    vec![
        name(obj),
        Value::from(or_na("/spec/minAvailable")),
        Value::from(or_na("/spec/maxUnavailable")),
        Value::from(int_at(obj, "/status/disruptionsAllowed")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn pod_disruption_budgets() {
        let pdb = json!({"metadata": {"name": "web", "creationTimestamp": ago(600)},
            "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            print("policy", "poddisruptionbudgets", &pdb),
            json!(["web", "2", "N/A", 1, "10m"])
        );
        let pct = json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            print("policy", "poddisruptionbudgets", &pct),
            json!(["db", "N/A", "25%", 0, "<unknown>"])
        );
    }
}
