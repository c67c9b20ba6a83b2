//! The Node object a hollow kubelet registers, and the conditions it reports on every heartbeat.

use std::net::Ipv4Addr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{Error, HollowConfig, images};

/// The kubelet version hollow nodes report.
pub const KUBELET_VERSION: &str = "v1.33.0";
/// The label every hollow node carries (`node.kubernetes.io/instance-type=hollow`).
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
/// Its value.
pub const INSTANCE_TYPE: &str = "hollow";
/// The kubelet port nodes advertise when they serve no metrics.
pub const KUBELET_PORT: u16 = 10250;
/// Each node's ephemeral storage.
const EPHEMERAL_STORAGE: &str = "100Gi";

/// The name of the node with this index.
pub fn node_name(prefix: &str, index: usize) -> String {
    format!("{prefix}{index}")
}

/// Refuses a configuration whose nodes the API server would refuse.
pub fn validate(config: &HollowConfig) -> Result<(), Error> {
    let invalid = |what: &str, why: String| Err(Error::InvalidConfig(format!("{what}: {why}")));
    if config.count > crate::ip::MAX_NODES {
        return invalid(
            "count",
            format!("at most {} nodes per process", crate::ip::MAX_NODES),
        );
    }
    let last = node_name(&config.name_prefix, config.count.saturating_sub(1));
    let mut errs = k8rs_machinery::validation::is_dns1123_subdomain(&last);
    errs.extend(k8rs_machinery::validation::is_valid_label_value(&last));
    if let Some(e) = errs.first() {
        return invalid("name prefix", format!("node name {last:?}: {e}"));
    }
    for (what, q) in [("cpu", &config.cpu), ("memory", &config.memory)] {
        if !matches!(k8rs_api::quantity::nano_value(q), Some(v) if v > 0) {
            return invalid(what, format!("{q:?} is not a positive quantity"));
        }
    }
    if let Some(zone) = &config.zone
        && let Some(e) = k8rs_machinery::validation::is_valid_label_value(zone).first()
    {
        return invalid("zone", format!("{zone:?}: {e}"));
    }
    Ok(())
}

/// RFC 3339 with seconds, as `metav1.Time` is written.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 with microseconds, as `metav1.MicroTime` is written.
pub fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The Node a hollow kubelet registers: labels, capacity, addresses, node info, images and the
/// conditions of a healthy node.
pub fn node_object(config: &HollowConfig, index: usize, ip: Ipv4Addr, now: DateTime<Utc>) -> Value {
    let name = node_name(&config.name_prefix, index);
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        INSTANCE_TYPE_LABEL: INSTANCE_TYPE,
    });
    if let Some(zone) = &config.zone {
        labels["topology.kubernetes.io/zone"] = zone.clone().into();
    }
    let resources = json!({
        "cpu": config.cpu, "memory": config.memory, "pods": config.pods.to_string(),
        "ephemeral-storage": EPHEMERAL_STORAGE, "hugepages-1Gi": "0", "hugepages-2Mi": "0",
    });
    let images: Vec<String> = if config.images.is_empty() {
        images::DEFAULT_IMAGES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        config.images.clone()
    };
    let now = time(now);
    let kubelet_port = config.metrics.map_or(KUBELET_PORT, |m| m.port);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": conditions(&now, &now),
            "addresses": [{"type": "InternalIP", "address": ip.to_string()},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": node_info(&name),
            "images": images::node_images(&images),
        },
    })
}

fn node_info(name: &str) -> Value {
    let id = images::digest(name);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    );
    json!({
        "machineID": &id[0..32], "systemUUID": uuid, "bootID": format!("{}", &id[32..64]),
        "kernelVersion": "6.1.0-hollow", "osImage": "k8rs hollow node",
        "containerRuntimeVersion": "containerd://2.1.0-hollow",
        "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
        "operatingSystem": "linux", "architecture": "amd64",
    })
}

/// The conditions of a healthy kubelet, as upstream words them.
pub fn conditions(transition: &str, heartbeat: &str) -> Value {
    let c = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// Whether an observed node's conditions differ from what a healthy hollow kubelet reports
/// (another component marked it NotReady or Unknown), so its status must be written again.
pub fn conditions_drifted(node: &k8s_openapi::api::core::v1::Node) -> bool {
    let Some(conditions) = node.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
        return true;
    };
    let want = [
        ("MemoryPressure", "False"),
        ("DiskPressure", "False"),
        ("PIDPressure", "False"),
        ("Ready", "True"),
    ];
    want.iter().any(|(kind, status)| {
        !conditions
            .iter()
            .any(|c| c.type_ == *kind && c.status == *status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    fn config() -> HollowConfig {
        HollowConfig {
            zone: Some("zone-a".into()),
            images: vec!["nginx:1.27".into()],
            ..HollowConfig::default()
        }
    }

    #[test]
    fn node_object_is_a_valid_ready_node() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let v = node_object(&config(), 7, Ipv4Addr::new(198, 18, 0, 8), now);
        let node: Node = serde_json::from_value(v.clone()).expect("a Node");
        assert_eq!(node.metadata.name.as_deref(), Some("hollow-node-7"));
        let labels = node.metadata.labels.unwrap_or_default();
        assert_eq!(labels["kubernetes.io/hostname"], "hollow-node-7");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-a");
        assert_eq!(labels[INSTANCE_TYPE_LABEL], INSTANCE_TYPE);
        let status = node.status.unwrap_or_default();
        let cap = status.capacity.unwrap_or_default();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "16Gi");
        assert_eq!(cap["pods"].0, "110");
        assert!(cap.contains_key("ephemeral-storage"));
        assert_eq!(v["status"]["allocatable"], v["status"]["capacity"]);
        let info = status.node_info.unwrap_or_default();
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(v["status"]["addresses"][0]["address"], "198.18.0.8");
        assert_eq!(v["status"]["addresses"][1]["type"], "Hostname");
        assert_eq!(
            v["status"]["images"][0]["names"][1],
            "docker.io/library/nginx:1.27"
        );
        let ready = v["status"]["conditions"][3].clone();
        assert_eq!(
            (ready["type"].as_str(), ready["status"].as_str()),
            (Some("Ready"), Some("True"))
        );
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["lastHeartbeatTime"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn drift_is_seen_when_ready_is_not_true() {
        let now = Utc::now();
        let v = node_object(&config(), 0, Ipv4Addr::new(198, 18, 0, 1), now);
        let mut node: Node = serde_json::from_value(v).expect("a Node");
        assert!(!conditions_drifted(&node));
        if let Some(c) = node
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
        {
            c.status = "Unknown".into();
        }
        assert!(conditions_drifted(&node));
        node.status = None;
        assert!(conditions_drifted(&node));
    }

    #[test]
    fn validation_refuses_what_the_server_would() {
        assert_eq!(validate(&config()), Ok(()));
        let bad = [
            HollowConfig {
                name_prefix: "Hollow_".into(),
                ..config()
            },
            HollowConfig {
                name_prefix: "x".repeat(70),
                ..config()
            },
            HollowConfig {
                cpu: "lots".into(),
                ..config()
            },
            HollowConfig {
                memory: "0".into(),
                ..config()
            },
            HollowConfig {
                zone: Some("bad zone".into()),
                ..config()
            },
            HollowConfig {
                count: crate::ip::MAX_NODES + 1,
                ..config()
            },
        ];
        for c in bad {
            assert!(validate(&c).is_err(), "{c:?}");
        }
    }
}
