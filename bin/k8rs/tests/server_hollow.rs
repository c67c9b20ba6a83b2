//! `k8rs hollow-nodes` against `k8rs server`: simulated nodes register, get pod ranges from the
//! server's node IPAM, stay Ready, and run the pods bound to them.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, eventually};

struct Hollow(Child);

impl Hollow {
    /// Runs `k8rs hollow-nodes ARGS` against the server, logging next to its data.
    fn start(s: &Server, args: &[&str]) -> Hollow {
        let log = std::fs::File::create(s.data_dir().join("hollow.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_k8rs"))
            .arg("hollow-nodes")
            .args(args)
            .arg(format!("--kubeconfig={}", s.kubeconfig().display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Hollow(child)
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hollow_nodes_register_and_run_pods() {
    let s = Server::start(&[]);
    let _hollow = Hollow::start(&s, &["--count=3", "--zone=z1"]);
    let ready = eventually(Duration::from_secs(20), || {
        let out = s.kubectl_raw(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.spec.podCIDR} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter(|l| l.starts_with("10.42.") && l.ends_with(" True"))
            .count()
            == 3
    });
    assert!(
        ready,
        "nodes: {}",
        s.kubectl(&["get", "nodes", "-o", "wide"])
    );
    let nodes = s.kubectl(&["get", "nodes"]);
    assert!(nodes.contains("hollow-node-0   Ready"), "{nodes}");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: hollow-node-1\n  containers: [{name: c, image: localhost/busybox:1}]\n";
    s.kubectl_stdin(&["apply", "-f", "-"], pod);
    let cidr = s.kubectl(&[
        "get",
        "node",
        "hollow-node-1",
        "-o",
        "jsonpath={.spec.podCIDR}",
    ]);
    let prefix = cidr.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap();
    let running = eventually(Duration::from_secs(20), || {
        s.kubectl(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.status.phase} {.status.podIP}",
        ])
        .starts_with(&format!("Running {prefix}."))
    });
    assert!(running, "{}", s.kubectl(&["get", "pod", "p", "-o", "yaml"]));
    assert!(
        s.kubectl(&["get", "pods", "-o", "wide"])
            .contains("1/1     Running")
    );
    assert_eq!(
        s.kubectl(&[
            "get",
            "node",
            "hollow-node-2",
            "-o",
            "jsonpath={.metadata.labels.topology\\.kubernetes\\.io/zone}"
        ]),
        "z1"
    );
    s.kubectl(&["delete", "pod", "p", "--wait"]);
}

#[test]
fn the_scheduler_places_pods_on_hollow_nodes() {
    let s = Server::start(&[]);
    let _hollow = Hollow::start(&s, &["--count=2", "--cpu=1"]);
    assert!(eventually(Duration::from_secs(20), || s
        .kubectl(&["get", "nodes", "-o", "name"])
        .lines()
        .count()
        == 2));
    for i in 0..4 {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, labels: {{app: web}}}}\nspec:\n  containers: [{{name: c, image: localhost/busybox:1, resources: {{requests: {{cpu: 400m}}}}}}]\n"
        );
        s.kubectl_stdin(&["apply", "-f", "-"], &pod);
    }
    let placed = eventually(Duration::from_secs(30), || {
        let out = s.kubectl(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}",
        ]);
        out.lines().filter(|l| *l == "Running").count() == 4
    });
    assert!(placed, "{}", s.kubectl(&["get", "pods", "-o", "wide"]));
    // Two 400m pods per 1-cpu node: a fifth does not fit and says why.
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers: [{name: c, image: localhost/busybox:1, resources: {requests: {cpu: 400m}}}]\n");
    let explained = eventually(Duration::from_secs(20), || {
        s.kubectl(&["describe", "pod", "big"])
            .contains("0/2 nodes are available: 2 Insufficient cpu.")
    });
    assert!(explained, "{}", s.kubectl(&["describe", "pod", "big"]));
    let d = s.kubectl(&["describe", "pod", "p0"]);
    assert!(
        d.contains("Scheduled") && d.contains("Successfully assigned default/p0 to hollow-node-"),
        "{d}"
    );
}

#[test]
fn selectors_taints_and_anti_affinity_through_kubectl() {
    let s = Server::start(&[]);
    let _hollow = Hollow::start(&s, &["--count=3"]);
    assert!(eventually(Duration::from_secs(20), || s
        .kubectl(&["get", "nodes", "-o", "name"])
        .lines()
        .count()
        == 3));
    s.kubectl(&[
        "taint",
        "nodes",
        "hollow-node-0",
        "dedicated=infra:NoSchedule",
    ]);
    s.kubectl(&["label", "nodes", "hollow-node-2", "disk=ssd"]);
    let node_of = |pod: &str| s.kubectl(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"]);
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: ssd}\nspec:\n  nodeSelector: {disk: ssd}\n  containers: [{name: c, image: localhost/busybox:1}]\n");
    assert!(
        eventually(Duration::from_secs(20), || node_of("ssd")
            == "hollow-node-2"),
        "ssd on {}",
        node_of("ssd")
    );
    let anti = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: b}}}}\nspec:\n  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {{matchLabels: {{app: b}}}}\n        topologyKey: kubernetes.io/hostname\n  containers: [{{name: c, image: localhost/busybox:1}}]\n"
        )
    };
    for name in ["b1", "b2"] {
        s.kubectl_stdin(&["apply", "-f", "-"], &anti(name));
    }
    assert!(eventually(Duration::from_secs(20), || !node_of("b1")
        .is_empty()
        && !node_of("b2").is_empty()));
    let mut nodes = [node_of("b1"), node_of("b2")];
    nodes.sort();
    assert_eq!(
        nodes,
        ["hollow-node-1", "hollow-node-2"],
        "spread apart and off the tainted node"
    );
    s.kubectl_stdin(&["apply", "-f", "-"], &anti("b3"));
    let why = eventually(Duration::from_secs(20), || {
        let d = s.kubectl(&["describe", "pod", "b3"]);
        d.contains("0/3 nodes are available:")
            && d.contains("1 node(s) had untolerated taint {dedicated: infra}")
            && d.contains("2 node(s) didn't match pod anti-affinity rules")
    });
    assert!(why, "{}", s.kubectl(&["describe", "pod", "b3"]));
}

