//! The sync shell driven by a recording fake [`Exec`]: which commands one sync runs.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};

use crate::Error;
use crate::config::{Commands, PodNetConfig};
use crate::dataplane::Dataplane;
use crate::exec::Exec;
use crate::render;

/// Answers commands from a table (absent: empty success), recording each call.
#[derive(Default)]
struct FakeExec {
    answers: HashMap<String, Result<String, String>>,
    calls: Mutex<Vec<String>>,
}

impl FakeExec {
    fn answer(mut self, command: &str, out: Result<&str, &str>) -> Self {
        let out = out.map(str::to_string).map_err(str::to_string);
        self.answers.insert(command.to_string(), out);
        self
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Exec for FakeExec {
    async fn run(&self, argv: &[String], stdin: Option<&str>) -> Result<String, Error> {
        let command = argv.join(" ");
        let recorded = match stdin {
            Some(text) => format!("{command} <<{}", text.lines().count()),
            None => command.clone(),
        };
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(recorded);
        }
        match self
            .answers
            .get(&command)
            .cloned()
            .unwrap_or(Ok(String::new()))
        {
            Ok(out) => Ok(out),
            Err(stderr) => Err(Error::CommandFailed { command, stderr }),
        }
    }

    async fn write_proc_sys(&self, key: &str, value: &str) -> Result<(), Error> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(format!("write /proc/sys {key}={value}"));
        }
        Ok(())
    }
}

const LINKS: &str = r#"[{"ifname":"eth0","flags":["UP"],"mtu":1500,"address":"aa:bb:cc:dd:ee:01","addr_info":[{"family":"inet","local":"192.168.77.1","prefixlen":24}]},
{"ifname":"k8rs.1","flags":["UP"],"mtu":1450,"address":"0e:6b:c0:a8:4d:01","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"192.168.77.1","port":8472}},"addr_info":[{"family":"inet","local":"10.42.1.0","prefixlen":32}]}]"#;

fn node(name: &str, ip: &str, cidr: &str, mac: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.annotations = Some(
        [
            ("k8rs.io/vxlan-mac".to_string(), mac.to_string()),
            ("k8rs.io/public-ip".to_string(), ip.to_string()),
        ]
        .into(),
    );
    n.spec = Some(NodeSpec {
        pod_cidr: Some(cidr.into()),
        ..NodeSpec::default()
    });
    n.status = Some(NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: ip.into(),
        }]),
        ..NodeStatus::default()
    });
    n
}

fn config(commands: Commands) -> PodNetConfig {
    let mut c = PodNetConfig::new(
        "a",
        "192.168.77.1".parse().expect("ip"),
        "10.42.0.0/16".parse().expect("cidr"),
    );
    c.commands = commands;
    c
}

fn nodes() -> Vec<Node> {
    vec![
        node("a", "192.168.77.1", "10.42.1.0/24", "0e:6b:c0:a8:4d:01"),
        node("b", "192.168.77.2", "10.42.2.0/24", "0e:6b:c0:a8:4d:02"),
    ]
}

