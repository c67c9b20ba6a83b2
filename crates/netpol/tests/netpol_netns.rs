//! NetworkPolicies enforced in a network namespace from a real API server, checked with real
//! traffic. A "node" namespace holds a bridge; three "pod" namespaces hang off it (addresses in
//! 10.42.0.0/24, no route out, no link to the host). Everything runs after the network-safety
//! guard is in place, and every namespace and process is removed on drop.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8rs_netpol::NetpolConfig;
use k8rs_testing::{TestServer, eventually, netguard};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

static NEXT: AtomicU32 = AtomicU32::new(0);
const WAIT: Duration = Duration::from_secs(15);

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("spawn");
    assert!(status.success(), "{args:?} failed");
}

/// Network namespaces and processes, removed on drop (also on failure).
#[derive(Default)]
struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
    stop: Option<CancellationToken>,
}

impl Lab {
    fn netns(&mut self) -> String {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("k8rs-netpol-test-{}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// The node: a bridge at 10.42.0.1/24, bridged IPv4 through netfilter (the agent's job).
    fn node(&mut self) -> String {
        let node = self.netns();
        sh(&["ip", "-n", &node, "link", "add", "br0", "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            &node,
            "addr",
            "add",
            "10.42.0.1/24",
            "dev",
            "br0",
        ]);
        sh(&["ip", "-n", &node, "link", "set", "br0", "up"]);
        for setting in [
            "net.ipv4.ip_forward=1",
            "net.bridge.bridge-nf-call-iptables=1",
        ] {
            sh(&["ip", "netns", "exec", &node, "sysctl", "-qw", setting]);
        }
        node
    }

    /// A pod namespace at `ip` on the node's bridge, answering its `name` on TCP 8080 and 9090.
    fn pod(&mut self, node: &str, ip: &str, name: &str) -> String {
        let pod = self.netns();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let (host_if, pod_if) = (format!("np{n}h"), format!("np{n}p"));
        sh(&[
            "ip", "-n", node, "link", "add", &host_if, "type", "veth", "peer", "name", &pod_if,
            "netns", &pod,
        ]);
        sh(&["ip", "-n", node, "link", "set", &host_if, "master", "br0"]);
        sh(&["ip", "-n", node, "link", "set", &host_if, "up"]);
        let cidr = format!("{ip}/24");
        sh(&["ip", "-n", &pod, "addr", "add", &cidr, "dev", &pod_if]);
        sh(&["ip", "-n", &pod, "link", "set", &pod_if, "up"]);
        for port in ["8080", "9090"] {
            let child = Command::new("ip")
                .args([
                    "netns", "exec", &pod, "busybox", "nc", "-ll", "-p", port, "-e", "echo", name,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("busybox nc");
            self.children.push(child);
        }
        pod
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.cancel();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Connects from namespace `ns` to `ip:port`: the reply, if any.
async fn connect(ns: &str, ip: &str, port: u16) -> Option<String> {
    let args: Vec<String> = [
        "2", "ip", "netns", "exec", ns, "busybox", "nc", "-w", "1", ip,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([port.to_string()])
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(&args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
    })
    .await
    .ok()?
    .ok()?;
    let reply = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!reply.is_empty()).then_some(reply)
}

/// Waits until `from` reaches (`open`) or cannot reach `ip:port`.
async fn expect(from: &str, ip: &str, port: u16, open: bool, what: &str) {
    eventually(what, WAIT, || async {
        (connect(from, ip, port).await.is_some() == open).then_some(())
    })
    .await;
}

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "np", "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .expect("pod")
}

fn policy(name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "np"}, "spec": spec}))
        .expect("policy")
}

async fn create_pods(client: &kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": "np", "labels": {"team": "a"}}}))
        .expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "np");
    for (name, ip, labels) in [
        ("server", "10.42.0.2", json!({"app": "server"})),
        ("client", "10.42.0.3", json!({"role": "client"})),
        ("other", "10.42.0.4", json!({"role": "other"})),
    ] {
        pods.create(&PostParams::default(), &pod(name, labels))
            .await
            .expect("pod");
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("pod status");
    }
}

