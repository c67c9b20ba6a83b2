//! hostPorts programmed by the proxy (in place of the CNI portmap plugin), checked with real
//! traffic between network namespaces this test creates (no default route on the "node", no
//! link to the host), after the network-safety guard is in place.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use k8rs_testing::{eventually, netguard};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use support::{ApiServer, Lab, NODE_IP, NODE_NAME, busybox_echo, nft_table, proxy_config, quiet};
use support::{connect, sh, start_proxy};

/// The node's second address, where the hostIP-restricted mapping answers.
const SECOND_IP: &str = "10.42.255.2";

fn host_port(host_port: i32, host_ip: Option<&str>) -> ContainerPort {
    ContainerPort {
        container_port: 8080,
        host_port: Some(host_port),
        host_ip: host_ip.map(String::from),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Pod `name` bound to this node, publishing 18080 (any address) and 18081 (only on
/// [`SECOND_IP`]) for its container port 8080.
fn web_pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(NODE_NAME.into()),
            containers: vec![Container {
                name: "web".into(),
                image: Some("busybox".into()),
                ports: Some(vec![
                    host_port(18080, None),
                    host_port(18081, Some(SECOND_IP)),
                ]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// The pod running at `ip`, as the kubelet would report it.
async fn set_running(pods: &Api<Pod>, name: &str, ip: Ipv4Addr) {
    let status = serde_json::json!({
        "status": { "phase": "Running", "podIP": ip.to_string(), "podIPs": [{ "ip": ip.to_string() }] }
    });
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_reach_the_pod_from_outside_the_node_and_localhost() {
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::new("hostport-test");
    let node = lab.node().expect("node");
    let second = format!("{SECOND_IP}/32");
    sh(&["ip", "-n", &node, "addr", "add", &second, "dev", "lo"]).expect("second address");
    let web_ip = Ipv4Addr::new(10, 42, 0, 21);
    let web = lab.pod(&node, web_ip).expect("web pod");
    lab.spawn(quiet(busybox_echo(&web.ns, 8080, "web")))
        .expect("busybox nc");
    // Another machine reaching the node: a namespace routed through it.
    let client = lab
        .pod(&node, Ipv4Addr::new(10, 42, 200, 2))
        .expect("client");

    let api = ApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(api.client(), "default");
    pods.create(&PostParams::default(), &web_pod("web"))
        .await
        .expect("create pod");
    set_running(&pods, "web", web_ip).await;
    let config = proxy_config(&node, Duration::from_millis(50));
    let proxy = start_proxy(api.client(), config.clone());

    let node_ip = NODE_IP.to_string();
    let reply = eventually("hostPort from outside", Duration::from_secs(10), || async {
        connect(&client.ns, &node_ip, 18080).ok()
    })
    .await;
    assert_eq!(reply, "web");
    assert_eq!(
        connect(&node, &node_ip, 18080).as_deref(),
        Ok("web"),
        "from the node"
    );
    assert_eq!(
        connect(&node, "127.0.0.1", 18080).as_deref(),
        Ok("web"),
        "from the node's localhost (SNAT, route_localnet)"
    );
    assert_eq!(
        connect(&web.ns, &node_ip, 18080).as_deref(),
        Ok("web"),
        "hairpin: the pod through its own hostPort"
    );

    // hostIP: only that address answers.
    assert_eq!(connect(&client.ns, SECOND_IP, 18081).as_deref(), Ok("web"));
    assert_eq!(connect(&node, SECOND_IP, 18081).as_deref(), Ok("web"));
    let err = connect(&client.ns, &node_ip, 18081).expect_err("not on the primary address");
    assert!(err.contains("refused"), "nothing listens there: {err}");

    // The pod goes away: its elements go with it.
    let table = nft_table(&node);
    assert!(table.contains("tcp . 18080 : 10.42.0.21 . 8080"), "{table}");
    pods.delete("web", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    eventually("elements removed", Duration::from_secs(10), || async {
        let t = nft_table(&node);
        (!t.contains("18080") && !t.contains("18081") && !t.contains("10.42.0.21")).then_some(())
    })
    .await;
    let err = connect(&client.ns, &node_ip, 18080).expect_err("gone");
    assert!(err.contains("refused"), "{err}");

    proxy.cancel();
    k8rs_proxy::cleanup(&config).expect("cleanup");
}
