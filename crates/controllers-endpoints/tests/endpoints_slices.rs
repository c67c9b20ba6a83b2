//! The Endpoints, EndpointSlice and mirroring controllers on a real API server with hollow nodes
//! and the scheduler, seen through the API and `kubectl`. One server for the whole binary; each
//! test works in its own namespace.

use std::process::Command;
use std::sync::LazyLock;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers_endpoints::{endpoints, endpointslice, mirroring};
use k8rs_testing::{TestServer, eventually};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::OnceCell;

const WAIT: Duration = Duration::from_secs(20);

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});
static ENV: OnceCell<TestServer> = OnceCell::const_new();

/// The shared server with hollow nodes, the scheduler, pod CIDRs and the three controllers
/// (slices of at most 3 endpoints, so that splitting shows with few pods).
async fn server() -> &'static TestServer {
    ENV.get_or_init(|| async {
        let server = TestServer::start().await;
        let (client, token) = (server.client(), server.shutdown_token());
        tokio::spawn(assign_pod_cidrs(client.clone()));
        let hollow = k8rs_hollow::HollowConfig {
            count: 2,
            zone: Some("zone-a".into()),
            ..Default::default()
        };
        tokio::spawn(k8rs_hollow::run(client.clone(), hollow, token.clone()));
        let sched = k8rs_scheduler::SchedulerConfig::default();
        tokio::spawn(k8rs_scheduler::run(client.clone(), sched, token.clone()));
        // One set of caches for the three controllers, as in the controller manager.
        let informers = SharedInformers::new(client.clone(), token.clone());
        let ep = endpoints::EndpointsConfig::default();
        tokio::spawn(endpoints::run(informers.clone(), ep, token.clone()));
        let slices = endpointslice::EndpointSliceConfig {
            max_endpoints_per_slice: 3,
            ..Default::default()
        };
        tokio::spawn(endpointslice::run(informers.clone(), slices, token.clone()));
        let mirror = mirroring::MirroringConfig::default();
        tokio::spawn(mirroring::run(informers, mirror, token));
        server
    })
    .await
}

