//! Printers for `networking.k8s.io/v1`: ingresses, ingressclasses, networkpolicies,
//! servicecidrs.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{NETWORK_POLICY_SPEC_POD_SELECTOR, SERVICE_CIDR_SPEC_CIDRS};
use crate::format::{
    age, age_column, arr_at, col, format_label_selector, load_balancer_addresses, name,
    name_column, obj_at, opt_str, str_at,
};
use crate::{Printer, TablePrinter};

/// The printer for a `networking.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    let p: &'static dyn Printer = match resource {
        "ingresses" => &INGRESS,
        "ingressclasses" => &INGRESS_CLASS,
        "networkpolicies" => &NETWORK_POLICY,
        "servicecidrs" => &SERVICE_CIDR,
        _ => return None,
    };
    Some(p)
}

static INGRESS: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        col(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        col(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
        ),
        col("Ports", "string", "Ports of TLS configurations that open"),
        age_column(),
    ],
    row: ingress_row,
};

fn ingress_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let address = load_balancer_addresses(arr_at(obj, "/status/loadBalancer/ingress")).join(",");
    let ports = if arr_at(obj, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        Value::from(opt_str(obj, "/spec/ingressClassName").unwrap_or("<none>")),
        Value::from(format_hosts(arr_at(obj, "/spec/rules"))),
        Value::from(address),
        Value::from(ports),
        age(obj, now),
    ]
}

/// Up to three rule hosts, then ` + N more...` (counting all rules); `*` when no rule has one.
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

static INGRESS_CLASS: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
        ),
        col(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
        ),
        age_column(),
    ],
    row: ingress_class_row,
};

fn ingress_class_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let parameters = match obj_at(obj, "/spec/parameters") {
        None => "<none>".to_string(),
        Some(_) => {
            let kind = str_at(obj, "/spec/parameters/kind");
            let name = str_at(obj, "/spec/parameters/name");
            match opt_str(obj, "/spec/parameters/apiGroup") {
                Some(group) => format!("{kind}.{group}/{name}"),
                None => format!("{kind}/{name}"),
            }
        }
    };
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/controller")),
        Value::from(parameters),
        age(obj, now),
    ]
}

static NETWORK_POLICY: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Pod-Selector", "string", NETWORK_POLICY_SPEC_POD_SELECTOR),
        age_column(),
    ],
    row: network_policy_row,
};

fn network_policy_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(format_label_selector(obj.pointer("/spec/podSelector"))),
        age(obj, now),
    ]
}

static SERVICE_CIDR: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("CIDRs", "string", SERVICE_CIDR_SPEC_CIDRS),
        age_column(),
    ],
    row: service_cidr_row,
};

fn service_cidr_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cidrs: Vec<&str> = arr_at(obj, "/spec/cidrs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![name(obj), Value::from(cidrs.join(",")), age(obj, now)]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn ingresses() {
        let ing = json!({"metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"ingressClassName": "traefik",
                     "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}],
                     "tls": [{"hosts": ["a.example.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10"},
                                                    {"ip": "192.168.1.11"}]}}});
        assert_eq!(
            print("networking.k8s.io", "ingresses", &ing),
            json!([
                "web",
                "traefik",
                "a.example.com,b.example.com",
                "192.168.1.10,192.168.1.11",
                "80, 443",
                "5m"
            ])
        );
        let many = json!({"metadata": {"name": "m"},
            "spec": {"rules": [{"host": "a"}, {}, {"host": "c"}, {"host": "d"},
                               {"host": "e"}]}});
        assert_eq!(
            print("networking.k8s.io", "ingresses", &many),
            json!(["m", "<none>", "a,c,d + 2 more...", "", "80", "<unknown>"])
        );
        let catch_all = json!({"metadata": {"name": "c"}, "spec": {"rules": [{}]}});
        assert_eq!(print("networking.k8s.io", "ingresses", &catch_all)[2], "*");
    }

    #[test]
    fn ingress_classes_network_policies_and_service_cidrs() {
        let class = json!({"metadata": {"name": "nginx", "creationTimestamp": ago(60)},
            "spec": {"controller": "k8s.io/ingress-nginx",
                     "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters",
                                    "name": "external-lb"}}});
        assert_eq!(
            print("networking.k8s.io", "ingressclasses", &class),
            json!([
                "nginx",
                "k8s.io/ingress-nginx",
                "IngressParameters.k8s.example.com/external-lb",
                "60s"
            ])
        );
        let plain = json!({"metadata": {"name": "t"}, "spec": {"controller": "traefik.io/c"}});
        assert_eq!(
            print("networking.k8s.io", "ingressclasses", &plain)[2],
            "<none>"
        );

        let np = json!({"metadata": {"name": "deny", "creationTimestamp": ago(60)},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(
            print("networking.k8s.io", "networkpolicies", &np),
            json!(["deny", "role=db", "60s"])
        );
        let all = json!({"metadata": {"name": "all"}, "spec": {"podSelector": {}}});
        assert_eq!(
            print("networking.k8s.io", "networkpolicies", &all)[1],
            "<none>"
        );

        let cidr = json!({"metadata": {"name": "kubernetes", "creationTimestamp": ago(60)},
            "spec": {"cidrs": ["10.96.0.0/12", "fd00:10:96::/112"]}});
        assert_eq!(
            print("networking.k8s.io", "servicecidrs", &cidr),
            json!(["kubernetes", "10.96.0.0/12,fd00:10:96::/112", "60s"])
        );
    }
}
