//! Test builders for pods, Services and nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Value, json};

pub struct PodBuilder(Value);

impl PodBuilder {
    pub fn new(name: &str) -> PodBuilder {
        PodBuilder(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"},
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                                     "ports": [{"name": "http", "containerPort": 8080}]}],
                     "nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": format!("10.42.0.{}", name.len()),
                       "conditions": [{"type": "Ready", "status": "True",
                                        "lastTransitionTime": "2024-01-01T00:00:10Z"}]},
        }))
    }

    pub fn ip(mut self, ip: &str) -> Self {
        self.0["status"]["podIP"] = json!(ip);
        self
    }

    pub fn no_ip(mut self) -> Self {
        self.0["status"]["podIP"] = Value::Null;
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.0["status"]["conditions"][0]["status"] = json!("False");
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0["status"]["phase"] = json!(phase);
        self
    }

    pub fn terminating(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:01:00Z");
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(node);
        self
    }

    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        let map: BTreeMap<_, _> = labels.iter().copied().collect();
        self.0["metadata"]["labels"] = json!(map);
        self
    }

    pub fn container_port(mut self, name: &str, port: i32) -> Self {
        self.0["spec"]["containers"][0]["ports"] = json!([{"name": name, "containerPort": port}]);
        self
    }

    pub fn hostname(mut self, hostname: &str, subdomain: &str) -> Self {
        self.0["spec"]["hostname"] = json!(hostname);
        self.0["spec"]["subdomain"] = json!(subdomain);
        self
    }

    pub fn build(self) -> Pod {
        serde_json::from_value(self.0).expect("pod fixture")
    }
}

pub struct ServiceBuilder(Value);

impl ServiceBuilder {
    pub fn new(name: &str) -> ServiceBuilder {
        ServiceBuilder(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]},
        }))
    }

    pub fn headless(mut self) -> Self {
        self.0["spec"]["clusterIP"] = json!("None");
        self
    }

    pub fn no_selector(mut self) -> Self {
        self.0["spec"]["selector"] = Value::Null;
        self
    }

    pub fn publish_not_ready(mut self) -> Self {
        self.0["spec"]["publishNotReadyAddresses"] = json!(true);
        self
    }

    pub fn ports(mut self, ports: Value) -> Self {
        self.0["spec"]["ports"] = ports;
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["labels"][key] = json!(value);
        self
    }

    pub fn build(self) -> Service {
        serde_json::from_value(self.0).expect("service fixture")
    }
}
