//! Tests of the core printers other than pods (whose tests live beside them).

use serde_json::{Value, json};

use crate::tests::{ago, columns, print};

fn meta(name: &str, age_secs: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(age_secs)})
}

#[test]
fn services() {
    let ports = json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]);
    let cases = [
        (
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.10",
                   "clusterIPs": ["10.96.0.10"], "ports": ports, "selector": {"app": "web"}}),
            json!({}),
            json!([
                "svc",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "80/TCP",
                "5m",
                "app=web"
            ]),
        ),
        (
            json!({"type": "NodePort", "clusterIP": "10.96.0.11",
                   "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                             {"port": 53, "protocol": "UDP"}],
                   "selector": {"tier": "fe", "app": "web"}}),
            json!({}),
            json!([
                "svc",
                "NodePort",
                "10.96.0.11",
                "<none>",
                "80:30080/TCP,53/UDP",
                "5m",
                "app=web,tier=fe"
            ]),
        ),
        (
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": ports}),
            json!({}),
            json!([
                "svc",
                "LoadBalancer",
                "10.96.0.12",
                "<pending>",
                "80/TCP",
                "5m",
                "<none>"
            ]),
        ),
        (
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": ports,
                   "externalIPs": ["192.0.2.9"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"},
                                                {"hostname": "lb.example.com"},
                                                {"ip": "203.0.113.7"}]}}),
            json!([
                "svc",
                "LoadBalancer",
                "10.96.0.12",
                "203.0.113.7,lb.example.com,192.0.2.9",
                "80/TCP",
                "5m",
                "<none>"
            ]),
        ),
        (
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
            json!([
                "svc",
                "ExternalName",
                "<none>",
                "db.example.com",
                "<none>",
                "5m",
                "<none>"
            ]),
        ),
        (
            json!({"type": "ClusterIP", "clusterIP": "None", "externalIPs": ["1.2.3.4"]}),
            json!({}),
            json!([
                "svc",
                "ClusterIP",
                "None",
                "1.2.3.4",
                "<none>",
                "5m",
                "<none>"
            ]),
        ),
    ];
    for (spec, status, want) in cases {
        let svc = json!({"metadata": meta("svc", 300), "spec": spec, "status": status});
        assert_eq!(print("", "services", &svc), want);
    }
    assert_eq!(
        columns("", "services").last(),
        Some(&("Selector", 1)),
        "selector is wide"
    );
}

#[test]
fn endpoints() {
    let addrs = |ips: &[&str]| -> Value { ips.iter().map(|ip| json!({"ip": ip})).collect() };
    let cases = [
        (json!([]), "<none>"),
        (
            json!([{"addresses": addrs(&["10.0.0.1", "10.0.0.2"]),
                    "ports": [{"port": 8080}]}]),
            "10.0.0.1:8080,10.0.0.2:8080",
        ),
        (
            json!([{"addresses": addrs(&["10.0.0.1", "10.0.0.2"]),
                    "ports": [{"port": 80}, {"port": 443}]}]),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
        ),
        (json!([{"addresses": addrs(&["10.0.0.7"])}]), "10.0.0.7"),
        (
            json!([{"addresses": addrs(&["fd00::1"]), "ports": [{"port": 53}]}]),
            "[fd00::1]:53",
        ),
    ];
    for (subsets, want) in cases {
        let ep = json!({"metadata": meta("web", 60), "subsets": subsets});
        assert_eq!(print("", "endpoints", &ep), json!(["web", want, "60s"]));
    }
}

#[test]
fn nodes() {
    let node = json!({
        "metadata": {"name": "node-1", "creationTimestamp": ago(3 * 86400 + 4 * 3600),
                     "labels": {"node-role.kubernetes.io/control-plane": "",
                                "node-role.kubernetes.io/master": "",
                                "node-role.kubernetes.io/": "",
                                "kubernetes.io/role": "etcd",
                                "kubernetes.io/hostname": "node-1"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"},
                           {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "node-1"},
                          {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12",
                         "kernelVersion": "6.1.0", "containerRuntimeVersion": "k8rs://0.1.0"}}});
    assert_eq!(
        print("", "nodes", &node),
        json!([
            "node-1",
            "Ready,SchedulingDisabled",
            "control-plane,etcd,master",
            "3d4h",
            "v1.33.1",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12",
            "6.1.0",
            "k8rs://0.1.0"
        ])
    );

    let not_ready = json!({"metadata": {"name": "n2", "creationTimestamp": ago(600)},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    assert_eq!(
        print("", "nodes", &not_ready),
        json!([
            "n2",
            "NotReady",
            "<none>",
            "10m",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
    let no_conditions = json!({"metadata": {"name": "n3"}});
    assert_eq!(print("", "nodes", &no_conditions)[1], "Unknown");
}

#[test]
fn core_events() {
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-1.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "type": "Warning",
        "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 7});
    assert_eq!(
        print("", "events", &ev),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web-1",
            "spec.containers{app}",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "10m",
            7,
            "web-1.17a"
        ])
    );
    assert_eq!(
        columns("", "events"),
        [
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1)
        ]
    );
}

#[test]
fn new_style_events_with_series_and_singletons() {
    // An events.k8s.io event: no deprecated fields, times from eventTime and the series.
    let series = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "lease.1"},
        "regarding": {"kind": "Lease", "name": "leader"},
        "reason": "LeaderElection", "type": "Normal", "note": "became leader",
        "reportingController": "kube-controller-manager", "reportingInstance": "cp-1",
        "eventTime": "2024-05-01T11:00:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2024-05-01T11:58:00.000000Z"}});
    let row = print("events.k8s.io", "events", &series);
    assert_eq!(
        row,
        json!([
            "2m",
            "Normal",
            "LeaderElection",
            "lease/leader",
            "",
            "kube-controller-manager, cp-1",
            "became leader",
            "60m",
            4,
            "lease.1"
        ])
    );
    // The same event stored in the v1 shape prints the same.
    let v1 = json!({
        "metadata": {"name": "lease.1"},
        "involvedObject": {"kind": "Lease", "name": "leader"},
        "reason": "LeaderElection", "type": "Normal", "message": "became leader",
        "reportingComponent": "kube-controller-manager", "reportingInstance": "cp-1",
        "eventTime": "2024-05-01T11:00:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2024-05-01T11:58:00.000000Z"}});
    assert_eq!(print("", "events", &v1), row);

    let singleton = json!({"metadata": {"name": "x"}, "regarding": {"kind": "Node"},
        "note": "hi", "eventTime": ago(5)});
    let row = print("events.k8s.io", "events", &singleton);
    assert_eq!(
        (&row[0], &row[3], &row[7], &row[8]),
        (&json!("5s"), &json!("node"), &json!("5s"), &json!(1))
    );
}

