//! The usage calculation and the sync's decisions over fixtures.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaSpec, ResourceQuotaStatus,
    ResourceRequirements, ScopeSelector, ScopedResourceSelectorRequirement, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::sync::{Plan, Snapshot, Update, plan};
use super::usage::Counts;
use crate::testutil::pod;

fn list(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_string(), Quantity((*v).to_string())))
        .collect()
}

fn quota(name: &str, hard: &[(&str, &str)]) -> ResourceQuota {
    let mut q = ResourceQuota::default();
    q.metadata.name = Some(name.into());
    q.metadata.namespace = Some("default".into());
    q.spec = Some(ResourceQuotaSpec {
        hard: Some(list(hard)),
        ..Default::default()
    });
    q
}

fn scoped(mut q: ResourceQuota, scopes: &[&str]) -> ResourceQuota {
    let spec = q.spec.get_or_insert_default();
    spec.scopes = Some(scopes.iter().map(|s| (*s).to_string()).collect());
    q
}

fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    Container {
        name: name.into(),
        resources: Some(ResourceRequirements {
            requests: Some(list(requests)),
            limits: Some(list(limits)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_containers(mut p: Pod, containers: Vec<Container>, init: Vec<Container>) -> Pod {
    let spec = p.spec.get_or_insert_default();
    spec.containers = containers;
    spec.init_containers = (!init.is_empty()).then_some(init);
    p
}

fn cpu_pod(name: &str, cpu: &str) -> Pod {
    with_containers(
        pod(name).build(),
        vec![container("c", &[("cpu", cpu)], &[])],
        vec![],
    )
}

fn service(name: &str, kind: &str, ports: usize) -> Service {
    let mut s = Service::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some("default".into());
    s.spec = Some(ServiceSpec {
        type_: Some(kind.into()),
        ports: Some(vec![ServicePort::default(); ports]),
        ..Default::default()
    });
    s
}

fn at(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs)
}

/// The used map of the one update the plan makes for `q`.
fn used_of(q: &ResourceQuota, snap: &Snapshot, now: Timestamp) -> BTreeMap<String, String> {
    let p = plan(&[q], snap, now);
    assert_eq!(p.updates.len(), 1, "{p:?}");
    let used = p.updates[0].status.used.clone().unwrap_or_default();
    used.into_iter().map(|(k, v)| (k, v.0)).collect()
}

fn expect(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn object_counts_and_legacy_names() {
    let q = quota(
        "q",
        &[
            ("pods", "10"),
            ("count/pods", "10"),
            ("configmaps", "5"),
            ("count/configmaps", "5"),
            ("secrets", "3"),
            ("services", "4"),
            ("count/services", "4"),
            ("services.nodeports", "5"),
            ("services.loadbalancers", "2"),
            ("count/deployments.apps", "3"),
            ("foo", "1"),
        ],
    );
    let running = pod("a").build();
    let done = pod("b").phase("Succeeded").build();
    let mut elsewhere = pod("c").build();
    elsewhere.metadata.namespace = Some("other".into());
    let services = [
        service("s1", "ClusterIP", 1),
        service("s2", "NodePort", 2),
        service("s3", "LoadBalancer", 1),
    ];
    let counts: Counts = BTreeMap::from([
        (
            "configmaps".to_string(),
            BTreeMap::from([("default".to_string(), 2), ("other".to_string(), 7)]),
        ),
        ("deployments.apps".to_string(), BTreeMap::new()),
    ]);
    let snap = Snapshot {
        pods: vec![&running, &done, &elsewhere],
        services: services.iter().collect(),
        counts,
        ..Default::default()
    };
    // Secrets are not watched yet and `foo` is no resource: both are left out.
    assert_eq!(
        used_of(&q, &snap, at(0)),
        expect(&[
            ("configmaps", "2"),
            ("count/configmaps", "2"),
            ("count/deployments.apps", "0"),
            ("count/pods", "2"),
            ("count/services", "3"),
            ("pods", "1"),
            ("services", "3"),
            ("services.loadbalancers", "1"),
            ("services.nodeports", "3"),
        ])
    );
}

#[test]
fn compute_resources_follow_init_container_and_sidecar_rules() {
    let q = quota(
        "q",
        &[
            ("requests.cpu", "2"),
            ("cpu", "2"),
            ("requests.memory", "1Gi"),
            ("memory", "1Gi"),
            ("limits.cpu", "4"),
            ("limits.memory", "2Gi"),
        ],
    );
    let mut sidecar = container("s", &[("cpu", "50m"), ("memory", "32Mi")], &[]);
    sidecar.restart_policy = Some("Always".into());
    let mut p = with_containers(
        pod("a").build(),
        vec![
            container(
                "c1",
                &[("cpu", "100m"), ("memory", "128Mi")],
                &[("cpu", "200m")],
            ),
            container("c2", &[("cpu", "200m"), ("memory", "128Mi")], &[]),
        ],
        vec![
            sidecar,
            container("i", &[("cpu", "500m"), ("memory", "64Mi")], &[]),
        ],
    );
    p.spec.get_or_insert_default().overhead = Some(list(&[("cpu", "10m")]));
    // Containers and the sidecar ask for 350m and 288Mi; the init container, beside the
    // sidecar, for 550m and 96Mi: the pod needs 550m (+10m overhead) and 288Mi.
    let snap = Snapshot {
        pods: vec![&p],
        ..Default::default()
    };
    assert_eq!(
        used_of(&q, &snap, at(0)),
        expect(&[
            ("cpu", "560m"),
            ("limits.cpu", "210m"),
            ("limits.memory", "0"),
            ("memory", "288Mi"),
            ("requests.cpu", "560m"),
            ("requests.memory", "288Mi"),
        ])
    );
    let other = cpu_pod("b", "440m");
    let snap = Snapshot {
        pods: vec![&p, &other],
        ..Default::default()
    };
    assert_eq!(used_of(&q, &snap, at(0))["requests.cpu"], "1");
}

#[test]
fn terminal_pods_and_pods_past_their_grace_are_not_charged() {
    let q = quota(
        "q",
        &[("pods", "10"), ("count/pods", "10"), ("requests.cpu", "10")],
    );
    let deleting = |name: &str, deleted: i64| {
        let mut p = cpu_pod(name, "1");
        p.metadata.deletion_timestamp = Some(Time(at(deleted)));
        p.metadata.deletion_grace_period_seconds = Some(30);
        p
    };
    let pods = [
        cpu_pod("running", "1"),
        {
            let mut p = cpu_pod("failed", "1");
            p.status.get_or_insert_default().phase = Some("Failed".into());
            p
        },
        {
            let mut p = cpu_pod("succeeded", "1");
            p.status.get_or_insert_default().phase = Some("Succeeded".into());
            p
        },
        deleting("stuck", 40),
        deleting("stopping", 90),
    ];
    let snap = Snapshot {
        pods: pods.iter().collect(),
        ..Default::default()
    };
    let now = at(100);
    assert_eq!(
        used_of(&q, &snap, now),
        expect(&[("count/pods", "5"), ("pods", "2"), ("requests.cpu", "2")])
    );
    // The sync wakes when the stopping pod's grace ends (at 120 s).
    let p = plan(&[&q], &snap, now);
    assert_eq!(p.wake_after, Some(Duration::from_millis(20_100)));
}

#[test]
fn scopes_restrict_what_is_counted() {
    let hard = [("pods", "10"), ("configmaps", "10")];
    let best_effort = pod("be").build();
    let burstable = cpu_pod("bu", "100m");
    let mut terminating = pod("t").build();
    terminating
        .spec
        .get_or_insert_default()
        .active_deadline_seconds = Some(60);
    let mut high = cpu_pod("h", "1");
    high.spec.get_or_insert_default().priority_class_name = Some("high".into());
    let snap = Snapshot {
        pods: vec![&best_effort, &burstable, &terminating, &high],
        counts: BTreeMap::from([(
            "configmaps".to_string(),
            BTreeMap::from([("default".to_string(), 4)]),
        )]),
        ..Default::default()
    };
    let pods_in = |q: &ResourceQuota| used_of(q, &snap, at(0))["pods"].clone();
    assert_eq!(pods_in(&scoped(quota("q", &hard), &["Terminating"])), "1");
    assert_eq!(
        pods_in(&scoped(quota("q", &hard), &["NotTerminating"])),
        "3"
    );
    assert_eq!(pods_in(&scoped(quota("q", &hard), &["BestEffort"])), "2");
    assert_eq!(
        pods_in(&scoped(
            quota("q", &hard),
            &["NotBestEffort", "NotTerminating"]
        )),
        "2"
    );
    // Scoped quotas count no other objects.
    let q = scoped(quota("q", &hard), &["BestEffort"]);
    assert_eq!(used_of(&q, &snap, at(0))["configmaps"], "0");

    let selector = |op: &str, values: &[&str]| {
        let mut q = quota("q", &hard);
        q.spec.get_or_insert_default().scope_selector = Some(ScopeSelector {
            match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                scope_name: "PriorityClass".into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| (*v).to_string()).collect()),
            }]),
        });
        q
    };
    assert_eq!(pods_in(&selector("In", &["high", "mid"])), "1");
    assert_eq!(pods_in(&selector("NotIn", &["high"])), "3");
    assert_eq!(pods_in(&selector("Exists", &[])), "1");
    assert_eq!(pods_in(&selector("DoesNotExist", &[])), "3");
}