/// Node IPAM stand-in: every node gets `10.42.<i>.0/24`.
async fn assign_pod_cidrs(client: kube::Client) {
    let nodes: Api<Node> = Api::all(client);
    let mut next = 0u32;
    loop {
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            for node in list {
                if node
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_ref())
                    .is_some()
                {
                    continue;
                }
                let cidr = format!("10.42.{next}.0/24");
                next += 1;
                let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
                let name = node.metadata.name.clone().unwrap_or_default();
                let _ = nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

async fn create_pod(client: &kube::Client, ns: &str, name: &str, labels: serde_json::Value) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
}

async fn create_service(client: &kube::Client, ns: &str, body: serde_json::Value) {
    let svc: Service = serde_json::from_value(body).unwrap();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
}

async fn slices_of(client: &kube::Client, ns: &str, svc: &str) -> Vec<EndpointSlice> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn ready_count(slices: &[EndpointSlice]) -> usize {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .count()
}

fn kubectl(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn endpoints_and_slices_follow_pods() {
    RT.block_on(async {
        let server = server().await;
        let client = server.client();
        let ns = "follow";
        namespace(&client, ns).await;
        create_service(
            &client,
            ns,
            json!({"metadata": {"name": "web", "labels": {"tier": "front"}},
                   "spec": {"selector": {"app": "web"},
                            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        )
        .await;
        for i in 0..5 {
            create_pod(&client, ns, &format!("web-{i}"), json!({"app": "web"})).await;
        }
        create_pod(&client, ns, "other", json!({"app": "db"})).await;

        let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
        let ep = eventually("5 ready addresses", WAIT, || async {
            let ep = eps.get("web").await.ok()?;
            let subset = ep.subsets.clone()?.pop()?;
            (subset.addresses.as_ref()?.len() == 5).then_some(ep)
        })
        .await;
        let subset = &ep.subsets.as_ref().unwrap()[0];
        assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
        let address = &subset.addresses.as_ref().unwrap()[0];
        assert!(address.node_name.is_some());
        assert_eq!(
            address.target_ref.as_ref().unwrap().kind.as_deref(),
            Some("Pod")
        );
        let annotations = ep.metadata.annotations.clone().unwrap_or_default();
        assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"));

        let slices = eventually("5 ready endpoints in 2 slices", WAIT, || async {
            let slices = slices_of(&client, ns, "web").await;
            (ready_count(&slices) == 5).then_some(slices)
        })
        .await;
        let shape: Vec<(Option<String>, usize)> = slices
            .iter()
            .map(|s| (s.metadata.name.clone(), s.endpoints.len()))
            .collect();
        assert_eq!(slices.len(), 2, "at most 3 endpoints per slice: {shape:?}");
        for slice in &slices {
            let labels = slice.metadata.labels.clone().unwrap_or_default();
            assert_eq!(
                labels["endpointslice.kubernetes.io/managed-by"],
                "endpointslice-controller.k8s.io"
            );
            assert_eq!(labels["tier"], "front");
            assert_eq!(slice.endpoints[0].zone.as_deref(), Some("zone-a"));
            let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str()),
                ("Service", "web")
            );
        }
        let names: Vec<_> = slices.iter().map(|s| s.metadata.name.clone()).collect();

        let out = kubectl(
            server,
            &[
                "get",
                "endpointslices",
                "-n",
                ns,
                "-l",
                "kubernetes.io/service-name=web",
            ],
        );
        assert!(out.contains("IPv4") && out.contains("8080"), "{out}");
        let out = kubectl(server, &["get", "endpoints", "web", "-n", ns]);
        assert!(out.contains(":8080"), "{out}");

        // A pod goes: both views drop it, and the slices are updated in place.
        Api::<Pod>::namespaced(client.clone(), ns)
            .delete("web-0", &DeleteParams::default().grace_period(0))
            .await
            .expect("delete pod");
        eventually("4 addresses", WAIT, || async {
            let ep = eps.get("web").await.ok()?;
            let n: usize = ep
                .subsets?
                .iter()
                .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                .sum();
            (n == 4).then_some(())
        })
        .await;
        let slices = eventually("4 endpoints in slices", WAIT, || async {
            let slices = slices_of(&client, ns, "web").await;
            let total: usize = slices.iter().map(|s| s.endpoints.len()).sum();
            (total == 4).then_some(slices)
        })
        .await;
        let after: Vec<_> = slices.iter().map(|s| s.metadata.name.clone()).collect();
        for name in &after {
            assert!(names.contains(name), "slice {name:?} was recreated");
        }
    });
}

#[test]
fn not_ready_addresses_and_headless_hostnames() {
    RT.block_on(async {
        let server = server().await;
        let client = server.client();
        let ns = "headless";
        namespace(&client, ns).await;
        create_service(
            &client,
            ns,
            json!({"metadata": {"name": "db"},
                   "spec": {"selector": {"app": "db"}, "clusterIP": "None",
                            "ports": [{"name": "sql", "port": 5432}]}}),
        )
        .await;
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "db-0", "labels": {"app": "db"}},
            "spec": {"hostname": "db-0", "subdomain": "db",
                     "containers": [{"name": "c", "image": "postgres"}]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &pod)
            .await
            .expect("pod");
        let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
        let ep = eventually("a hostname address", WAIT, || async {
            let ep = eps.get("db").await.ok()?;
            let addr = ep
                .subsets
                .as_ref()?
                .first()?
                .addresses
                .as_ref()?
                .first()?
                .clone();
            addr.hostname.is_some().then_some(ep)
        })
        .await;
        let labels = ep.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("service.kubernetes.io/headless")
                .map(String::as_str),
            Some("")
        );
        let address = &ep.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
        assert_eq!(address.hostname.as_deref(), Some("db-0"));
        eventually("a slice with the hostname", WAIT, || async {
            let slices = slices_of(&client, ns, "db").await;
            let ep = slices.first()?.endpoints.first()?.clone();
            (ep.hostname.as_deref() == Some("db-0")).then_some(())
        })
        .await;
    });
}

#[test]
fn selectorless_endpoints_are_mirrored() {
    RT.block_on(async {
        let server = server().await;
        let client = server.client();
        let ns = "mirror";
        namespace(&client, ns).await;
        create_service(
            &client,
            ns,
            json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"port": 443}]}}),
        )
        .await;
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "ext"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.11"}],
                         "ports": [{"port": 443}]}]
        }))
        .unwrap();
        let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
        eps.create(&PostParams::default(), &ep)
            .await
            .expect("endpoints");
        let slices = eventually("a mirrored slice", WAIT, || async {
            let slices = slices_of(&client, ns, "ext").await;
            (ready_count(&slices) == 2).then_some(slices)
        })
        .await;
        let labels = slices[0].metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "endpointslicemirroring-controller.k8s.io"
        );
        let out = kubectl(server, &["get", "endpointslices", "-n", ns]);
        assert!(out.contains("192.0.2.10"), "{out}");

        // The hand-written Endpoints change: the mirror follows.
        let patch =
            json!({"subsets": [{"addresses": [{"ip": "192.0.2.12"}], "ports": [{"port": 443}]}]});
        eps.patch("ext", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch endpoints");
        eventually("the mirror updated", WAIT, || async {
            let slices = slices_of(&client, ns, "ext").await;
            let ips: Vec<_> = slices
                .iter()
                .flat_map(|s| &s.endpoints)
                .map(|e| e.addresses[0].clone())
                .collect();
            (ips == ["192.0.2.12"]).then_some(())
        })
        .await;
        // And the endpoints controller leaves the hand-written Endpoints alone.
        let kept = eps.get("ext").await.expect("endpoints kept");
        assert_eq!(
            kept.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip,
            "192.0.2.12"
        );
    });
}
