//! Services (TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S)) and endpoints.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::TablePrinter;
use crate::descriptions::{
    ENDPOINTS_SUBSETS, SERVICE_SPEC_CLUSTER_IP, SERVICE_SPEC_EXTERNAL_IPS, SERVICE_SPEC_PORTS,
    SERVICE_SPEC_SELECTOR, SERVICE_SPEC_TYPE,
};
use crate::format::{
    age, age_column, arr_at, col, format_labels, int_at, load_balancer_addresses, name,
    name_column, obj_at, or_none, str_at, wide,
};

pub(crate) static SERVICE: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Type", "string", SERVICE_SPEC_TYPE),
        col("Cluster-IP", "string", SERVICE_SPEC_CLUSTER_IP),
        col("External-IP", "string", SERVICE_SPEC_EXTERNAL_IPS),
        col("Port(s)", "string", SERVICE_SPEC_PORTS),
        age_column(),
        wide("Selector", "string", SERVICE_SPEC_SELECTOR),
    ],
    row: service_row,
};

fn service_row(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cluster_ip = arr_at(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(svc, "/spec/clusterIP"));
    vec![
        name(svc),
        Value::from(str_at(svc, "/spec/type")),
        Value::from(or_none(cluster_ip)),
        Value::from(external_ip(svc)),
        Value::from(or_none(&port_string(arr_at(svc, "/spec/ports")))),
        age(svc, now),
        Value::from(format_labels(obj_at(svc, "/spec/selector"))),
    ]
}

/// The EXTERNAL-IP cell: external IPs, load-balancer ingress points, `<pending>` for a load
/// balancer without any, the external name, or `<none>`.
fn external_ip(svc: &Value) -> String {
    let external: Vec<&str> = strings(arr_at(svc, "/spec/externalIPs"));
    match str_at(svc, "/spec/type") {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let mut all = load_balancer_addresses(arr_at(svc, "/status/loadBalancer/ingress"));
            all.extend(external.iter().map(|s| s.to_string()));
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `80/TCP,443:30443/TCP`: port, node port when set, protocol.
fn port_string(ports: &[Value]) -> String {
    let pieces: Vec<String> = ports
        .iter()
        .map(|p| {
            let port = int_at(p, "/port");
            let protocol = match str_at(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            match int_at(p, "/nodePort") {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

fn strings(values: &[Value]) -> Vec<&str> {
    values.iter().filter_map(Value::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// endpoints

pub(crate) static ENDPOINTS: TablePrinter = TablePrinter {
    columns: &[
        name_column(),
        col("Endpoints", "string", ENDPOINTS_SUBSETS),
        age_column(),
    ],
    row: endpoints_row,
};

fn endpoints_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(format_endpoints(arr_at(obj, "/subsets"))),
        age(obj, now),
    ]
}

/// Up to three `ip:port` (or bare IPs for port-less subsets), then ` + N more...`; `<none>`
/// without subsets.
fn format_endpoints(subsets: &[Value]) -> String {
    const MAX: usize = 3;
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = arr_at(subset, "/addresses");
        let ports = arr_at(subset, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            let room = MAX.saturating_sub(list.len());
            list.extend(
                addresses
                    .iter()
                    .take(room)
                    .map(|a| str_at(a, "/ip").to_string()),
            );
            continue;
        }
        for port in ports {
            count += addresses.len();
            let room = MAX.saturating_sub(list.len());
            let number = int_at(port, "/port");
            list.extend(
                addresses
                    .iter()
                    .take(room)
                    .map(|a| join_host_port(str_at(a, "/ip"), number)),
            );
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// `host:port`, with IPv6 hosts in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