#[test]
fn topology_spread_and_preemption_through_kubectl() {
    let s = Server::start(&[]);
    let _a = Hollow::start(
        &s,
        &["--count=2", "--zone=za", "--name-prefix=za-", "--cpu=1"],
    );
    let _b = Hollow::start(
        &s,
        &["--count=2", "--zone=zb", "--name-prefix=zb-", "--cpu=1"],
    );
    assert!(eventually(Duration::from_secs(20), || s
        .kubectl(&["get", "nodes", "-o", "name"])
        .lines()
        .count()
        == 4));
    // Hard spreading across zones: six pods land three and three.
    let spread = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: s}}}}\nspec:\n  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector: {{matchLabels: {{app: s}}}}\n  containers: [{{name: c, image: localhost/busybox:1, resources: {{requests: {{cpu: 10m}}}}}}]\n"
        )
    };
    for i in 0..6 {
        s.kubectl_stdin(&["apply", "-f", "-"], &spread(&format!("s{i}")));
    }
    let placed = || {
        s.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=s",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(20), || placed()
            .lines()
            .filter(|l| !l.is_empty())
            .count()
            == 6),
        "{}",
        placed()
    );
    let nodes = placed();
    let za = nodes.lines().filter(|l| l.starts_with("za-")).count();
    assert_eq!((za, 6 - za), (3, 3), "spread across zones: {nodes}");

    // Preemption: fill every node's cpu with low-priority pods, then a high-priority pod
    // evicts one of them and runs.
    s.kubectl(&["create", "priorityclass", "low", "--value=10"]);
    s.kubectl(&["create", "priorityclass", "high", "--value=1000"]);
    let filler = |name: &str, class: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  priorityClassName: {class}\n  containers: [{{name: c, image: localhost/busybox:1, resources: {{requests: {{cpu: 900m}}}}}}]\n"
        )
    };
    for i in 0..4 {
        s.kubectl_stdin(&["apply", "-f", "-"], &filler(&format!("low{i}"), "low"));
    }
    let running_low = || {
        s.kubectl(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}{\"\\n\"}{end}",
        ])
        .lines()
        .filter(|l| l.starts_with("low") && !l.ends_with('='))
        .count()
    };
    assert!(eventually(Duration::from_secs(20), || running_low() == 4));
    s.kubectl_stdin(&["apply", "-f", "-"], &filler("urgent", "high"));
    let preempted = eventually(Duration::from_secs(30), || {
        let node = s.kubectl(&["get", "pod", "urgent", "-o", "jsonpath={.spec.nodeName}"]);
        !node.is_empty()
    });
    let events = s.kubectl(&["get", "events", "-o", "wide"]);
    assert!(
        preempted,
        "urgent never ran: {}\n{events}",
        s.kubectl(&["describe", "pod", "urgent"])
    );
    assert!(
        events.contains("Preempted") && events.contains("Preempted by pod"),
        "a victim was told why: {events}"
    );
    let describe = s.kubectl(&["describe", "pod", "urgent"]);
    assert!(
        describe.contains("Successfully assigned default/urgent to "),
        "{describe}"
    );
}

#[test]
fn load_balancer_services_get_node_addresses_and_a_taken_port_stays_pending() {
    let s = Server::start(&[]);
    let _hollow = Hollow::start(&s, &["--count=2"]);
    assert!(eventually(Duration::from_secs(20), || s
        .kubectl(&["get", "nodes", "-o", "name"])
        .lines()
        .count()
        == 2));
    s.kubectl(&[
        "create",
        "service",
        "loadbalancer",
        "first",
        "--tcp=80:8080",
    ]);
    std::thread::sleep(Duration::from_millis(1100)); // a later creationTimestamp
    s.kubectl(&[
        "create",
        "service",
        "loadbalancer",
        "second",
        "--tcp=80:8080",
    ]);
    let ingress = |name: &str| {
        s.kubectl(&[
            "get",
            "svc",
            name,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(20), || !ingress("first").is_empty()),
        "{}",
        s.kubectl(&["get", "svc", "-o", "wide"])
    );
    let node_ips = s.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    for ip in ingress("first").split_whitespace() {
        assert!(node_ips.contains(ip), "{ip} is a node address: {node_ips}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        ingress("second").is_empty(),
        "port 80 is taken: stays Pending"
    );
    assert!(s.kubectl(&["get", "svc", "second"]).contains("<pending>"));
    // Freeing the port lets the later Service have it.
    s.kubectl(&["delete", "svc", "first"]);
    assert!(eventually(Duration::from_secs(20), || !ingress("second").is_empty()));
}