#[test]
fn claims_count_storage_per_class_in_whole_bytes() {
    let q = quota(
        "q",
        &[
            ("persistentvolumeclaims", "5"),
            ("requests.storage", "10Gi"),
            ("gold.storageclass.storage.k8s.io/requests.storage", "5Gi"),
            (
                "gold.storageclass.storage.k8s.io/persistentvolumeclaims",
                "5",
            ),
        ],
    );
    let claim = |name: &str, class: Option<&str>, size: &str| -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"storageClassName": class, "resources": {"requests": {"storage": size}}},
        }))
        .expect("claim")
    };
    let mut grown = claim("c", Some("gold"), "1Gi");
    grown.status = Some(Default::default());
    if let Some(s) = grown.status.as_mut() {
        s.allocated_resources = Some(list(&[("storage", "2Gi")]));
    }
    let claims = [
        claim("a", Some("gold"), "1Gi"),
        claim("b", None, "1.5"),
        grown,
    ];
    let snap = Snapshot {
        claims: claims.iter().collect(),
        ..Default::default()
    };
    assert_eq!(
        used_of(&q, &snap, at(0)),
        expect(&[
            (
                "gold.storageclass.storage.k8s.io/persistentvolumeclaims",
                "2"
            ),
            ("gold.storageclass.storage.k8s.io/requests.storage", "3Gi"),
            ("persistentvolumeclaims", "3"),
            ("requests.storage", "3221225474"),
        ])
    );
}

