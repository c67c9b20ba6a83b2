//! Printers for `rbac.authorization.k8s.io/v1`: rolebindings and clusterrolebindings (roles and
//! clusterroles use the default table, as upstream).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{CLUSTER_ROLE_BINDING_ROLE_REF, ROLE_BINDING_ROLE_REF};
use crate::format::{age, age_column, arr_at, col, name, name_column, str_at, wide};
use crate::{Column, Printer, TablePrinter, default_printer};

/// The printer for an `rbac.authorization.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    let p: &'static dyn Printer = match resource {
        "rolebindings" => &ROLE_BINDING,
        "clusterrolebindings" => &CLUSTER_ROLE_BINDING,
        "roles" | "clusterroles" => default_printer(),
        _ => return None,
    };
    Some(p)
}

static ROLE_BINDING: TablePrinter = TablePrinter {
    columns: &binding_columns(
        ROLE_BINDING_ROLE_REF,
        [
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        ],
    ),
    row: binding_row,
};

static CLUSTER_ROLE_BINDING: TablePrinter = TablePrinter {
    columns: &binding_columns(
        CLUSTER_ROLE_BINDING_ROLE_REF,
        [
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        ],
    ),
    row: binding_row,
};

const fn binding_columns(role_ref: &'static str, subjects: [&'static str; 3]) -> [Column; 6] {
    [
        name_column(),
        col("Role", "string", role_ref),
        age_column(),
        wide("Users", "string", subjects[0]),
        wide("Groups", "string", subjects[1]),
        wide("ServiceAccounts", "string", subjects[2]),
    ]
}

fn binding_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        str_at(obj, "/roleRef/kind"),
        str_at(obj, "/roleRef/name")
    );
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in arr_at(obj, "/subjects") {
        let subject_name = str_at(subject, "/name");
        match str_at(subject, "/kind") {
            "ServiceAccount" => {
                sas.push(format!("{}/{subject_name}", str_at(subject, "/namespace")));
            }
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            _ => {}
        }
    }
    vec![
        name(obj),
        Value::from(role),
        age(obj, now),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(sas.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, columns, print};

    #[test]
    fn bindings_list_subjects_by_kind() {
        let rb = json!({"metadata": {"name": "admins", "creationTimestamp": ago(86400)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "admin"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                         {"kind": "Group", "name": "ops"},
                         {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
                         {"kind": "Robot", "name": "r2"}]});
        let want = json!([
            "admins",
            "ClusterRole/admin",
            "24h",
            "alice, bob",
            "ops",
            "build/ci"
        ]);
        assert_eq!(
            print("rbac.authorization.k8s.io", "rolebindings", &rb),
            want
        );
        assert_eq!(
            print("rbac.authorization.k8s.io", "clusterrolebindings", &rb),
            want
        );
        assert_eq!(
            columns("rbac.authorization.k8s.io", "clusterrolebindings"),
            [
                ("Name", 0),
                ("Role", 0),
                ("Age", 0),
                ("Users", 1),
                ("Groups", 1),
                ("ServiceAccounts", 1)
            ]
        );
    }
}