fn converged() -> FakeExec {
    let table = render::ruleset(&"10.42.0.0/16".parse().expect("cidr"));
    FakeExec::default()
        .answer("nft list table ip k8rs-podnet", Ok(&table))
        .answer("ip -d -j addr show", Ok(LINKS))
        .answer(
            "ip -j route show proto 120",
            Ok(r#"[{"dst":"10.42.2.0/24","gateway":"10.42.2.0","dev":"k8rs.1","flags":["onlink"]}]"#),
        )
        .answer(
            "ip -j neigh show dev k8rs.1",
            Ok(r#"[{"dst":"10.42.2.0","lladdr":"0e:6b:c0:a8:4d:02","state":["PERMANENT"]}]"#),
        )
        .answer(
            "bridge -j fdb show dev k8rs.1",
            Ok(r#"[{"mac":"0e:6b:c0:a8:4d:02","dst":"192.168.77.2","flags":["self"],"state":"permanent"}]"#),
        )
}

#[tokio::test]
async fn a_converged_node_only_reads() {
    let plane = Dataplane::new(config(Commands::host()), converged());
    plane.sync(nodes().iter()).await.expect("sync");
    let calls = dp_calls(&plane);
    assert_eq!(
        calls,
        [
            "write /proc/sys net.ipv4.ip_forward=1",
            "write /proc/sys net.bridge.bridge-nf-call-iptables=1",
            "nft list table ip k8rs-podnet",
            "ip -d -j addr show",
            "ip -j route show proto 120",
            "ip -j neigh show dev k8rs.1",
            "bridge -j fdb show dev k8rs.1",
        ]
    );
}

fn dp_calls(plane: &Dataplane<FakeExec>) -> Vec<String> {
    plane.exec().calls()
}

#[tokio::test]
async fn a_missing_table_is_created_and_a_drifted_one_replaced_in_two_transactions() {
    let missing = converged().answer("nft list table ip k8rs-podnet", Err("No such file"));
    let plane = Dataplane::new(config(Commands::host()), missing);
    plane.ensure_table().await.expect("table");
    assert_eq!(
        dp_calls(&plane),
        ["nft list table ip k8rs-podnet", "nft -f - <<6"]
    );

    let drifted = converged().answer(
        "nft list table ip k8rs-podnet",
        Ok("table ip k8rs-podnet {\n}\n"),
    );
    let plane = Dataplane::new(config(Commands::host()), drifted);
    plane.ensure_table().await.expect("table");
    assert_eq!(
        dp_calls(&plane),
        [
            "nft list table ip k8rs-podnet",
            "nft delete table ip k8rs-podnet",
            "nft -f - <<6"
        ]
    );
}

#[tokio::test]
async fn in_a_namespace_sysctls_go_through_the_sysctl_prefix() {
    let plane = Dataplane::new(config(Commands::netns("n1")), FakeExec::default());
    plane.set_sysctls().await.expect("sysctls");
    assert_eq!(
        dp_calls(&plane),
        [
            "ip netns exec n1 sysctl -w net.ipv4.ip_forward=1",
            "ip netns exec n1 sysctl -w net.bridge.bridge-nf-call-iptables=1",
        ]
    );
}

#[tokio::test]
async fn a_failed_change_does_not_stop_the_others() {
    let exec = converged()
        .answer("ip -j route show proto 120", Ok("[]"))
        .answer("ip -j neigh show dev k8rs.1", Ok("[]"))
        .answer("bridge -j fdb show dev k8rs.1", Ok("[]"))
        .answer(
            "bridge fdb replace 0e:6b:c0:a8:4d:02 dev k8rs.1 dst 192.168.77.2 self permanent",
            Err("boom"),
        );
    let plane = Dataplane::new(config(Commands::host()), exec);
    let err = plane
        .sync(nodes().iter())
        .await
        .expect_err("one change failed");
    assert!(
        matches!(
            err,
            Error::ChangesFailed {
                failed: 1,
                total: 3,
                ..
            }
        ),
        "{err}"
    );
    let calls = dp_calls(&plane);
    assert!(
        calls.contains(
            &"ip route replace 10.42.2.0/24 via 10.42.2.0 dev k8rs.1 onlink proto 120".to_string()
        ),
        "{calls:?}"
    );
}

#[tokio::test]
async fn cleanup_removes_the_table_the_cluster_routes_and_the_device() {
    let exec = converged().answer(
        "ip -j route show proto 120",
        Ok(r#"[{"dst":"10.42.2.0/24","gateway":"10.42.2.0","dev":"k8rs.1"},{"dst":"172.20.0.0/16","gateway":"192.168.77.9","dev":"eth0"}]"#),
    );
    let plane = Dataplane::new(config(Commands::host()), exec);
    plane.cleanup().await.expect("cleanup");
    let calls = dp_calls(&plane);
    assert_eq!(
        calls,
        [
            "nft list table ip k8rs-podnet",
            "nft delete table ip k8rs-podnet",
            "ip -j route show proto 120",
            "ip -d -j addr show",
            "ip route del 10.42.2.0/24 proto 120",
            "ip link del k8rs.1",
        ]
    );
}
