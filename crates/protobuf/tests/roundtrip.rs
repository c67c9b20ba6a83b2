//! JSON -> protobuf -> JSON round trips of realistic objects of many kinds.

mod common;

use serde_json::{Value, json};

fn round_trip(obj: Value) {
    let codec = common::codec();
    let bytes = codec
        .encode(&obj)
        .unwrap_or_else(|e| panic!("encode {}: {e}", obj["kind"]));
    assert!(bytes.starts_with(b"k8s\0"));
    let back = codec
        .decode(&bytes)
        .unwrap_or_else(|e| panic!("decode {}: {e}", obj["kind"]));
    assert_eq!(back, obj, "{} did not survive the round trip", obj["kind"]);
}

fn meta(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": "default",
        "uid": "6a1b1f36-1b0a-4b4e-9d0e-0c3f1f1b7a11",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2024-05-01T12:00:00Z",
        "labels": {"app": "web", "tier": "frontend"},
        "annotations": {"example.com/note": "hello"},
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
            "uid": "11111111-2222-3333-4444-555555555555", "controller": true,
            "blockOwnerDeletion": true
        }],
        "finalizers": ["example.com/cleanup"],
        "managedFields": [{
            "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
            "time": "2024-05-01T12:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
        }]
    })
}

pub fn sample_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta("web-0"),
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "command": ["nginx", "-g", "daemon off;"],
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}
                ],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "250m", "memory": "64Mi"}
                },
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": 80, "scheme": "HTTP"},
                    "initialDelaySeconds": 3,
                    "periodSeconds": 10,
                    "failureThreshold": 3
                },
                "readinessProbe": {"tcpSocket": {"port": "http"}, "timeoutSeconds": 1},
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
                "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "privileged": false,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "volumes": [
                {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "cfg", "configMap": {"name": "web-config", "defaultMode": 420,
                    "items": [{"key": "a", "path": "a.conf"}]}},
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                    "path": "token", "expirationSeconds": 3607}}]}}
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "serviceAccountName": "default",
            "nodeName": "node-1",
            "automountServiceAccountToken": false,
            "securityContext": {"fsGroup": 2000, "supplementalGroups": [1, 2, 3]},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}},
            "enableServiceLinks": true,
            "priority": 0
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T12:00:05Z"}],
            "hostIP": "10.0.0.1",
            "podIP": "10.42.0.7",
            "podIPs": [{"ip": "10.42.0.7"}],
            "startTime": "2024-05-01T12:00:01Z",
            "containerStatuses": [{
                "name": "nginx", "ready": false, "restartCount": 0, "image": "nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:abc", "started": true,
                "containerID": "containerd://0123",
                "state": {"running": {"startedAt": "2024-05-01T12:00:02Z"}}
            }],
            "qosClass": "Burstable"
        }
    })
}

#[test]
fn pod() {
    round_trip(sample_pod());
}

#[test]
fn pod_list() {
    let mut item = sample_pod();
    item.as_object_mut().map(|o| {
        o.remove("apiVersion");
        o.remove("kind")
    });
    round_trip(json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "100", "continue": "abc", "remainingItemCount": 0},
        "items": [item.clone(), item]
    }));
}

#[test]
fn deployment() {
    round_trip(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        },
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                "lastUpdateTime": "2024-05-01T12:00:00Z", "lastTransitionTime": "2024-05-01T12:00:00Z"}]}
    }));
}

#[test]
fn service_with_node_ports() {
    round_trip(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                {"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https", "nodePort": 30443}
            ],
            "clusterIP": "10.43.0.10",
            "clusterIPs": ["10.43.0.10"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster"
        },
        "status": {"loadBalancer": {}}
    }));
}

#[test]
fn secret_and_config_map() {
    round_trip(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "shop"},
        "type": "Opaque",
        "data": {"password": "aHVudGVyMg==", "empty": "", "binary": "AAEC/w=="},
        "immutable": false
    }));
    round_trip(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "shop"},
        "data": {"a.conf": "x = 1\n", "unicode": "héllo ✓"},
        "binaryData": {"blob": "3q2+7w=="}
    }));
}

#[test]
fn namespace() {
    round_trip(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    }));
}