#[test]
fn sync_writes_only_what_changed() {
    let p = cpu_pod("a", "250m");
    let snap = Snapshot {
        pods: vec![&p],
        ..Default::default()
    };
    // A new quota: hard mirrored (canonically), used measured.
    let fresh = quota("q", &[("requests.cpu", "1000m"), ("pods", "2")]);
    assert_eq!(
        plan(&[&fresh], &snap, at(0)),
        Plan {
            updates: vec![Update {
                namespace: "default".into(),
                name: "q".into(),
                status: ResourceQuotaStatus {
                    hard: Some(list(&[("requests.cpu", "1"), ("pods", "2")])),
                    used: Some(list(&[("requests.cpu", "250m"), ("pods", "1")])),
                },
            }],
            wake_after: None,
        }
    );
    // Up to date (equal by value): nothing to write.
    let mut current = fresh.clone();
    current.status = Some(ResourceQuotaStatus {
        hard: Some(list(&[("requests.cpu", "1000m"), ("pods", "2")])),
        used: Some(list(&[("requests.cpu", "0.25"), ("pods", "1")])),
    });
    assert_eq!(plan(&[&current], &snap, at(0)), Plan::default());
    // A raised limit is mirrored; a resource no evaluator tracks keeps its last observation;
    // a removed one is dropped.
    let mut raised = quota("q", &[("requests.cpu", "2"), ("pods", "2"), ("foo", "3")]);
    raised.status = Some(ResourceQuotaStatus {
        hard: Some(list(&[
            ("requests.cpu", "1"),
            ("pods", "2"),
            ("secrets", "1"),
        ])),
        used: Some(list(&[
            ("requests.cpu", "250m"),
            ("pods", "1"),
            ("foo", "1"),
            ("secrets", "0"),
        ])),
    });
    let out = plan(&[&raised], &snap, at(0));
    assert_eq!(out.updates.len(), 1);
    let status = &out.updates[0].status;
    assert_eq!(
        status.hard,
        Some(list(&[("requests.cpu", "2"), ("pods", "2"), ("foo", "3")]))
    );
    assert_eq!(
        status.used,
        Some(list(&[
            ("requests.cpu", "250m"),
            ("pods", "1"),
            ("foo", "1")
        ]))
    );
}