fn table(node: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            node,
            "nft",
            "list",
            "table",
            "inet",
            "k8rs-netpol",
        ])
        .output()
        .expect("nft list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_allow_and_deny_real_traffic() {
    netguard::ensure().expect("network-safety guard must be in place");
    let mut lab = Lab::default();
    let node = lab.node();
    let server_ns = lab.pod(&node, "10.42.0.2", "server");
    let client_ns = lab.pod(&node, "10.42.0.3", "client");
    let other_ns = lab.pod(&node, "10.42.0.4", "other");
    let _ = &server_ns;

    let server = TestServer::start().await;
    let client = server.client();
    create_pods(&client).await;
    let stop = CancellationToken::new();
    lab.stop = Some(stop.clone());
    let config = NetpolConfig {
        node_name: "node-1".into(),
        nft_command: ["ip", "netns", "exec", &node, "nft"]
            .map(String::from)
            .to_vec(),
        resync_period: Duration::from_secs(2),
    };
    let task = tokio::spawn(k8rs_netpol::run(
        client.clone(),
        config.clone(),
        stop.clone(),
    ));

    // Default allow, with the table in place.
    eventually("table loaded", WAIT, || async {
        table(&node).contains("ingress-pods").then_some(())
    })
    .await;
    expect(&client_ns, "10.42.0.2", 8080, true, "client reaches server").await;
    expect(&other_ns, "10.42.0.2", 8080, true, "other reaches server").await;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "np");
    let pp = PostParams::default();
    // Deny all ingress to the server.
    let deny = policy(
        "deny",
        json!({"podSelector": {"matchLabels": {"app": "server"}}}),
    );
    policies.create(&pp, &deny).await.expect("deny");
    expect(
        &client_ns,
        "10.42.0.2",
        8080,
        false,
        "deny-all blocks client",
    )
    .await;
    expect(&other_ns, "10.42.0.2", 9090, false, "deny-all blocks other").await;
    expect(
        &server_ns,
        "10.42.0.3",
        8080,
        true,
        "server's egress is untouched",
    )
    .await;

    // Allow from role=client only.
    let allow = policy(
        "allow-client",
        json!({"podSelector": {"matchLabels": {"app": "server"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    );
    policies.create(&pp, &allow).await.expect("allow");
    expect(
        &client_ns,
        "10.42.0.2",
        8080,
        true,
        "labelled client admitted",
    )
    .await;
    expect(
        &other_ns,
        "10.42.0.2",
        8080,
        false,
        "unlabelled pod still blocked",
    )
    .await;

    // A port rule: anyone, on 9090 only.
    let port = policy(
        "port-9090",
        json!({"podSelector": {"matchLabels": {"app": "server"}},
               "ingress": [{"ports": [{"port": 9090}]}]}),
    );
    policies.create(&pp, &port).await.expect("port");
    expect(&other_ns, "10.42.0.2", 9090, true, "port rule admits 9090").await;
    expect(
        &other_ns,
        "10.42.0.2",
        8080,
        false,
        "port rule keeps 8080 shut",
    )
    .await;

    // Egress: the client may reach the server's named port only.
    let egress = policy(
        "client-egress",
        json!({"podSelector": {"matchLabels": {"role": "client"}},
               "policyTypes": ["Egress"],
               "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}],
                           "ports": [{"port": "http"}]}]}),
    );
    policies.create(&pp, &egress).await.expect("egress");
    expect(
        &client_ns,
        "10.42.0.4",
        8080,
        false,
        "egress blocks client to other",
    )
    .await;
    expect(
        &client_ns,
        "10.42.0.2",
        8080,
        true,
        "egress admits client to server:http",
    )
    .await;
    expect(
        &client_ns,
        "10.42.0.2",
        9090,
        false,
        "egress blocks other ports",
    )
    .await;

    // A periodic full resync keeps the same verdicts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    expect(
        &client_ns,
        "10.42.0.2",
        8080,
        true,
        "after resync: client admitted",
    )
    .await;
    expect(
        &other_ns,
        "10.42.0.2",
        8080,
        false,
        "after resync: other blocked",
    )
    .await;

    // Removing every policy restores traffic and empties the table.
    for name in ["deny", "allow-client", "port-9090", "client-egress"] {
        policies
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete policy");
    }
    expect(
        &other_ns,
        "10.42.0.2",
        8080,
        true,
        "traffic restored to server",
    )
    .await;
    expect(
        &client_ns,
        "10.42.0.4",
        8080,
        true,
        "client egress restored",
    )
    .await;
    eventually("pod chains removed", WAIT, || async {
        let t = table(&node);
        (!t.contains("chain ingress-") && !t.contains("chain egress-")).then_some(())
    })
    .await;

    stop.cancel();
    let result = tokio::time::timeout(WAIT, task).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "run ends cleanly: {result:?}"
    );
    k8rs_netpol::cleanup(&config).expect("cleanup");
    assert!(!table(&node).contains("k8rs-netpol"), "table removed");
}