#[test]
fn events_with_micro_time() {
    round_trip(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web-0.17c", "namespace": "shop"},
        "eventTime": "2024-05-01T12:00:00.123456Z",
        "series": {"count": 2, "lastObservedTime": "2024-05-01T12:00:09.000001Z"},
        "reportingController": "k8rs/scheduler",
        "reportingInstance": "k8rs-1",
        "action": "Binding",
        "reason": "Scheduled",
        "regarding": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "u1", "apiVersion": "v1"},
        "note": "Successfully assigned shop/web-0 to node-1",
        "type": "Normal"
    }));
    round_trip(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-0.17d", "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "shop"},
        "reason": "Pulled", "message": "pulled", "count": 1, "type": "Normal",
        "firstTimestamp": "2024-05-01T12:00:00Z", "lastTimestamp": "2024-05-01T12:00:00Z",
        "source": {"component": "kubelet", "host": "node-1"}
    }));
}

#[test]
fn lease() {
    round_trip(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
            "acquireTime": "2024-05-01T12:00:00.000000Z", "renewTime": "2024-05-01T12:00:10.500000Z",
            "leaseTransitions": 0}
    }));
}

#[test]
fn status() {
    round_trip(json!({
        "apiVersion": "v1", "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": "pods \"x\" not found",
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueInvalid", "message": "m", "field": "spec"}]},
        "code": 404
    }));
}

#[test]
fn workloads_and_policies() {
    round_trip(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "backup"},
        "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid", "suspend": false,
            "jobTemplate": {"spec": {"backoffLimit": 0, "completions": 1, "parallelism": 1,
                "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "b", "image": "busybox"}]}}}}}
    }));
    round_trip(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}]}
    }));
    round_trip(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": "50%", "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}
    }));
    round_trip(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}
    }));
    round_trip(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 90}],
                "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]}
    }));
    round_trip(json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "web-1"}, "revision": 1,
        "data": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}
    }));
}

#[test]
fn cluster_kinds() {
    round_trip(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local"}, "provisioner": "rancher.io/local-path",
        "parameters": {"a": "b"}, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true
    }));
    round_trip(json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "system-node-critical"}, "value": 2000001000, "globalDefault": true,
        "description": "critical"
    }));
    round_trip(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr-1"},
        "spec": {"request": "LS0tLS1CRUdJTg==", "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"], "username": "alice", "groups": ["dev"],
            "extra": {"scopes": ["a", "b"]}, "expirationSeconds": 3600},
        "status": {"conditions": [{"type": "Approved", "status": "True", "lastUpdateTime": "2024-05-01T12:00:00Z"}],
            "certificate": "Y2VydA=="}
    }));
    round_trip(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "u"}},
        "status": {"token": "eyJ...", "expirationTimestamp": "2024-05-01T13:00:00Z"}
    }));
    round_trip(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc"}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.0.7"], "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "web-0"}}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
    }));
    round_trip(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1"},
        "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"],
            "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "3900Mi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-05-01T12:00:00Z",
                "lastTransitionTime": "2024-05-01T12:00:00Z", "reason": "KubeletReady", "message": "ok"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1",
                "osImage": "Debian", "containerRuntimeVersion": "containerd://1.7", "kubeletVersion": "v1.33.0",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}}
    }));
}

#[test]
fn meta_kinds() {
    round_trip(json!({
        "apiVersion": "v1", "kind": "DeleteOptions",
        "gracePeriodSeconds": 0, "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u", "resourceVersion": "5"}, "dryRun": ["All"]
    }));
    round_trip(json!({
        "apiVersion": "v1", "kind": "APIResourceList", "groupVersion": "v1",
        "resources": [{"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
            "verbs": ["create", "delete", "get"], "shortNames": ["po"], "categories": ["all"]}]
    }));
    round_trip(json!({
        "apiVersion": "apidiscovery.k8s.io/v2", "kind": "APIGroupDiscoveryList",
        "metadata": {},
        "items": [{"metadata": {"name": "apps"}, "versions": [{"version": "v1", "freshness": "Current",
            "resources": [{"resource": "deployments", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "scope": "Namespaced", "singularResource": "deployment", "verbs": ["get", "list"],
                "shortNames": ["deploy"], "subresources": [{"subresource": "scale",
                    "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch"]}]}]}]}]
    }));
    round_trip(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "shop", "verb": "create", "resource": "pods"}},
        "status": {"allowed": true, "reason": "RBAC"}
    }));
    round_trip(json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}
    }));
}
