//! `k8rs hollow-nodes` against `k8rs server`: simulated nodes register, get pod ranges from the
//! server's node IPAM, stay Ready, and run the pods bound to them.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, eventually};

struct Hollow(Child);

impl Drop for Hollow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hollow_nodes_register_and_run_pods() {
    let s = Server::start(&[]);
    let log = std::fs::File::create(s.data_dir().join("hollow.log")).unwrap();
    let _hollow = Hollow(
        Command::new(env!("CARGO_BIN_EXE_k8rs"))
            .args(["hollow-nodes", "--count=3", "--zone=z1"])
            .arg(format!("--kubeconfig={}", s.kubeconfig().display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
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