#[test]
fn small_core_types() {
    let secret = json!({"metadata": meta("tls", 7200), "type": "kubernetes.io/tls",
        "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}, "stringData": {"ca.crt": "c", "tls.key": "d"}});
    assert_eq!(
        print("", "secrets", &secret),
        json!(["tls", "kubernetes.io/tls", 3, "120m"])
    );
    let cm = json!({"metadata": meta("cfg", 90), "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
    assert_eq!(print("", "configmaps", &cm), json!(["cfg", 2, "90s"]));
    let sa = json!({"metadata": meta("default", 86400 * 40), "secrets": [{"name": "tok"}]});
    assert_eq!(
        print("", "serviceaccounts", &sa),
        json!(["default", 1, "40d"])
    );
    let ns = json!({"metadata": meta("kube-system", 86400), "status": {"phase": "Active"}});
    assert_eq!(
        print("", "namespaces", &ns),
        json!(["kube-system", "Active", "24h"])
    );
}

#[test]
fn replication_controllers_and_pod_templates() {
    let template = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"},
                                {"name": "log", "image": "busybox"}]}});
    let rc = json!({"metadata": meta("web", 300),
        "spec": {"replicas": 3, "selector": {"app": "web"}, "template": template},
        "status": {"replicas": 3, "readyReplicas": 2}});
    assert_eq!(
        print("", "replicationcontrollers", &rc),
        json!([
            "web",
            3,
            3,
            2,
            "5m",
            "app,log",
            "nginx:1.27,busybox",
            "app=web"
        ])
    );
    let pt = json!({"metadata": meta("tpl", 300), "template": template});
    assert_eq!(
        print("", "podtemplates", &pt),
        json!(["tpl", "app,log", "nginx:1.27,busybox", "app=web,tier=fe"])
    );
}

#[test]
fn persistent_volumes() {
    let pv = json!({"metadata": meta("pv-1", 3600),
        "spec": {"capacity": {"storage": "10240Mi"},
                 "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
                 "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}});
    assert_eq!(
        print("", "persistentvolumes", &pv),
        json!([
            "pv-1",
            "10Gi",
            "RWO,RWX",
            "Retain",
            "Bound",
            "default/data",
            "fast",
            "<unset>",
            "",
            "60m",
            "Filesystem"
        ])
    );
    let mut deleting = pv.clone();
    deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
    deleting["metadata"]["annotations"] =
        json!({"volume.beta.kubernetes.io/storage-class": "legacy"});
    let row = print("", "persistentvolumes", &deleting);
    assert_eq!(
        (&row[4], &row[6]),
        (&json!("Terminating"), &json!("legacy"))
    );
}

#[test]
fn persistent_volume_claims() {
    let bound = json!({"metadata": meta("data", 600),
        "spec": {"volumeName": "pv-1", "storageClassName": "fast",
                 "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "2Gi"},
                   "accessModes": ["ReadWriteOnce"]}});
    assert_eq!(
        print("", "persistentvolumeclaims", &bound),
        json!([
            "data", "Bound", "pv-1", "2Gi", "RWO", "fast", "<unset>", "10m", "<unset>"
        ])
    );
    let pending = json!({"metadata": meta("data", 600),
        "spec": {"resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Block"},
        "status": {"phase": "Pending"}});
    assert_eq!(
        print("", "persistentvolumeclaims", &pending),
        json!(["data", "Pending", "", "", "", "", "<unset>", "10m", "Block"])
    );
}

#[test]
fn resource_quotas() {
    let rq = json!({"metadata": meta("quota", 60),
        "status": {"hard": {"pods": "10", "requests.cpu": "2", "limits.memory": "2Gi",
                            "limits.cpu": "4000m", "requests.memory": "1024Mi"},
                   "used": {"pods": "3", "requests.cpu": "500m", "limits.memory": "512Mi",
                            "requests.memory": "0"}}});
    assert_eq!(
        print("", "resourcequotas", &rq),
        json!([
            "quota",
            "pods: 3/10, requests.cpu: 500m/2, requests.memory: 0/1Gi",
            "limits.cpu: 0/4, limits.memory: 512Mi/2Gi",
            "60s"
        ])
    );
}

#[test]
fn component_statuses() {
    let cs = json!({"metadata": {"name": "etcd-0"},
        "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
    assert_eq!(
        print("", "componentstatuses", &cs),
        json!(["etcd-0", "Healthy", "ok", ""])
    );
    let bad = json!({"metadata": {"name": "scheduler"},
        "conditions": [{"type": "Healthy", "status": "False", "error": "refused"}]});
    assert_eq!(
        print("", "componentstatuses", &bad),
        json!(["scheduler", "Unhealthy", "", "refused"])
    );
}
