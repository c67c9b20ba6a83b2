//! Printers for `discovery.k8s.io/v1`: endpointslices.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::descriptions::{
    ENDPOINT_SLICE_ADDRESS_TYPE, ENDPOINT_SLICE_ENDPOINTS, ENDPOINT_SLICE_PORTS,
};
use crate::format::{
    age, age_column, arr_at, col, list_with_more, name, name_column, opt_int, opt_str, str_at,
};
use crate::{Printer, TablePrinter};

/// The printer for a `discovery.k8s.io` resource.
pub(crate) fn printer(resource: &str) -> Option<&'static dyn Printer> {
    (resource == "endpointslices").then_some(&ENDPOINT_SLICE as &dyn Printer)
}

static ENDPOINT_SLICE: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("AddressType", "string", ENDPOINT_SLICE_ADDRESS_TYPE),
        col("Ports", "string", ENDPOINT_SLICE_PORTS),
        col("Endpoints", "string", ENDPOINT_SLICE_ENDPOINTS),
        age_column(),
    ],
    row: endpoint_slice_row,
};

/// The most ports or addresses a cell lists before ` + N more...`.
const MAX: usize = 3;

fn endpoint_slice_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/addressType")),
        Value::from(format_ports(arr_at(obj, "/ports"))),
        Value::from(format_endpoints(arr_at(obj, "/endpoints"))),
        age(obj, now),
    ]
}

/// Port numbers (the name for a port without a number, `*` for neither).
fn format_ports(ports: &[Value]) -> String {
    let list: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match (opt_int(p, "/port"), opt_str(p, "/name")) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    list_with_more(&list, ports.len(), MAX)
}

/// The endpoints' addresses.
fn format_endpoints(endpoints: &[Value]) -> String {
    let all: Vec<&str> = endpoints
        .iter()
        .flat_map(|e| arr_at(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or(""))
        .collect();
    let list: Vec<String> = all.iter().take(MAX).map(|s| s.to_string()).collect();
    list_with_more(&list, all.len(), MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::tests::{ago, print};

    #[test]
    fn endpoint_slice_ports_and_addresses() {
        let slice = json!({"metadata": {"name": "web-abc12", "creationTimestamp": ago(60)},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics"}, {},
                      {"port": 9000}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]},
                          {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            print("discovery.k8s.io", "endpointslices", &slice),
            json!([
                "web-abc12",
                "IPv4",
                "8080,metrics,* + 1 more...",
                "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...",
                "60s"
            ])
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        assert_eq!(
            print("discovery.k8s.io", "endpointslices", &empty),
            json!(["e", "IPv6", "<unset>", "<unset>", "<unknown>"])
        );
    }
}
